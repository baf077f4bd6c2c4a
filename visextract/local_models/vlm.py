"""A transformers vision-language chat model that fills a JSON Schema in-process (`--llm local`).

    vlm = LocalVlm("HuggingFaceTB/SmolVLM-256M-Instruct")
    result = vlm.generate_json(
        [{"role": "user", "content": "Describe the vehicle."}], image, Vehicle.model_json_schema()
    )
    Vehicle.model_validate_json(result.text)

Any `AutoModelForImageTextToText` checkpoint with a chat template works (LLaVA, Qwen2-VL, SmolVLM /
Idefics3...), by hub id or local folder, loaded through `local_models.hf` (cache, device, dtype).

Constrained decoding uses **xgrammar**. Tried here with transformers 5.23 and the tiny test models:

- xgrammar 0.2.8: C++ grammar engine with precomputed token masks (schema compile ~5 ms, per-token
  mask cost negligible next to the forward pass), released monthly, knows transformers 5 tokenizers,
  byte-level / SentencePiece / tiktoken vocabularies and model vocabularies padded beyond the tokenizer.
  It can forbid free whitespace (`any_whitespace=False`) and honours maxLength, maxItems, maxProperties
  and numeric ranges, which is what makes termination provable (below).
- lm-format-enforcer 0.11.3: its transformers integration fails to import on transformers 5
  (`transformers.tokenization_utils.PreTrainedTokenizerBase` is gone), whitespace between tokens is
  free, and its pure-Python character tree is slow on 150k-token vocabularies.
- outlines 1.3.3: works, but pulls in eight more packages, its default backend spent ~24 s in a first-call
  torch compile on CPU, and its high-level API hides the token counts.

Termination, even for a random-weight model that would wander forever inside a string or an array:

1. Pass 1 decodes the schema as given (no free whitespace, no extra properties; dates and times as
   fixed-width patterns Python's parsers accept) within `max_new_tokens`. A real model nearly always
   finishes here.
2. If the budget runs out first, pass 2 decodes again under a tightened copy of the schema: every
   string without enum/pattern/format gets a maxLength, every array a maxItems, every map a
   maxProperties and key length, every number a range. The loosest limits from a ladder are taken whose
   worst-case output length fits the budget. That length is read off the grammar xgrammar built (a
   finite grammar has a longest string, in bytes, and every allowed token is at least one byte); when
   even the smallest limits do not fit, the budget is raised to it. Either way the JSON is complete.
   Only grammars that stay unbounded (recursive models, regex patterns with `+`/`*`, email/uri
   formats) can still run out; that raises `UnfinishedJsonError`, never broken JSON.

prompt_tokens and completion_tokens add up both passes when pass 2 ran (the compute actually spent).

Gotchas handled here: tokens holding control characters or special tokens (chat markers, image
placeholders) are masked, since xgrammar would accept a raw tab inside length-limited strings and
treats unflagged added tokens as text; optional regex groups are rewritten `(...){0,1}` because
xgrammar 0.2.8 mis-reads `(...X+)?`.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visextract.errors import ModelUnavailableError, UsageError
from visextract.local_models import hf
from visextract.local_models.cache import cached_model

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger("visextract")

AUTO_CLASS = "AutoModelForImageTextToText"
ROLES = ("system", "user", "assistant")

# Pass-2 limits, loosest first: (string maxLength, array maxItems / map maxProperties).
_LIMIT_LADDER = (
    (512, 32),
    (256, 16),
    (128, 16),
    (64, 8),
    (32, 8),
    (16, 4),
    (8, 4),
    (4, 2),
    (2, 1),
    (1, 1),
    (0, 0),
)
# Numbers without a range get one this wide (10 digits, plus up to 6 decimals for floats).
_NUMBER_SPAN = 10**9
# Dates and times as fixed-width patterns every Python parser accepts (xgrammar's own date-time grammar
# has unbounded fractions and allows Feb 31 or second 60): used in both passes.
_DATE = (
    r"[1-9]\d{3}-((0[13578]|1[02])-(0[1-9]|[12]\d|3[01])|(0[469]|11)-(0[1-9]|[12]\d|30)|02-(0[1-9]|1\d|2[0-8]))"
    r"|[1-9]\d(0[48]|[2468][048]|[13579][26])-02-29|([2468][048]|[13579][26])00-02-29"
)
_TIME = r"([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?"
_DATE_TIME_PATTERNS = {
    "date": f"^({_DATE})$",
    "time": f"^{_TIME}$",
    "date-time": f"^({_DATE})T{_TIME}$",
}
_INF = float("inf")

# One generation at a time per process: the models are shared through the model cache, and a CPU
# forward pass already uses every core.
_generate_lock = threading.Lock()


@dataclass(frozen=True)
class GeneratedJson:
    """The generated JSON text (parses and matches the schema) and the tokens it took."""

    text: str
    prompt_tokens: int
    completion_tokens: int


class UnfinishedJsonError(UsageError):
    """The model did not close the JSON within the token budget, and the schema allows values of
    unbounded length (recursion, free-form regex pattern, email / uri format), so no limit could force it."""


@dataclass
class _Loaded:
    model: Any
    processor: Any
    tokenizer: Any
    compiler: Any  # xgrammar.GrammarCompiler
    stop_ids: list[int]
    banned_ids: list[int]
    pad_id: int


@dataclass(frozen=True)
class _Pass:
    grammar: Any  # xgrammar.CompiledGrammar
    max_new_tokens: int
    bounded: bool  # whether the grammar provably ends within max_new_tokens


class LocalVlm:
    """A vision-language chat model (hub id or local folder) that answers with schema-valid JSON."""

    def __init__(self, model: str, device: str = "auto", max_new_tokens: int = 512) -> None:
        self._model = model
        self._device = device
        self._max_new_tokens = max(1, int(max_new_tokens))
        self._loaded: _Loaded | None = None
        self._passes: dict[tuple[str, int], _Pass] = {}

    @property
    def model_id(self) -> str:
        return self._model

    def missing_reason(self) -> str | None:
        """None if the model can be loaded here, else one line saying why and how to provide it."""
        return hf.missing_reason(self._model)

    def generate_json(
        self,
        messages: list[dict[str, str]],
        image: Image.Image | None,
        json_schema: dict[str, Any],
    ) -> GeneratedJson:
        """Greedy, grammar-constrained JSON for `json_schema`; `image` goes with the first user message."""
        from visextract.local_models.device import available_cores, use_cpu_threads

        with _generate_lock:
            use_cpu_threads(available_cores())  # this thread's torch ops; tool batches set their own
            loaded = self._load()
            inputs = self._inputs(loaded, messages, image)
            first = self._pass(loaded, json_schema, tight=False)
            ids, done = _generate(loaded, inputs, first)
            prompt_tokens, completion_tokens = inputs["input_ids"].shape[1], len(ids)
            if not done:
                second = self._pass(loaded, json_schema, tight=True)
                log.info(
                    "%s: no complete JSON within %d tokens; decoding again with limits (%d tokens)",
                    self._model,
                    first.max_new_tokens,
                    second.max_new_tokens,
                )
                ids, done = _generate(loaded, inputs, second)
                prompt_tokens += inputs["input_ids"].shape[1]
                completion_tokens += len(ids)
                if not done and second.bounded:
                    raise RuntimeError(f"bounded grammar not finished in {second.max_new_tokens} tokens")  # a bug
                if not done:
                    raise UnfinishedJsonError(
                        f"model {self._model} did not finish the JSON within {second.max_new_tokens} tokens "
                        "and the schema allows unbounded values (recursion, regex pattern, email/uri); "
                        "raise max_new_tokens or bound those fields"
                    )
            text = _decode(loaded, ids)
            json.loads(text)  # the grammar guarantees it; a failure here is a bug, so no wrapping
            return GeneratedJson(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    # ------------------------------------------------------------------ loading

    def _load(self) -> _Loaded:
        if self._loaded is not None:
            return self._loaded
        reason = self.missing_reason()
        if reason:
            raise ModelUnavailableError(reason)
        _check_is_vlm(self._model)
        model = hf.load_hf_model(self._model, AUTO_CLASS, self._device)
        processor = hf.load_hf_processor(self._model)
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None:
            raise ModelUnavailableError(f"model {self._model} has no tokenizer in its processor")
        if not (getattr(processor, "chat_template", None) or getattr(tokenizer, "chat_template", None)):
            raise ModelUnavailableError(f"model {self._model} has no chat template (needs a chat/instruct model)")

        stop_ids = _stop_token_ids(model, tokenizer)
        if not stop_ids:
            raise ModelUnavailableError(f"model {self._model} has no end-of-sequence token, so generation cannot stop")
        vocab_size = _output_vocab_size(model)

        def build_compiler() -> tuple[Any, list[int]]:
            import xgrammar as xgr

            info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_ids)
            # Tokens holding a control character: JSON without free whitespace never needs one, but
            # xgrammar's length-limited strings would let them in raw (which JSON parsers reject).
            control = [i for i, text in enumerate(info.decoded_vocab) if any(b < 0x20 for b in text)]
            return xgr.GrammarCompiler(info), control

        compiler, control_ids = cached_model(f"xgrammar:{self._model}:{vocab_size}", build_compiler)
        banned = set(control_ids) | set(_special_token_ids(processor, tokenizer, vocab_size))
        self._loaded = _Loaded(
            model=model,
            processor=processor,
            tokenizer=tokenizer,
            compiler=compiler,
            stop_ids=stop_ids,
            banned_ids=sorted(banned - set(stop_ids)),
            pad_id=_first_int(model.generation_config.pad_token_id, tokenizer.pad_token_id, stop_ids[0]),
        )
        return self._loaded

    # ------------------------------------------------------------------ prompt

    def _inputs(self, loaded: _Loaded, messages: list[dict[str, str]], image: Image.Image | None) -> Any:
        prompt = self._prompt(loaded.processor, messages, image is not None)
        bos = loaded.tokenizer.bos_token
        kwargs: dict[str, Any] = {"text": [prompt], "return_tensors": "pt"}
        if bos and prompt.startswith(bos):
            kwargs["add_special_tokens"] = False  # the template already put it there
        if image is not None:
            kwargs["images"] = [image.convert("RGB")]
        inputs = loaded.processor(**kwargs)
        model = loaded.model
        for key, value in inputs.items():
            if hasattr(value, "to"):
                value = value.to(model.device)
                inputs[key] = value.to(model.dtype) if value.is_floating_point() else value
        return inputs

    def _prompt(self, processor: Any, messages: list[dict[str, str]], with_image: bool) -> str:
        """The chat-template prompt; system text moves into the first user turn if the template rejects
        (or silently drops) a system role."""
        for message in messages:
            if message.get("role") not in ROLES or not isinstance(message.get("content"), str):
                raise UsageError(f"chat messages need a role in {ROLES} and text content, got {str(message)[:80]}")
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system" and m["content"].strip())
        if system:
            try:
                prompt = _render(processor, _conversation(messages, with_image))
                if system.strip() in prompt:
                    return prompt
            except Exception:  # templates refuse a system role in many ways (raise_exception, KeyError...)
                pass
        rest = [m for m in messages if m["role"] != "system"]
        if system:
            rest = _prepend_to_first_user(rest, system)
        try:
            return _render(processor, _conversation(rest, with_image))
        except Exception as exc:
            raise UsageError(f"the chat template of {self._model} rejects these messages: {_one_line(exc)}") from None

    # ------------------------------------------------------------------ grammars

    def _pass(self, loaded: _Loaded, json_schema: dict[str, Any], *, tight: bool) -> _Pass:
        key = (json.dumps(json_schema, sort_keys=True), int(tight))
        if key not in self._passes:
            budget = self._max_new_tokens
            if tight:
                self._passes[key] = self._tight_pass(loaded, json_schema, budget)
            else:
                grammar = self._compile(loaded, decodable_copy(json_schema))
                self._passes[key] = _Pass(grammar, budget, bounded=False)
        return self._passes[key]

    def _tight_pass(self, loaded: _Loaded, json_schema: dict[str, Any], budget: int) -> _Pass:
        """The loosest ladder limits whose worst case fits `budget`, else the tightest with a raised budget."""
        worst = _INF
        bounded_schema: dict[str, Any] = json_schema
        for max_chars, max_items in _LIMIT_LADDER:
            bounded_schema = bounded_copy(json_schema, max_chars, max_items)
            worst = max_output_bytes(str(_grammar(bounded_schema, self._model)))
            if worst + 1 <= budget:  # +1: the stop token
                break
        grammar = self._compile(loaded, bounded_schema)
        if worst == _INF:
            return _Pass(grammar, budget, bounded=False)
        return _Pass(grammar, max(budget, int(worst) + 1), bounded=True)

    def _compile(self, loaded: _Loaded, json_schema: dict[str, Any]) -> Any:
        grammar = _grammar(json_schema, self._model)
        try:
            return loaded.compiler.compile_grammar(grammar)
        except (RuntimeError, ValueError) as exc:
            raise UsageError(f"cannot compile the JSON schema for {self._model}: {_one_line(exc)}") from None


# ---------------------------------------------------------------------- generation


def _generate(loaded: _Loaded, inputs: Any, decoding: _Pass) -> tuple[list[int], bool]:
    """Greedy decoding under the grammar: the new token ids and whether the JSON was closed."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList

    model = loaded.model
    config = GenerationConfig(
        max_new_tokens=decoding.max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=loaded.stop_ids,
        pad_token_id=loaded.pad_id,
        repetition_penalty=getattr(model.generation_config, "repetition_penalty", None),
    )
    constraint = _GrammarLogitsProcessor(decoding.grammar, loaded.banned_ids)
    with torch.inference_mode():
        output = model.generate(**inputs, generation_config=config, logits_processor=LogitsProcessorList([constraint]))
    ids = [int(i) for i in output[0, inputs["input_ids"].shape[1] :]]
    done = bool(ids) and ids[-1] in loaded.stop_ids
    return ids, done


