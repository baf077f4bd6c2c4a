"""What every engine shares: the run plan (schema, tools, LLM, options, as plain picklable data), the
extraction context built from it, and the run's lifecycle in the database (run row, heartbeat, missing
paths, summary).

    plan = RunPlan(settings=..., schema=..., tool_names=[...], tool_options=..., llm="openai", ...)
    summary = run_sync(lambda: run_with_lifecycle(plan, files, folders=[...], engine=extract_locally))
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visextract.agents.llm.base import VisionLlm
from visextract.agents.llm.gate import LlmGate
from visextract.config import Settings
from visextract.errors import ModelUnavailableError, UsageError
from visextract.schemas.base import RecordSchema
from visextract.store import Store
from visextract.tools.base import Tool, ToolOptions

if TYPE_CHECKING:
    from visextract.agents.extraction_state import ExtractionContext
    from visextract.engines.local import RunOutcome
    from visextract.local_models.compute import ComputeBudget
    from visextract.tools.batcher import Batcher

log = logging.getLogger("visextract")


@dataclass
class RunSummary:
    """What a run did. `processed` counts images that got a new usable record (ok or needs_review)."""

    processed: int
    skipped: int
    failed: int
    seconds: float
    needs_review: int = 0
    run_id: int | None = None
    interrupted: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), first 100
    llm_cost_usd: float | None = None  # None when no LLM ran or its price is unknown
    budget_skipped: int = 0  # images that got tools-only records because --budget-usd was spent
    llm_problem: str | None = None  # why some records have no LLM answer (server unreachable...)
    missing: int = 0  # known paths under the folders run over that were not found any more
    found: int = 0  # image files found under the paths given

    @property
    def total(self) -> int:
        return self.processed + self.skipped + self.failed


@dataclass
class RunPlan:
    """Everything a run needs to build its tools, LLM and context: plain data, so an engine can ship it to
    other processes and build the same context there."""

    settings: Settings
    schema: RecordSchema
    tool_names: list[str]
    tool_options: ToolOptions
    llm: str | VisionLlm | None = None  # "openai", "local", a backend object, or None (tools only)
    llm_model: str | None = None
    concurrency: int = 8
    rpm: float | None = None
    budget_usd: float | None = None
    max_reasks: int = 2
    image_detail: str = "auto"
    force: bool = False
    discard_reviews: bool = False
    run_id: int = 0

    @property
    def images_in_flight(self) -> int:
        """Images in the graph at once; more than LLM slots, so the tools stay busy while calls are out."""
        return max(self.settings.images_in_flight, 3 * self.concurrency if self.llm is not None else 0)

    def check_device(self) -> None:
        """A bad `--device` is a usage error now, before any work."""
        from visextract.local_models.device import pick_device

        if self.settings.device != "auto":  # auto is always valid; checking it would import torch for nothing
            pick_device(self.settings.device)

    def build_tools(self, skip_missing: bool = False) -> list[Tool]:
        """The tools, with unavailable models reported (or dropped with `skip_missing`) before any work."""
        from visextract.tools.registry import build_tools

        usable = []
        for tool in build_tools(self.tool_names, self.tool_options):
            reason = tool.missing_reason()
            if reason is None:
                usable.append(tool)
            elif skip_missing:
                log.warning("skipping tool %s: %s", tool.name, reason)
            else:
                raise ModelUnavailableError(f"tool {tool.name}: {reason}")
        if not usable:
            raise ModelUnavailableError("none of the selected tools can run here")
        return usable

    def build_llm(self) -> VisionLlm | None:
        """The LLM backend (None for tools only); a missing local model or server setting is an error now."""
        if self.llm is None or not isinstance(self.llm, str):
            return self.llm
        if self.llm == "openai":
            if not (os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL")):
                raise UsageError(
                    "the openai LLM needs OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL (a local OpenAI-compatible server)"
                )
            from visextract.agents.llm.gate import RateLimiter
            from visextract.agents.llm.openai_chat import OpenAIVisionLlm

            return OpenAIVisionLlm(
                self.llm_model or self.settings.llm_model,
                api_key=os.environ.get("OPENAI_API_KEY"),
                base_url=os.environ.get("OPENAI_BASE_URL") or None,
                timeout=self.settings.llm_timeout,
                max_attempts=self.settings.llm_max_attempts,
                initial_wait=self.settings.llm_retry_initial_wait,
                max_wait=self.settings.llm_retry_max_wait,
                rate_limiter=RateLimiter(self.rpm) if self.rpm else None,
            )
        if not self.llm_model:
            raise UsageError("the local LLM needs a model: --llm-model HF_ID_OR_PATH (Python: llm_model=...)")
        from visextract.agents.llm.local_vlm import LocalVisionLlm

        local = LocalVisionLlm(self.llm_model, device=self.settings.device)
        reason = local.missing_reason()
        if reason is not None:
            raise ModelUnavailableError(f"local LLM: {reason}")
        return local

    def open_context(self, stop: threading.Event | None = None, llm_gate: LlmGate | None = None) -> ExtractionContext:
        """Build the tools' batchers, the database writer, the search embedder and the LLM gate (`llm_gate`,
        or one of this plan's concurrency and budget)."""
        from visextract.agents.extraction_state import ExtractionContext, LlmSettings
        from visextract.agents.llm.gate import LlmGate
        from visextract.local_models.compute import ComputeBudget
        from visextract.tools.batcher import tool_batcher

        tools = {tool.name: tool for tool in self.build_tools()}
        llm = self.build_llm()
        settings = self.settings
        budget = ComputeBudget.for_this_machine(self.tool_options.threads)  # the cores, shared by every model
        return ExtractionContext(
            store=Store(settings.db),
            schema=self.schema,
            tools=tools,
            batchers={name: tool_batcher(tool, settings.batch_size, budget) for name, tool in tools.items()},
            settings=settings,
            run_id=self.run_id,
            force=self.force,
            discard_reviews=self.discard_reviews,
            writer=ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-writer"),
            embedder=search_embedder(budget) if settings.search_index else None,
            stop=stop or threading.Event(),
            llm=LlmSettings(
                backend=llm,
                gate=llm_gate or LlmGate(self.concurrency, self.budget_usd),
                max_reasks=self.max_reasks,
                image_detail=self.image_detail,
                image_max_side=settings.llm_image_max_side,
                prices=settings.llm_prices,
            )
            if llm is not None
            else None,
        )

    async def close_context(self, context: ExtractionContext, wait: bool = True) -> None:
        """Stop the batchers and the writer (waiting for them unless `wait=False`), close the LLM client."""
        for batcher in [*context.batchers.values(), *([context.embedder] if context.embedder else [])]:
            batcher.close(wait=wait)
        if context.writer is not None:
            context.writer.shutdown(wait=True)  # queued writes are short; they are never dropped
        backend = context.llm.backend if context.llm else None
        if backend is not None and hasattr(backend, "aclose"):
            await backend.aclose()


