"""The process-wide model cache: each model is loaded once, lazily, and shared by every run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_models: dict[str, Any] = {}
_lock = threading.Lock()
_key_locks: dict[str, threading.Lock] = {}


def cached_model(key: str, load: Callable[[], T]) -> T:
    """The model stored under `key`, calling `load()` the first time (once, even across threads)."""
    if key in _models:
        return _models[key]
    with _lock:
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:
        if key not in _models:
            _models[key] = load()
    return _models[key]


def clear_model_cache() -> None:
    """Drop every cached model (frees memory; the next use reloads)."""
    with _lock:
        _models.clear()
        _key_locks.clear()