def _decode(loaded: _Loaded, ids: list[int]) -> str:
    while ids and ids[-1] in loaded.stop_ids:
        ids = ids[:-1]
    return loaded.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False).strip()


class _GrammarLogitsProcessor:
    """Masks every token the grammar does not allow next (and chat-control tokens); one per generate()."""

    def __init__(self, grammar: Any, banned_ids: list[int]) -> None:
        import xgrammar as xgr

        self.matcher = xgr.GrammarMatcher(grammar)
        self.bitmask = xgr.allocate_token_bitmask(1, grammar.tokenizer_info.vocab_size)
        self.banned_ids = banned_ids
        self.started = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import torch
        import xgrammar as xgr

        if self.started and not self.matcher.accept_token(int(input_ids[0, -1])):
            raise RuntimeError(f"grammar rejected token {int(input_ids[0, -1])}")  # a bug, not user error
        self.started = True
        self.matcher.fill_next_token_bitmask(self.bitmask)
        backend = "auto" if scores.device.type in ("cpu", "cuda") else "torch_native"
        xgr.apply_token_bitmask_inplace(scores, self.bitmask.to(scores.device), backend=backend)
        if self.banned_ids:
            allowed = scores.clone()
            allowed[:, self.banned_ids] = -float("inf")
            if bool(torch.isfinite(allowed).any()):  # unless the grammar needs exactly such a token
                scores = allowed
        return scores