class FileListing:
    """The image files under `paths` (at most `limit`), found while an engine iterates over them, so a
    listing of millions streams. Afterwards `found` says how many, and `complete` whether every file
    under the paths was listed (only then can paths no longer found there be marked missing).

        files = FileListing(["photos/"], limit=None)
        for path in files: ...
        files.found, files.complete
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]], limit: int | None = None) -> None:
        for path in paths:  # a mistyped path is a usage error now, before any work
            if not os.path.lexists(os.path.expanduser(path)):
                raise UsageError(f"no such file or folder: {path}")
        self.paths = list(paths)
        self.limit = limit
        self.found = 0
        self.complete = False

    def __iter__(self) -> Iterator[Path]:
        from visextract.images import find_images

        self.found = 0
        for path in itertools.islice(find_images(self.paths), self.limit):
            self.found += 1
            yield path
        self.complete = self.limit is None or self.found < self.limit


def search_embedder(budget: ComputeBudget) -> Batcher[str, bytes]:
    """Search text -> float32 vector bytes (as stored in `record_embedding`), in batches on the budget's
    share of the cores. MiniLM runs as numpy over memory-mapped weights: loading it imports no torch and
    takes milliseconds, so it never holds up the run's event loop."""
    from visextract.local_models.embedder import embed_texts
    from visextract.tools.batcher import Batcher

    threads = budget.threads_per_batch
    return Batcher(
        "embed",
        lambda texts: [vector.tobytes() for vector in embed_texts(texts, threads=threads)],
        batch_size=64,
        warm_up=lambda: embed_texts(["warm up"]),
        budget=budget,
        cores=threads,
    )


Engine = Callable[[RunPlan, Iterable[Path | str], threading.Event], Awaitable["RunOutcome"]]


async def run_with_lifecycle(
    plan: RunPlan,
    files: Sequence[Path | str] | FileListing,
    folders: Sequence[Path | str],
    engine: Engine,
    store: Store,
    stop: threading.Event | None = None,
    on_abort: Callable[[], None] | None = None,
) -> RunSummary:
    """Record the run in the database around `engine(plan, files, stop)`: its row and heartbeat, the paths
    under `folders` it no longer found (only after a complete, uninterrupted run), and its summary.
    `files` is a list, or a `FileListing` that the engine streams.

    Ctrl-C (main thread): the first sets `stop`, the engine finishes what it is computing and the summary
    follows; the second marks the run interrupted and calls `on_abort` (the CLI exits there) or raises
    KeyboardInterrupt."""
    stop = stop or threading.Event()
    run_ids: list[int] = []

    def abort() -> None:
        record_abort(store, run_ids[0] if run_ids else None)
        if on_abort is not None:
            on_abort()

    with CtrlC(stop, abort):
        return await _recorded_run(plan, files, folders, engine, store, stop, run_ids)


