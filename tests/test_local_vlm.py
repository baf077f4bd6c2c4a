"""`--llm local`: tiny random-weight LLaVA and Qwen2-VL chat models, loaded by path, always answer with
JSON that validates against the schema, even though their weights would wander forever unconstrained."""

from __future__ import annotations

import datetime
import enum
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import tiny_models
from PIL import Image
from pydantic import BaseModel, Field

import visextract as vx
from visextract.errors import ModelUnavailableError, UsageError
from visextract.local_models import hf
from visextract.local_models.vlm import AUTO_CLASS, GeneratedJson, LocalVlm

MESSAGES = [
    {"role": "system", "content": "You fill records from photos. Answer with JSON only."},
    {"role": "user", "content": "Describe the main vehicle in the photo."},
]


class Vehicle(BaseModel):
    type: str | None = None
    license: str | None = None
    make: str | None = None
    model: str | None = None
    color: str | None = None


class Owner(BaseModel):
    name: str
    age: int = Field(ge=0, le=130)


class Listing(BaseModel):
    kind: Literal["car", "truck", "bus"]
    doors: int
    price: float
    electric: bool
    features: list[str]
    owner: Owner
    previous_owners: list[Owner] = []
    notes: str | None = None


class Light(enum.StrEnum):
    day = "day"
    night = "night"


class Sighting(BaseModel):
    light: Light
    taken_at: datetime.datetime | None = None
    on: datetime.date
    speeds: list[float] = Field(min_length=1)
    counts: dict[str, int]
    position: tuple[int, int]
    driver: Owner | None = None
    plate: str = Field(min_length=2, max_length=10)


SCHEMAS = [Vehicle, Listing, Sighting]
# Random weights never close a string by themselves: a small budget makes the bounded second pass
# (which always completes) run at once, and keeps the tests fast.
BUDGET = 32


class Parked(BaseModel):
    parked: bool