# ---------------------------------------------------------------------- model facts


def _check_is_vlm(model: str) -> None:
    """A clear message for checkpoints that are not image-text-to-text models (ViT, a text-only LLM...)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    ref = str(Path(model).expanduser()) if hf.is_local_path(model) else model
    try:
        config = AutoConfig.from_pretrained(ref)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelUnavailableError(f"cannot load model {model}: {_one_line(exc)}") from None
    if config.model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        raise ModelUnavailableError(
            f"model {model} ({config.model_type}) is not a vision-language chat model; "
            "--llm local needs an image-text-to-text checkpoint (LLaVA, Qwen2-VL, SmolVLM...)"
        )


def _stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    for value in (model.generation_config.eos_token_id, tokenizer.eos_token_id):
        for token_id in value if isinstance(value, list | tuple) else [value]:
            if isinstance(token_id, int) and token_id not in ids:
                ids.append(token_id)
    return ids


def _output_vocab_size(model: Any) -> int:
    head = model.get_output_embeddings()
    if head is not None and getattr(head, "weight", None) is not None:
        return int(head.weight.shape[0])
    return int(model.config.get_text_config().vocab_size)


def _special_token_ids(processor: Any, tokenizer: Any, vocab_size: int) -> list[int]:
    """Special tokens (chat markers, image placeholders) the grammar would otherwise treat as text."""
    banned = set(tokenizer.all_special_ids)
    banned |= {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
    for name in ("image_token", "video_token", "audio_token", "boi_token", "eoi_token"):
        token = getattr(processor, name, None)
        if isinstance(token, str):
            token_id = tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
                banned.add(token_id)
    return sorted(i for i in banned if 0 <= i < vocab_size)


def _first_int(*values: Any) -> int:
    for value in values:
        if isinstance(value, list | tuple) and value:
            value = value[0]
        if isinstance(value, int):
            return value
    raise AssertionError("unreachable: the last value is always an int")


# ---------------------------------------------------------------------- chat template


def _conversation(messages: list[dict[str, str]], with_image: bool) -> list[dict[str, Any]]:
    """Messages as content lists; the image goes first in the first user message."""
    conversation: list[dict[str, Any]] = []
    image_placed = not with_image
    for message in messages:
        content: list[dict[str, Any]] = [{"type": "text", "text": message["content"]}]
        if not image_placed and message["role"] == "user":
            content.insert(0, {"type": "image"})
            image_placed = True
        conversation.append({"role": message["role"], "content": content})
    if not image_placed:
        conversation.append({"role": "user", "content": [{"type": "image"}]})
    return conversation


def _prepend_to_first_user(messages: list[dict[str, str]], text: str) -> list[dict[str, str]]:
    merged = [dict(m) for m in messages]
    for message in merged:
        if message["role"] == "user":
            message["content"] = f"{text}\n\n{message['content']}"
            return merged
    return [{"role": "user", "content": text}, *merged]


def _render(processor: Any, conversation: list[dict[str, Any]]) -> str:
    return processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)


def _one_line(exc: BaseException) -> str:
    """The first line of an error, without xgrammar's "[time] file.cc:line:" prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^\[[\d:]+\]\s+\S+:\d+:\s*", "", text)[:300]


