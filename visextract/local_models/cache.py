"""The process-wide model cache: each model is loaded once, lazily, and shared by every run.

Loads are serialised with one lock: transformers/accelerate patch global torch state while
loading (meta-device initialisation), so two models loading at once in different threads can
corrupt each other. A load that fails with a user-facing error is remembered, so a broken model
fails every image at once instead of being reloaded per image.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from visextract.errors import VisextractError

T = TypeVar("T")

_models: dict[str, Any] = {}
_failures: dict[str, VisextractError] = {}
_load_lock = threading.RLock()


def cached_model(key: str, load: Callable[[], T]) -> T:
    """The model stored under `key`, calling `load()` the first time (once, even across threads)."""
    if key in _models:
        return _models[key]
    with _load_lock:
        if key in _failures:
            raise _failures[key]
        if key not in _models:
            try:
                _models[key] = load()
            except VisextractError as exc:
                _failures[key] = exc
                raise
    return _models[key]


def clear_model_cache() -> None:
    """Drop every cached model and remembered failure (frees memory; the next use reloads)."""
    with _load_lock:
        _models.clear()
        _failures.clear()