async def _recorded_run(
    plan: RunPlan,
    files: Sequence[Path | str] | FileListing,
    folders: Sequence[Path | str],
    engine: Engine,
    store: Store,
    stop: threading.Event,
    run_ids: list[int],
) -> RunSummary:
    started = time.perf_counter()
    plan = replace(
        plan,
        run_id=store.start_run(
            plan.schema,
            _tool_keys(plan),
            {
                "files": None if isinstance(files, FileListing) else len(files),
                "force": plan.force,
                "llm": _llm_name(plan),
                "heartbeat_s": plan.settings.run_heartbeat_s,
            },
        ),
    )
    run_ids.append(plan.run_id)
    heartbeat = Heartbeat(store, plan.run_id, plan.settings.run_heartbeat_s)
    outcome: RunOutcome | None = None
    missing = 0
    try:
        outcome = await engine(plan, files, stop)
        listed_all = not isinstance(files, FileListing) or files.complete
        if not outcome.interrupted and outcome.fatal is None and listed_all:
            missing = sum(store.mark_missing(folder, plan.run_id) for folder in folders)
    finally:
        heartbeat.stop()
        status = (
            "interrupted"
            if outcome is None or outcome.interrupted
            else "failed"
            if outcome.fatal is not None
            else "finished"
        )
        counts = outcome.counts if outcome is not None else {}
        summary = RunSummary(
            processed=counts.get("ok", 0) + counts.get("needs_review", 0),
            skipped=counts.get("skipped", 0),
            failed=counts.get("failed", 0),
            needs_review=counts.get("needs_review", 0),
            seconds=round(time.perf_counter() - started, 3),
            run_id=plan.run_id,
            interrupted=status == "interrupted",
            failures=outcome.failures if outcome is not None else [],
            missing=missing,
            found=files.found if isinstance(files, FileListing) else len(files),
            llm_cost_usd=outcome.llm_cost_usd if outcome is not None else None,
            budget_skipped=outcome.budget_skipped if outcome is not None else 0,
            llm_problem=outcome.llm_problem if outcome is not None else None,
        )
        store.finish_run(
            plan.run_id,
            {k: getattr(summary, k) for k in ("processed", "skipped", "failed", "needs_review")},
            summary.seconds,
            status,
        )
    if outcome.fatal is not None:
        raise outcome.fatal
    return summary


def _tool_keys(plan: RunPlan) -> dict[str, str]:
    from visextract.tools.registry import build_tools

    return {tool.name: tool.cache_key for tool in build_tools(plan.tool_names, plan.tool_options)}


def _llm_name(plan: RunPlan) -> str | None:
    if plan.llm is None:
        return None
    if isinstance(plan.llm, str):
        return plan.llm_model or (plan.settings.llm_model if plan.llm == "openai" else None)
    return getattr(plan.llm, "model_name", None)


class Heartbeat:
    """Renews the run's heartbeat every `interval_s` on a daemon thread, so a run whose process died (kill -9,
    power loss) shows as interrupted instead of running forever."""

    def __init__(self, store: Store, run_id: int, interval_s: float) -> None:
        self.store = store
        self.run_id = run_id
        self.interval_s = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="run-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                self.store.renew_run(self.run_id)
            except Exception as exc:  # a busy database must not stop the run
                log.debug("heartbeat failed: %s", exc)

    def stop(self) -> None:
        self._stopped.set()


def record_abort(store: Store, run_id: int | None, timeout_s: float = 1.0) -> None:
    """Mark the run interrupted with what it saved, giving up after `timeout_s` (used when aborting: never
    wait for a busy database)."""
    if run_id is None:
        return

    def mark() -> None:
        try:
            store.abort_run(run_id)
        except Exception as exc:
            log.debug("could not mark run %s interrupted: %s", run_id, exc)

    thread = threading.Thread(target=mark, daemon=True)
    thread.start()
    thread.join(timeout_s)


class CtrlC:
    """SIGINT while a run is in progress (main thread only): the first sets `stop`, the second calls
    `on_abort` (the CLI exits at once) or raises KeyboardInterrupt."""

    def __init__(self, stop: threading.Event, on_abort: Callable[[], Any] | None = None) -> None:
        self.stop = stop
        self.on_abort = on_abort
        self._installed = False

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is not threading.main_thread():
            return self
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._interrupt)
        except (NotImplementedError, RuntimeError):
            return self
        self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def _interrupt(self) -> None:
        if not self.stop.is_set():
            self.stop.set()
            log.warning("stopping: finishing the images being computed (Ctrl-C again to abort)")
            return
        if self.on_abort is not None:
            self.on_abort()
        raise KeyboardInterrupt
