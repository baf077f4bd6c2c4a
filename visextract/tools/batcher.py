"""Dynamic batching: concurrent per-image graph runs submit items; worker threads run them in batches.

A batch is whatever is waiting when a worker is free, up to `batch_size`, waiting at most
`max_wait_s` for stragglers. If a batch fails, its items are retried one at a time so one bad image
cannot fail its neighbours. Used for every tool, and for the search-text embedder.

On the CPU every batch holds cores of the run's `ComputeBudget` while it runs and runs with that many
intra-op threads; a tool that may run batches side by side gets one worker per share of the cores
(see `local_models.compute`). On a GPU a tool has one worker, and batches across images.
"""

from __future__ import annotations

import atexit
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from visextract.images import LoadedImage
from visextract.local_models.compute import ComputeBudget
from visextract.local_models.device import use_cpu_threads
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
    """Runs `run_batch` over items submitted from any thread, in batches, on its own worker threads.

    With a `budget`, each batch holds `cores` of its cores while it runs (0: none, e.g. a model on a GPU),
    and torch runs it with `cores` intra-op threads; `workers` threads take batches from the queue side by
    side (use more than one only when `run_batch` may run concurrently with itself). `workers` and
    `cores` may be functions: they are called once, on a worker thread, when the model has loaded (finding
    the device imports torch, which must not happen on the caller's thread). `on_close` runs after the
    last batch.
    """

    def __init__(
        self,
        name: str,
        run_batch: Callable[[Sequence[In]], Sequence[Out]],
        batch_size: int,
        max_wait_s: float = 0.02,
        warm_up: Callable[[], object] | None = None,
        *,
        workers: int | Callable[[], int] = 1,
        budget: ComputeBudget | None = None,
        cores: int | Callable[[], int] = 1,
        on_close: Callable[[], object] | None = None,
    ) -> None:
        self.name = name
        self.on_close = on_close
        self.run_batch = run_batch
        self.warm_up = warm_up
        self._warming = False
        self.warmed = threading.Event()  # set once the model has loaded (or failed to), or the first batch ran
        if warm_up is None:  # nothing to load
            self.warmed.set()
        self.batch_size = max(1, batch_size)
        self.max_wait_s = max_wait_s
        self.budget = budget
        self.cores = cores if isinstance(cores, int) else 1
        self.seconds = 0.0  # compute time, for reports
        self.items = 0
        self._counts = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._workers: list[threading.Thread] = []
        self._staffing = threading.Lock()
        self._closed = False
        self._plan: tuple[Callable[[], int], Callable[[], int]] | None = None
        if callable(workers) or callable(cores):
            self._plan = (_as_function(workers), _as_function(cores))
        self._add_workers(1 if callable(workers) else max(1, workers))

    def _add_workers(self, count: int) -> None:
        for _ in range(count):
            worker = threading.Thread(target=self._work, name=f"batch-{self.name}-{len(self._workers)}", daemon=True)
            self._workers.append(worker)
            worker.start()

    def _settle(self) -> None:
        """Decide `cores` and the number of workers, once, on a worker thread (see the class docstring)."""
        with self._staffing:
            plan, self._plan = self._plan, None
        if plan is None:
            return
        workers, cores = plan
        self.cores = cores()
        count = max(1, workers())
        with self._staffing:
            if not self._closed:
                self._add_workers(count - len(self._workers))

    @property
    def workers(self) -> int:
        """How many batches this batcher can run at once."""
        return len(self._workers)

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
        """Stop the workers after what is queued, then run `on_close`. `wait=False` returns at once (e.g.
        a model still loading when the user pressed Ctrl-C); the interpreter then waits for the workers at
        exit, because native libraries abort the process when torn down under a thread that is still
        loading a model. (The CLI leaves with `os._exit` after an interrupted run, so it does not wait.)"""
        with self._staffing:
            self._closed = True  # no worker is added from now on: each one gets its stop
            for _ in self._workers:
                self._queue.put(_STOP)
        if wait:
            self._finish()
        else:
            atexit.register(self._finish)

    def _finish(self) -> None:
        for worker in self._workers:
            worker.join()
        if self.on_close is not None:
            self.on_close()

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
        limit = self.batch_size
        if len(self._workers) > 1:  # take a fair share of what waits, leave the rest to the other workers
            limit = min(limit, -(-(self._queue.qsize() + 1) // len(self._workers)))
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < limit:
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
            self._settle()
            self.warmed.set()

    def _run(self, batch: list[_Request[In, Out]]) -> None:
        self._settle()
        if self._warming:  # another worker is loading the model: wait for it with the requests still cancellable
            self.warmed.wait()
        with self._cores():  # requests waiting for cores can still be cancelled too
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
            elapsed = time.perf_counter() - started
        with self._counts:
            self.seconds += elapsed
            self.items += len(live)
        self.warmed.set()

    @contextmanager
    def _cores(self) -> Iterator[None]:
        """Hold this batch's cores of the budget, with torch (once a model has imported it) set to use them."""
        if self.budget is None or self.cores == 0:
            yield
            return
        with self.budget.hold(self.cores):
            if "torch" in sys.modules:  # never import torch just for this: a colours-only run does not need it
                use_cpu_threads(self.cores)
            yield


def _as_function(value: int | Callable[[], int]) -> Callable[[], int]:
    return value if callable(value) else lambda: value


def tool_batcher(
    tool: Tool, batch_size: int, budget: ComputeBudget | None = None
) -> Batcher[LoadedImage, list[ToolResult]]:
    """A batcher that runs `tool` over images (its model loads on `start_warm_up`, or with the first batch).

    With a `budget` and a model on the CPU, a thread-safe tool gets a worker per share of the cores and
    runs each batch with `budget.threads_per_batch` threads; any other tool gets one worker whose batches
    take every core while they run. On a GPU: one worker, batching across images, no cores held. (Where
    the model runs is known once it has loaded, on the worker thread.) Without a budget: one worker.
    """
    if budget is None:
        return Batcher(tool.name, tool.run, batch_size, warm_up=tool.load)

    def cores() -> int:
        if not tool.uses_cpu():
            return 0
        return budget.threads_per_batch if tool.thread_safe else budget.cores

    def workers() -> int:
        return budget.workers_for(budget.threads_per_batch) if tool.thread_safe and tool.uses_cpu() else 1

    return Batcher(tool.name, tool.run, batch_size, warm_up=tool.load, workers=workers, budget=budget, cores=cores)
