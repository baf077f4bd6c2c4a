"""Hugging Face models by hub id or local folder: availability checks, loading, device and dtype.

Every transformers-based tool loads through `load_hf_model` / `load_hf_processor`, so caching,
device placement, half precision on GPUs and the "model not available" message live in one place.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

from visextract.errors import ModelUnavailableError
from visextract.local_models.cache import cached_model


def is_local_path(model: str) -> bool:
    """Whether `model` names a folder (absolute, relative or ~) rather than a hub id like 'org/name'."""
    return model.startswith(("/", "./", "../", "~")) or os.path.isdir(os.path.expanduser(model))


def how_to_provide(model: str) -> str:
    return (
        f"download it with `hf download {model}` (HF_HOME selects the cache), "
        f"or pass a local copy with --model TOOL=/path/to/model"
    )


def missing_reason(model: str, *, may_download: bool = True) -> str | None:
    """None if `model` can be loaded here; otherwise one line saying why and how to provide it.

    A local folder must hold a config.json. A hub id is available when it is in the local Hugging Face
    cache; with `may_download` (and HF_HUB_OFFLINE unset) it is also available when the hub answers.
    """
    if is_local_path(model):
        folder = Path(model).expanduser()
        if not folder.is_dir():
            return f"model folder {model} does not exist"
        if not (folder / "config.json").is_file():
            return f"model folder {model} has no config.json (expected a save_pretrained() folder)"
        return None
    if _in_hf_cache(model):
        return None
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or not may_download:
        return f"model {model} is not in the local Hugging Face cache: {how_to_provide(model)}"
    problem = _hub_problem(model)
    if problem:
        return f"model {model} is not available ({problem}): {how_to_provide(model)}"
    return None


def _in_hf_cache(model: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(model, "config.json"), str)
    except Exception:  # malformed ids are simply "not cached"
        return False


@cache
def _hub_problem(model: str) -> str | None:
    """Why the hub cannot serve `model` right now, or None. One quick request, no retries."""
    import httpx
    from huggingface_hub import constants

    url = f"{constants.ENDPOINT}/{model}/resolve/main/config.json"
    try:
        response = httpx.head(url, timeout=5, follow_redirects=True)
    except httpx.HTTPError as exc:
        return f"cannot reach {constants.ENDPOINT}: {type(exc).__name__}"
    if response.status_code in (401, 403):
        return "the repository is gated or private; log in with `hf auth login`"
    if response.status_code == 404:
        return "no such repository on the hub"
    if response.status_code >= 400:
        return f"the hub answered HTTP {response.status_code}"
    return None


def load_hf_model(model: str, auto_class: str, device_name: str = "auto", **kwargs: Any) -> Any:
    """A transformers model (cached per process) in eval mode on the chosen device, half precision on GPU.

    load_hf_model("google/vit-base-patch16-224", "AutoModelForImageClassification")
    """
    from visextract.local_models.device import pick_device, pick_dtype

    device = pick_device(device_name)
    dtype = pick_dtype(device)

    def load() -> Any:
        import transformers

        _quiet_transformers()
        loader = getattr(transformers, auto_class)
        with _as_model_error(model):
            loaded = loader.from_pretrained(_model_ref(model), dtype=dtype, **kwargs)
        return loaded.to(device).eval()

    return cached_model(f"{auto_class}:{model}@{device}:{dtype}", load, exclusive=True)


def load_hf_processor(model: str, auto_class: str = "AutoProcessor", **kwargs: Any) -> Any:
    """The model's processor / image processor (cached per process)."""

    def load() -> Any:
        import transformers

        _quiet_transformers()
        with _as_model_error(model):
            return getattr(transformers, auto_class).from_pretrained(_model_ref(model), **kwargs)

    return cached_model(f"{auto_class}:{model}", load, exclusive=True)


@cache
def _quiet_transformers() -> None:
    """No weight-loading progress bars or load reports on the user's terminal (errors still raise)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _model_ref(model: str) -> str:
    return str(Path(model).expanduser()) if is_local_path(model) else model


class _as_model_error:
    """Turn loading failures (missing files, wrong architecture) into one-line ModelUnavailableErrors."""

    def __init__(self, model: str) -> None:
        self.model = model

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, _tb: Any) -> bool:
        if exc is None or not isinstance(exc, Exception):  # whatever from_pretrained raises: the files are bad
            return False
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelUnavailableError(f"cannot load model {self.model}: {first[:300]}") from None
