"""The process-wide model cache: each model is loaded once, lazily, and shared by every run.

Loads of the same model wait for each other. Loads through transformers are also serialised with
each other (`exclusive=True`): transformers initialises weights on the meta device by patching global
torch state, so two such loads at once in different threads can corrupt each other. A load that fails
with a user-facing error is remembered, so a broken model fails every image at once instead of being
reloaded per image.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from visextract.errors import VisextractError

T = TypeVar("T")

_models: dict[str, Any] = {}
_failures: dict[str, VisextractError] = {}
_key_locks: dict[str, threading.Lock] = {}
_registry_lock = threading.Lock()
_transformers_lock = threading.RLock()


def cached_model(key: str, load: Callable[[], T], *, exclusive: bool = False) -> T:
    """The model stored under `key`, calling `load()` the first time (once, even across threads)."""
    if key in _models:
        return _models[key]
    with _registry_lock:
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:
        if key in _failures:
            raise _failures[key]
        if key not in _models:
            try:
                if exclusive:
                    with _transformers_lock:
                        _models[key] = load()
                else:
                    _models[key] = load()
            except VisextractError as exc:
                _failures[key] = exc
                raise
    return _models[key]


def clear_model_cache() -> None:
    """Drop every cached model and remembered failure (frees memory; the next use reloads)."""
    with _registry_lock:
        _models.clear()
        _failures.clear()
