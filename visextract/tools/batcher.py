"""Dynamic batching: concurrent per-image graph runs submit images; one worker thread per tool runs batches.

A batch is whatever is waiting when the worker is free, up to `batch_size`, waiting at most
`max_wait_s` for stragglers. If a batch fails, its images are retried one at a time so one bad image
cannot fail its neighbours.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from visextract.images import LoadedImage
from visextract.schemas.results import ToolResult
from visextract.tools.base import Tool


@dataclass(frozen=True)
class ToolOutput:
    """One image's results from a batch, and its share of the batch's model time."""

    results: list[ToolResult]
    seconds: float


@dataclass
class _Request:
    image: LoadedImage
    future: Future[ToolOutput] = field(default_factory=Future)


_STOP = object()


class ToolBatcher:
    """Runs one tool over images submitted from any thread, in batches, on its own worker thread."""

    def __init__(self, tool: Tool, batch_size: int, max_wait_s: float = 0.02) -> None:
        self.tool = tool
        self.batch_size = max(1, batch_size)
        self.max_wait_s = max_wait_s
        self.seconds = 0.0  # model time, for reports
        self.images = 0
        self._queue: queue.Queue[_Request | object] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name=f"tool-{tool.name}", daemon=True)
        self._worker.start()

    def submit(self, image: LoadedImage) -> Future[ToolOutput]:
        request = _Request(image)
        self._queue.put(request)
        return request.future

    def close(self) -> None:
        self._queue.put(_STOP)
        self._worker.join()

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._collect(first)
            self._run(batch)
            if stop:
                return

    def _collect(self, first: object) -> tuple[list[_Request], bool]:
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.batch_size:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True  # type: ignore[return-value]
            batch.append(item)
        return batch, False  # type: ignore[return-value]

    def _run(self, batch: list[_Request]) -> None:
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        started = time.perf_counter()
        try:
            outputs = self.tool.run([r.image for r in live])
        except Exception:
            outputs = None
        if outputs is not None:
            share = (time.perf_counter() - started) / len(live)
            for request, results in zip(live, outputs, strict=True):
                request.future.set_result(ToolOutput(results, round(share, 4)))
        else:
            for request in live:  # isolate the image that broke the batch
                single_started = time.perf_counter()
                try:
                    results = self.tool.run([request.image])[0]
                except Exception as exc:
                    request.future.set_exception(exc)
                else:
                    request.future.set_result(ToolOutput(results, round(time.perf_counter() - single_started, 4)))
        self.seconds += time.perf_counter() - started
        self.images += len(live)
