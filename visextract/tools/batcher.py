"""Dynamic batching: concurrent per-image graph runs submit items; one worker thread runs them in batches.

A batch is whatever is waiting when the worker is free, up to `batch_size`, waiting at most
`max_wait_s` for stragglers. If a batch fails, its items are retried one at a time so one bad image
cannot fail its neighbours. Used for every tool, and for the search-text embedder.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from visextract.images import LoadedImage
from visextract.schemas.results import ToolResult
from visextract.tools.base import Tool

log = logging.getLogger("visextract")
In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True)
class Batched(Generic[Out]):
    """One item's output from a batch, and its share of the batch's compute time."""

    value: Out
    seconds: float


@dataclass
class _Request(Generic[In, Out]):
    item: In
    future: Future[Batched[Out]] = field(default_factory=Future)


_STOP = object()
_WARM_UP = object()


class Batcher(Generic[In, Out]):
    """Runs `run_batch` over items submitted from any thread, in batches, on its own worker thread."""

    def __init__(
        self,
        name: str,
        run_batch: Callable[[Sequence[In]], Sequence[Out]],
        batch_size: int,
        max_wait_s: float = 0.02,
        warm_up: Callable[[], object] | None = None,
    ) -> None:
        self.name = name
        self.run_batch = run_batch
        self.warm_up = warm_up
        self._warming = False
        self.warmed = threading.Event()  # set once the model has loaded (or failed to), or the first batch ran
        if warm_up is None:  # nothing to load
            self.warmed.set()
        self.batch_size = max(1, batch_size)
        self.max_wait_s = max_wait_s
        self.seconds = 0.0  # compute time, for reports
        self.items = 0
        self._queue: queue.Queue[Any] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name=f"batch-{name}", daemon=True)
        self._worker.start()

    def submit(self, item: In) -> Future[Batched[Out]]:
        request: _Request[In, Out] = _Request(item)
        self._queue.put(request)
        return request.future

    def start_warm_up(self) -> None:
        """Load the model on the worker thread now, before the first item arrives (once; no-op after)."""
        if self.warm_up is not None and not self._warming:
            self._warming = True
            self._queue.put(_WARM_UP)

    def close(self, wait: bool = True) -> None:
        """Stop the worker after what is queued. `wait=False` returns at once (e.g. a model still loading
        when the user pressed Ctrl-C); the interpreter then waits for the worker at exit, because native
        libraries abort the process when torn down under a thread that is still loading a model. (The
        CLI leaves with `os._exit` after an interrupted run, so it does not wait.)"""
        self._queue.put(_STOP)
        if wait:
            self._worker.join()
        else:
            atexit.register(self._worker.join)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            if first is _WARM_UP:
                self._warm()
                continue
            batch, stop = self._collect(first)
            self._run(batch)
            if stop:
                return

    def _collect(self, first: _Request[In, Out]) -> tuple[list[_Request[In, Out]], bool]:
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.batch_size:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            if item is _WARM_UP:
                continue
            batch.append(item)
        return batch, False

    def _warm(self) -> None:
        assert self.warm_up is not None
        try:
            self.warm_up()
        except Exception as exc:  # the first real batch reports the problem against its images
            log.debug("warming up %s failed: %s", self.name, exc)
        finally:
            self.warmed.set()

    def _run(self, batch: list[_Request[In, Out]]) -> None:
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        started = time.perf_counter()
        try:
            outputs: Sequence[Out] | None = self.run_batch([r.item for r in live])
        except Exception:
            outputs = None
        if outputs is not None:
            share = round((time.perf_counter() - started) / len(live), 4)
            for request, value in zip(live, outputs, strict=True):
                request.future.set_result(Batched(value, share))
        else:
            for request in live:  # isolate the item that broke the batch
                single_started = time.perf_counter()
                try:
                    value = self.run_batch([request.item])[0]
                except Exception as exc:
                    request.future.set_exception(exc)
                else:
                    request.future.set_result(Batched(value, round(time.perf_counter() - single_started, 4)))
        self.seconds += time.perf_counter() - started
        self.items += len(live)
        self.warmed.set()


def tool_batcher(tool: Tool, batch_size: int) -> Batcher[LoadedImage, list[ToolResult]]:
    """A batcher that runs `tool` over images (its model loads on `start_warm_up`, or with the first batch)."""
    return Batcher(tool.name, tool.run, batch_size, warm_up=tool.load)
