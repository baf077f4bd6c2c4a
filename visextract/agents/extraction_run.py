"""Driving the extraction graph over a stream of files: bounded concurrency, progress, clean Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from langgraph.graph.state import CompiledStateGraph

from visextract.agents.extraction_nodes import save_record
from visextract.agents.extraction_state import ExtractionContext, ImageState, Outcome
from visextract.errors import VisextractError

log = logging.getLogger("visextract")


@dataclass(frozen=True)
class ImageOutcome:
    """How one image ended, as reported to progress callbacks."""

    path: str
    status: Outcome
    error: str | None = None
    record_id: int | None = None


@dataclass
class RunOutcome:
    """Counts by outcome; whether the run stopped early, and the error that stopped it, if any."""

    counts: Counter[str] = field(default_factory=Counter)
    interrupted: bool = False
    fatal: VisextractError | None = None


async def run_images(
    graph: CompiledStateGraph,
    context: ExtractionContext,
    files: Iterable[Path],
    *,
    images_in_flight: int,
    on_image: Callable[[ImageOutcome], None] | None = None,
) -> RunOutcome:
    """Run every file through `graph`, at most `images_in_flight` at once.

    Setting `context.stop` (Ctrl-C does, when running in the main thread) stops taking new files;
    images already at the tools finish and are stored, the others are left for the next run. An error
    that would fail every image (the LLM server rejecting the API key, say) stops the run the same way
    and is returned as `fatal`.
    """
    stop = context.stop
    outcome = RunOutcome()
    pending: set[asyncio.Task[ImageOutcome]] = set()
    restore = _stop_on_sigint(stop)

    async def run_one(path: str) -> ImageOutcome:
        try:
            return await run_graph(path)
        finally:
            context.release(path)

    async def run_graph(path: str) -> ImageOutcome:
        try:
            state: ImageState = await graph.ainvoke({"path": path}, config=config, context=context)
        except VisextractError as exc:  # a run-wide problem: keep this image for the next run, stop
            if outcome.fatal is None:
                outcome.fatal = exc
            stop.set()
            await _store_failure(context, path, str(exc), status="needs_review")
            return ImageOutcome(path=path, status="needs_review", error=str(exc))
        except Exception as exc:  # an internal bug must not stop the batch: record it, log the traceback
            log.error("internal error on %s:\n%s", path, traceback.format_exc())
            reason = f"internal error: {type(exc).__name__}: {exc}".splitlines()[0]
            await _store_failure(context, path, reason, status="failed")
            return ImageOutcome(path=path, status="failed", error=reason)
        return ImageOutcome(
            path=path,
            status=state.get("status", "failed"),
            error=state.get("error"),
            record_id=state.get("record_id"),
        )

    def finished(done: set[asyncio.Task[ImageOutcome]]) -> None:
        for task in done:
            image_outcome = task.result()
            outcome.counts[image_outcome.status] += 1
            if on_image is not None:
                on_image(image_outcome)

    reasks = context.llm.max_reasks if context.llm else 0
    config = {"recursion_limit": 20 + 2 * reasks}
    try:
        for path in files:
            if stop.is_set():
                break
            while len(pending) >= images_in_flight:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                finished(done)
            pending.add(asyncio.create_task(run_one(str(path))))
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            finished(done)
    finally:
        restore()
    outcome.interrupted = stop.is_set()
    return outcome


async def _store_failure(context: ExtractionContext, path: str, reason: str, status: str) -> None:
    try:
        await save_record({"path": path, "status": status, "error": reason, "complete": False}, context)  # type: ignore[typeddict-item]
    except Exception:
        log.error("could not store the failure of %s:\n%s", path, traceback.format_exc())


def _stop_on_sigint(stop: threading.Event) -> Callable[[], None]:
    """First Ctrl-C: finish in-flight images, then stop. Second Ctrl-C: the usual KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()

    def first_interrupt() -> None:
        stop.set()
        log.warning("stopping after the images in flight (Ctrl-C again to abort)")
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    try:
        loop.add_signal_handler(signal.SIGINT, first_interrupt)
    except (NotImplementedError, RuntimeError):
        return lambda: None

    def restore() -> None:
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    return restore
