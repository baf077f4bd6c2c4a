"""The local engine: the extraction graph over a stream of files in this process.

Images go through the graph with bounded concurrency; tools batch across images on their own threads
(`tools.batcher`), LLM calls run concurrently behind the gate. The run's lifecycle (run row, heartbeat,
Ctrl-C, summary, missing paths) is in `engines.lifecycle`, shared with other engines.

When `stop` is set (the first Ctrl-C), no new image starts; images whose tool work has started are
finished and saved, the rest are left for the next run, and models still loading are not waited for.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from langgraph.graph.state import CompiledStateGraph

from visextract.agents.extraction_nodes import save_record
from visextract.agents.extraction_state import ExtractionContext, ImageState, Outcome
from visextract.errors import VisextractError

if TYPE_CHECKING:
    from visextract.engines.lifecycle import RunPlan

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
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), the first 100
    llm_cost_usd: float | None = None  # None when no LLM ran or a call's price is unknown
    budget_skipped: int = 0
    llm_problem: str | None = None

    def add_llm_usage(self, context: ExtractionContext) -> None:
        """What the LLM gate saw in this run: cost, images past the budget, why answers were missing."""
        gate = context.llm.gate if context.llm else None
        if gate is None:
            return
        self.llm_cost_usd = round(gate.spent_usd, 6) if not gate.unpriced_calls else None
        self.budget_skipped = gate.skipped_for_budget
        self.llm_problem = gate.problem

    def add(self, image: ImageOutcome) -> None:
        self.counts[image.status] += 1
        if image.status == "failed" and len(self.failures) < 100:
            self.failures.append((image.path, image.error or "unknown error"))


async def run_images(
    graph: CompiledStateGraph,
    context: ExtractionContext,
    files: Iterable[Path | str],
    *,
    images_in_flight: int,
    on_image: Callable[[ImageOutcome], None] | None = None,
) -> RunOutcome:
    """Run every file through `graph`, at most `images_in_flight` at once.

    Setting `context.stop` stops taking new files; images already at the tools finish and are stored, the
    others are left for the next run. An error that would fail every image (a model that does not load,
    the LLM server rejecting the API key) stops the run the same way, stores nothing for the image that hit
    it, and is returned as `fatal`.
    """
    stop = context.stop
    outcome = RunOutcome()
    pending: set[asyncio.Task[ImageOutcome]] = set()

    async def run_one(path: str) -> ImageOutcome:
        try:
            return await run_graph(path)
        finally:
            context.release(path)

    async def run_graph(path: str) -> ImageOutcome:
        try:
            state: ImageState = await graph.ainvoke({"path": path}, config=config, context=context)
        except VisextractError as exc:  # a run-wide problem: nothing is stored, the image waits for the next run
            if outcome.fatal is None:
                outcome.fatal = exc
            stop.set()
            return ImageOutcome(path=path, status="cancelled", error=str(exc))
        except Exception as exc:  # an internal bug must not stop the batch: record it, log the traceback
            log.error("internal error on %s:\n%s", path, traceback.format_exc())
            reason = f"internal error: {type(exc).__name__}: {exc}".splitlines()[0]
            await _store_failure(context, path, reason)
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
            outcome.add(image_outcome)
            if on_image is not None:
                on_image(image_outcome)

    reasks = context.llm.max_reasks if context.llm else 0
    config = {"recursion_limit": 20 + 2 * reasks}
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
    outcome.interrupted = stop.is_set() and outcome.fatal is None
    return outcome


async def _store_failure(context: ExtractionContext, path: str, reason: str) -> None:
    try:
        await save_record({"path": path, "status": "failed", "error": reason, "complete": False}, context)  # type: ignore[typeddict-item]
    except Exception:
        log.error("could not store the failure of %s:\n%s", path, traceback.format_exc())


async def extract_locally(
    plan: RunPlan,
    files: Iterable[Path | str],
    stop: threading.Event,
    on_image: Callable[[ImageOutcome], None] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> RunOutcome:
    """Run `plan` over `files` in this process: one model set, tools batched across images. Setting
    `stop` (Ctrl-C does) stops taking new images; models still loading then are not waited for."""
    from visextract.agents.extraction_graph import build_extraction_graph

    context = plan.open_context(stop)
    watcher = asyncio.create_task(_report_model_loading(context, on_status)) if on_status else None
    finished = False
    try:
        outcome = await run_images(
            build_extraction_graph(),
            context,
            files,
            images_in_flight=plan.images_in_flight,
            on_image=on_image,
        )
        outcome.add_llm_usage(context)
        finished = True
    finally:
        if watcher is not None:
            watcher.cancel()
        await plan.close_context(context, wait=finished and not stop.is_set())
    return outcome


async def _report_model_loading(context: ExtractionContext, on_status: Callable[[str], None]) -> None:
    """Say "loading models" while the first image waits for them, then "extracting"."""
    while not context.warm_up_started:
        await asyncio.sleep(0.1)
    if not context.models_ready():
        on_status("loading models…")
        while not context.models_ready():
            await asyncio.sleep(0.2)
    on_status("extracting")