# ---------------------------------------------------------------------- schema limits


def _grammar(json_schema: dict[str, Any], model: str) -> Any:
    """xgrammar's grammar for the schema: schema key order, no free whitespace, no extra properties."""
    import xgrammar as xgr

    try:
        return xgr.Grammar.from_json_schema(json.dumps(json_schema), any_whitespace=False, strict_mode=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise UsageError(f"cannot compile the JSON schema for {model}: {_one_line(exc)}") from None


def decodable_copy(json_schema: dict[str, Any]) -> dict[str, Any]:
    """The schema for pass 1: as given, except dates and times become fixed-width patterns."""
    schema = copy.deepcopy(json_schema)
    _limit_node(schema, None)
    return schema


def bounded_copy(json_schema: dict[str, Any], max_chars: int, max_items: int) -> dict[str, Any]:
    """The schema for pass 2, every value of bounded length: strings (and map keys) at most
    `max_chars` characters, arrays and maps at most `max_items` entries, numbers in a range; never
    below the schema's own minimums. Anything valid for the copy is valid for the original."""
    schema = copy.deepcopy(json_schema)
    _limit_node(schema, (max_chars, max_items))
    return schema


_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_SINGLE = ("items", "additionalProperties", "propertyNames", "contains", "if", "then", "else", "not")


def _limit_node(node: Any, limits: tuple[int, int] | None) -> None:
    if not isinstance(node, dict):
        return
    for key in _SUBSCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            for child in node[key].values():
                _limit_node(child, limits)
    for key in _SUBSCHEMA_LISTS:
        if isinstance(node.get(key), list):
            for child in node[key]:
                _limit_node(child, limits)
    for key in _SUBSCHEMA_SINGLE:
        _limit_node(node.get(key), limits)
    if "enum" in node or "const" in node:
        return

    types = node.get("type")
    types = set(types) if isinstance(types, list) else {types}
    if "string" in types and node.get("format") in _DATE_TIME_PATTERNS and "pattern" not in node:
        node["pattern"] = _DATE_TIME_PATTERNS[node.pop("format")]
    if isinstance(node.get("pattern"), str):
        node["pattern"] = xgrammar_safe_pattern(node["pattern"])
    if limits is None:
        return
    max_chars, max_items = limits
    if "string" in types and "pattern" not in node and "format" not in node:
        node["maxLength"] = _tighten(node, "maxLength", "minLength", max_chars)
    if "array" in types or "items" in node or "prefixItems" in node:
        node["maxItems"] = _tighten(node, "maxItems", "minItems", max_items)
    is_map = node.get("additionalProperties") not in (None, False) or "patternProperties" in node
    if ("object" in types or "properties" in node) and is_map:
        required = len(node.get("required", []))
        node["maxProperties"] = max(required, _tighten(node, "maxProperties", "minProperties", max_items))
        names = node.setdefault("propertyNames", {})
        if isinstance(names, dict) and not {"enum", "const", "pattern", "format"} & names.keys():
            names["maxLength"] = _tighten(names, "maxLength", "minLength", max_chars)
    if types & {"integer", "number"}:
        _bound_range(node)


def xgrammar_safe_pattern(pattern: str) -> str:
    """The same regex with every optional group `(...)?` written `(...){0,1}`.

    xgrammar 0.2.8 mis-reads an optional group that ends in a quantifier: `^a(\\.b+)?Z$` also accepts
    "abZ". The `{0,1}` spelling is read correctly.
    """
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            out.append(char)
            i += 1
            for literal in ("^", "]"):  # "[^]" and "[]" open with a literal "]"
                if pattern.startswith(literal, i):
                    out.append(literal)
                    i += 1
            continue
        elif char == ")" and pattern.startswith("?", i + 1):
            out.append("){0,1}")
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _tighten(node: dict[str, Any], upper: str, lower: str, limit: int) -> int:
    value = min(node[upper], limit) if isinstance(node.get(upper), int) else limit
    return max(value, node.get(lower, 0) or 0)


def _bound_range(node: dict[str, Any]) -> None:
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum", node.get("exclusiveMaximum"))
    if low is None and high is None:
        node["minimum"], node["maximum"] = -_NUMBER_SPAN, _NUMBER_SPAN
    elif low is None:
        node["minimum"] = min(high, 0) - _NUMBER_SPAN
    elif high is None:
        node["maximum"] = max(low, 0) + _NUMBER_SPAN


# ---------------------------------------------------------------------- worst-case length


class _Unsupported(Exception):
    """A grammar construct the length analysis does not know (so: treated as unbounded)."""


def max_output_bytes(ebnf: str) -> float:
    """The longest string (in UTF-8 bytes) the grammar printed by xgrammar can produce, or inf.

    Every rule reachable from `root` is read; repetition without an upper bound, recursion and
    unknown constructs count as unbounded.
    """
    rules: dict[str, str] = {}
    for line in ebnf.splitlines():
        name, sep, body = line.partition(" ::= ")
        if sep:
            rules[name.strip()] = body
    try:
        return _EbnfLength(rules).rule("root")
    except (_Unsupported, ValueError, IndexError, RecursionError):
        return _INF


class _EbnfLength:
    def __init__(self, rules: dict[str, str]) -> None:
        self.rules = rules
        self.known: dict[str, float] = {}
        self.active: set[str] = set()

    def rule(self, name: str) -> float:
        if name in self.known:
            return self.known[name]
        if name in self.active or name not in self.rules:
            return _INF  # recursion (or a dangling name)
        self.active.add(name)
        value = _BodyLength(self.rules[name], self.rule).parse()
        self.active.discard(name)
        self.known[name] = value
        return value


class _BodyLength:
    """Recursive-descent reader of one rule body: choice `|`, sequence, groups, literals, classes,
    rule names, quantifiers (* + ? {m,n}), lookaheads `(= ...)` and `Regex("...")`."""

    def __init__(self, text: str, rule: Any) -> None:
        self.text = text
        self.pos = 0
        self.rule = rule

    def parse(self) -> float:
        value = self.choice()
        self.skip()
        if self.pos != len(self.text):
            raise _Unsupported(self.text[self.pos :])
        return value

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def choice(self) -> float:
        best = self.sequence()
        while self.peek() == "|":
            self.pos += 1
            best = max(best, self.sequence())
        return best

    def sequence(self) -> float:
        total = 0.0
        while self.peek() not in ("", "|", ")"):
            total += self.quantified(self.primary())
        return total

    def primary(self) -> float:
        char = self.peek()
        if char == "(":
            self.pos += 1
            lookahead = self.text.startswith("=", self.pos)
            if lookahead:
                self.pos += 1
            value = self.choice()
            self.expect(")")
            return 0.0 if lookahead else value
        if char == '"':
            return sum(1 if ord(c) < 0x80 else 4 for c in self.literal())
        if char == "[":
            return self.char_class()
        match = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(self.text, self.pos)
        if not match:
            raise _Unsupported(self.text[self.pos :])
        self.pos = match.end()
        if self.text.startswith("(", self.pos):
            if match.group() != "Regex":
                raise _Unsupported(match.group())
            self.pos += 1
            pattern = self.literal()
            end = self.text.find(")", self.pos)
            if end < 0:
                raise _Unsupported(self.text)
            self.pos = end + 1
            return regex_max_bytes(pattern)
        return self.rule(match.group())

    def quantified(self, value: float) -> float:
        while True:
            char = self.text[self.pos] if self.pos < len(self.text) else ""
            if char in ("*", "+"):
                self.pos += 1
                value = _INF if value > 0 else 0.0
            elif char == "?":
                self.pos += 1
            elif char == "{":
                end = self.text.index("}", self.pos)
                bounds = [int(b) for b in self.text[self.pos + 1 : end].split(",")]
                self.pos = end + 1
                most = bounds[-1]
                value = 0.0 if most == 0 or value == 0 else (_INF if most < 0 else most * value)
            else:
                return value

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise _Unsupported(self.text[self.pos :])
        self.pos += 1

    def literal(self) -> str:
        """A double-quoted string with backslash escapes, decoded."""
        self.expect('"')
        out: list[str] = []
        while self.pos < len(self.text) and self.text[self.pos] != '"':
            char = self.text[self.pos]
            if char == "\\":
                char, self.pos = _escape(self.text, self.pos)
            else:
                self.pos += 1
            out.append(char)
        self.expect('"')
        return "".join(out)

    def char_class(self) -> float:
        """1 byte for a class of ASCII characters, else 4 (negated classes match any character)."""
        self.pos += 1
        negated = self.text.startswith("^", self.pos)
        widest = 0
        while self.pos < len(self.text) and self.text[self.pos] != "]":
            char = self.text[self.pos]
            if char == "\\":
                char, self.pos = _escape(self.text, self.pos)
            else:
                self.pos += 1
            widest = max(widest, ord(char))
        self.expect("]")
        return 4.0 if negated or widest >= 0x80 else 1.0


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "0": "\0"}