@pytest.fixture(scope="module", autouse=True)
def one_cpu_thread() -> Iterator[None]:
    """Tiny models decode fastest on one thread, and a busy shared CPU slows multi-threaded torch ~5x."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_vlms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tiny-vlms")
    return {
        "llava": tiny_models.build_tiny_llava(folder / "llava"),
        "qwen2_vl": tiny_models.build_tiny_qwen2_vl(folder / "qwen2_vl"),
    }


@pytest.fixture(scope="module")
def cat() -> Image.Image:
    import skimage.data

    return Image.fromarray(skimage.data.chelsea())


@pytest.mark.parametrize("name", ["llava", "qwen2_vl"])
@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
def test_answer_always_validates(
    tiny_vlms: dict[str, Path], cat: Image.Image, name: str, schema: type[BaseModel]
) -> None:
    vlm = LocalVlm(str(tiny_vlms[name]), max_new_tokens=BUDGET)
    assert vlm.missing_reason() is None

    result = vlm.generate_json(MESSAGES, cat, schema.model_json_schema())

    schema.model_validate_json(result.text)
    assert result.prompt_tokens > 0
    assert result.completion_tokens > 0


def test_without_an_image(tiny_vlms: dict[str, Path]) -> None:
    vlm = LocalVlm(str(tiny_vlms["qwen2_vl"]), max_new_tokens=BUDGET)
    result = vlm.generate_json([{"role": "user", "content": "A listing, please."}], None, Listing.model_json_schema())
    Listing.model_validate_json(result.text)


def test_even_a_one_token_budget_ends_in_valid_json(tiny_vlms: dict[str, Path], cat: Image.Image) -> None:
    vlm = LocalVlm(str(tiny_vlms["qwen2_vl"]), max_new_tokens=1)
    result = vlm.generate_json(MESSAGES, cat, Sighting.model_json_schema())
    Sighting.model_validate_json(result.text)


def test_greedy_decoding_is_deterministic_across_threads(tiny_vlms: dict[str, Path], cat: Image.Image) -> None:
    vlm = LocalVlm(str(tiny_vlms["llava"]), max_new_tokens=BUDGET)
    schema = Listing.model_json_schema()
    expected = vlm.generate_json(MESSAGES, cat, schema)

    results: list[GeneratedJson] = []
    workers = [
        threading.Thread(target=lambda: results.append(vlm.generate_json(MESSAGES, cat, schema))) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert results == [expected] * 2


def test_template_without_system_role(tmp_path: Path, cat: Image.Image) -> None:
    folder = tiny_models.build_tiny_llava(tmp_path / "no-system")
    (folder / "chat_template.jinja").write_text(
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        "{{ message['role'].upper() + ': ' }}"
        "{% for content in message['content'] %}"
        "{% if content['type'] == 'image' %}{{ '<image>\n' }}{% else %}{{ content['text'] + ' ' }}{% endif %}"
        "{% endfor %}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
    )
    vlm = LocalVlm(str(folder), max_new_tokens=64)

    with_system = vlm.generate_json(MESSAGES, cat, Parked.model_json_schema())
    without = vlm.generate_json(MESSAGES[1:], cat, Parked.model_json_schema())

    Parked.model_validate_json(with_system.text)
    # the system text went into the user turn (one token per character with this tokenizer)
    assert with_system.prompt_tokens - without.prompt_tokens >= len(MESSAGES[0]["content"])


def test_missing_model_folder(tmp_path: Path) -> None:
    vlm = LocalVlm(str(tmp_path / "nowhere"))
    assert "does not exist" in (vlm.missing_reason() or "")
    with pytest.raises(ModelUnavailableError, match="nowhere"):
        vlm.generate_json(MESSAGES, None, Vehicle.model_json_schema())


def test_not_a_vision_language_model(tmp_path: Path) -> None:
    folder = tiny_models.build_tiny_vit(tmp_path / "vit")
    with pytest.raises(ModelUnavailableError, match="not a vision-language chat model"):
        LocalVlm(str(folder)).generate_json(MESSAGES, None, Vehicle.model_json_schema())


def test_schema_the_grammar_cannot_compile(tiny_vlms: dict[str, Path]) -> None:
    vlm = LocalVlm(str(tiny_vlms["llava"]))
    with pytest.raises(UsageError, match="cannot compile the JSON schema"):
        vlm.generate_json(MESSAGES, None, {"type": "object", "properties": {"x": {"type": "colour"}}})


# ----------------------------------------------------------------------------------------------------------------
# The image reaches the model: the vision encoder sees exactly the processor's pixels of that image, and the
# prompt holds the image tokens that stand for it


@dataclass
class ModelInputs:
    """What the model itself received during generation (observed with torch hooks on the real model)."""

    pixel_values: list[Any] = field(default_factory=list)  # one tensor per vision-encoder call
    prompts: list[Any] = field(default_factory=list)  # input_ids of each prefill (one per decoding pass)


@contextmanager
def watching(model: Any) -> Iterator[ModelInputs]:
    seen = ModelInputs()
    encoder = getattr(model.model, "vision_tower", None) or model.model.visual  # LLaVA | Qwen2-VL

    def on_encoder(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seen.pixel_values.append((args[0] if args else kwargs["pixel_values"]).detach().clone())

    def on_model(_module: Any, _args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        input_ids = kwargs.get("input_ids")
        if input_ids is not None and input_ids.shape[1] > 1:  # the prefill, not one new token
            seen.prompts.append(input_ids.detach().clone())

    hooks = [
        encoder.register_forward_pre_hook(on_encoder, with_kwargs=True),
        model.register_forward_pre_hook(on_model, with_kwargs=True),
    ]
    try:
        yield seen
    finally:
        for hook in hooks:
            hook.remove()


def expected_image_input(folder: Path, image: Image.Image) -> tuple[Any, int]:
    """The pixels the model's own processor makes of `image` and how many image tokens stand for it, computed
    with transformers directly."""
    from transformers import AutoConfig, AutoProcessor

    pixels = AutoProcessor.from_pretrained(folder).image_processor(images=[image.convert("RGB")], return_tensors="pt")
    config = AutoConfig.from_pretrained(folder)
    if config.model_type == "llava":
        vision = config.vision_config
        return pixels["pixel_values"], (vision.image_size // vision.patch_size) ** 2
    merge = config.vision_config.spatial_merge_size
    return pixels["pixel_values"], int(pixels["image_grid_thw"].prod()) // merge**2


def image_token_id(model: Any) -> int:
    config = model.config
    return getattr(config, "image_token_id", None) or config.image_token_index


@pytest.fixture(scope="module")
def coffee() -> Image.Image:
    import skimage.data

    return Image.fromarray(skimage.data.coffee())


@pytest.mark.parametrize("name", ["llava", "qwen2_vl"])
def test_the_image_reaches_the_model(
    tiny_vlms: dict[str, Path], cat: Image.Image, coffee: Image.Image, name: str
) -> None:
    import torch

    folder = tiny_vlms[name]
    vlm = LocalVlm(str(folder), max_new_tokens=BUDGET)
    model = hf.load_hf_model(str(folder), AUTO_CLASS)  # the instance LocalVlm uses (cached per process)
    schema = Parked.model_json_schema()
    for image in (cat, coffee):
        with watching(model) as seen:
            vlm.generate_json(MESSAGES, image, schema)
        pixels, image_tokens = expected_image_input(folder, image)
        assert seen.pixel_values, "the vision encoder never ran"
        for encoded in seen.pixel_values:  # once per decoding pass
            assert torch.equal(encoded, pixels.to(encoded.dtype))
        for prompt in seen.prompts:
            assert int((prompt == image_token_id(model)).sum()) == image_tokens

    with watching(model) as seen:
        vlm.generate_json(MESSAGES, None, schema)
    assert seen.pixel_values == [] and seen.prompts
    assert all(int((prompt == image_token_id(model)).sum()) == 0 for prompt in seen.prompts)


def test_the_photo_of_a_run_reaches_the_local_model(tiny_vlms: dict[str, Path], photos: Path, tmp_path: Path) -> None:
    """End to end through the Extractor: the pixels the vision encoder sees are those of the photo being
    extracted (after the JPEG round trip the LLM image goes through), not of another photo."""
    import skimage.data

    folder = tiny_vlms["llava"]
    model = hf.load_hf_model(str(folder), AUTO_CLASS)
    extractor = vx.Extractor(
        db=f"sqlite:///{tmp_path / 'local.db'}", schema="vehicle", tools=["colors"], llm="local", llm_model=str(folder)
    )
    with watching(model) as seen:
        assert extractor.run(photos / "coffee.jpg").processed == 1
    (encoded,) = seen.pixel_values
    coffee, _ = expected_image_input(folder, Image.open(photos / "coffee.jpg"))
    others = [
        expected_image_input(folder, Image.fromarray(getattr(skimage.data, n)()))[0] for n in ("chelsea", "rocket")
    ]
    assert float((encoded - coffee).abs().mean()) < 0.05  # JPEG re-encoding moves a few values a little
    assert all(float((encoded - other).abs().mean()) > 0.3 for other in others)
    (record,) = extractor.records()
    assert record.llm is not None and record.llm.prompt_tokens == sum(prompt.shape[1] for prompt in seen.prompts)
