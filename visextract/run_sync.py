"""Running async code from sync code, also where an event loop already runs (Jupyter)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any


def run_sync(make_coroutine: Callable[[], Any]) -> Any:
    """asyncio.run, also from code that already runs an event loop (e.g. Jupyter)."""
    try:
        asyncio.get_running_loop()
        in_a_loop = True
    except RuntimeError:
        in_a_loop = False
    if not in_a_loop:  # outside the except block: errors are not chained to "no running event loop"
        return asyncio.run(make_coroutine())
    result: list[Any] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(make_coroutine()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="visextract-run")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