def _escape(text: str, pos: int) -> tuple[str, int]:
    """The character a backslash escape at `pos` stands for, and the position after it."""
    code = text[pos + 1 : pos + 2]
    for prefix, digits in (("x", 2), ("u", 4), ("U", 8)):
        if code == prefix:
            return chr(int(text[pos + 2 : pos + 2 + digits], 16)), pos + 2 + digits
    return _ESCAPES.get(code, code), pos + 2


def regex_max_bytes(pattern: str) -> float:
    """The longest match of `pattern` in UTF-8 bytes (inf if unbounded or unreadable)."""
    from re import _parser  # the stdlib regex parser: Python's own reading of the pattern

    try:
        return _regex_items_bytes(_parser.parse(pattern))
    except (re.error, _Unsupported, TypeError, ValueError):
        return _INF


def _regex_items_bytes(items: Any) -> float:
    return sum((_regex_node_bytes(op, arg) for op, arg in items), 0.0)


def _regex_node_bytes(op: Any, arg: Any) -> float:
    from re import _constants as c

    if op is c.LITERAL:
        return float(len(chr(arg).encode("utf-8", "surrogatepass")))
    if op in (c.ANY, c.NOT_LITERAL):
        return 4.0
    if op is c.IN:
        return max((_regex_set_bytes(o, a) for o, a in arg), default=0.0)
    if op is c.BRANCH:
        return max((_regex_items_bytes(branch) for branch in arg[1]), default=0.0)
    if op is c.SUBPATTERN:
        return _regex_items_bytes(arg[-1])
    if op is getattr(c, "ATOMIC_GROUP", None):
        return _regex_items_bytes(arg)
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
        _low, high, sub = arg
        inner = _regex_items_bytes(sub)
        if high == 0 or inner == 0:
            return 0.0
        return _INF if high >= c.MAXREPEAT else high * inner
    if op in (c.AT, c.ASSERT, c.ASSERT_NOT):
        return 0.0
    raise _Unsupported(str(op))


def _regex_set_bytes(op: Any, arg: Any) -> float:
    from re import _constants as c

    if op is c.LITERAL:
        return float(len(chr(arg).encode("utf-8", "surrogatepass")))
    if op is c.RANGE:
        return float(len(chr(arg[1]).encode("utf-8", "surrogatepass")))
    if op is c.CATEGORY and arg is c.CATEGORY_DIGIT:
        return 1.0  # xgrammar reads \d as [0-9]
    return 4.0  # negation, \w, \s...
