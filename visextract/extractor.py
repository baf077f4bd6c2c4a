"""The Python API for extraction: `Extractor(...).run(folder)` and `Extractor(...).records()`."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from visextract.agents.llm.base import VisionLlm
from visextract.config import Settings
from visextract.errors import ModelUnavailableError, UsageError
from visextract.run_sync import run_sync
from visextract.schemas.base import RecordSchema
from visextract.schemas.record import Record
from visextract.schemas.registry import load_schema
from visextract.store import Store
from visextract.tools.base import Tool, ToolOptions

if TYPE_CHECKING:
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

    @property
    def total(self) -> int:
        return self.processed + self.skipped + self.failed


class Extractor:
    """Turns image folders into records in a database.

        import visextract as vx
        ex = vx.Extractor(db="sqlite:///photos.db", schema="scene", tools=["classifier", "ocr"])
        summary = ex.run("photos/")          # RunSummary(processed=..., skipped=..., failed=..., seconds=...)
        for rec in ex.records():
            print(rec.path, rec.status, rec.data)

    `tools=None` runs the schema's default tools (for `scene`: classifier, faces, ocr, colors).
    `models` swaps a tool's model: `{"classifier": "google/vit-base-patch16-224"}`; `labels` are the
    zeroshot/openvocab queries, `question` the vqa question.

    `llm` is "openai" (any OpenAI-compatible server: OPENAI_API_KEY / OPENAI_BASE_URL), "local" (a
    transformers VLM by id or path in `llm_model`), None for tools only, or "auto": openai when
    OPENAI_API_KEY is set, else none. An object with `model_name` and `async complete(request)`
    (see `agents.llm.base.VisionLlm`) plugs in any other backend.
    """

    def __init__(
        self,
        db: str | None = None,
        schema: str | type[BaseModel] | RecordSchema = "scene",
        tools: Sequence[str] | None = None,
        llm: str | VisionLlm | None = "auto",
        *,
        llm_model: str | None = None,
        concurrency: int = 8,
        rpm: float | None = None,
        budget_usd: float | None = None,
        max_reasks: int = 2,
        image_detail: str = "auto",
        models: dict[str, str] | None = None,
        labels: Sequence[str] | None = None,
        question: str | None = None,
        detector_threshold: float | None = None,
        skip_missing_tools: bool = False,
        settings: Settings | None = None,
    ) -> None:
        self.settings = (settings or Settings()).model_copy(update={"db": db} if db else {})
        self.schema = load_schema(schema)
        self.llm = resolve_llm_choice(llm)
        if self.llm is None and self.schema.fill_from_tools is None:
            raise UsageError(
                f"schema {self.schema.name!r} is filled by an LLM: use --llm openai (with OPENAI_API_KEY) "
                "or --llm local --llm-model HF_ID_OR_PATH"
            )
        if concurrency < 1:
            raise UsageError("--concurrency must be 1 or more")
        if rpm is not None and rpm <= 0:
            raise UsageError("--rpm must be more than 0")
        if max_reasks < 0:
            raise UsageError("--max-reasks must be 0 or more")
        if image_detail not in ("low", "high", "auto"):
            raise UsageError(f"--image-detail {image_detail!r}: use low, high or auto")
        if budget_usd is not None and budget_usd < 0:
            raise UsageError("--budget-usd must be 0 or more")
        self.llm_model = llm_model
        self.concurrency = concurrency
        self.rpm = rpm
        self.budget_usd = budget_usd
        self.max_reasks = max_reasks
        self.image_detail = image_detail
        self.tool_names = list(tools) if tools is not None else list(self.schema.default_tools)
        if not self.tool_names:
            raise UsageError("no tools selected: pass at least one tool")
        self.tool_options = ToolOptions(
            models=dict(models or {}),
            device=self.settings.device,
            batch_size=self.settings.batch_size,
            threads=self.settings.threads,
            faces_max_side=self.settings.faces_max_side,
            ocr_detector_side=self.settings.ocr_detector_side,
            detector_threshold=detector_threshold,
            labels=tuple(labels or ()),
            question=question,
            artifacts_dir=self.settings.artifacts_dir or default_artifacts_dir(self.settings.db),
        )
        self.skip_missing_tools = skip_missing_tools
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.settings.db)
        return self._store

    def prepare_tools(self) -> list[Tool]:
        """The tools this run will use, with unavailable models reported (or dropped) before any work."""
        from visextract.tools.registry import build_tools

        tools = build_tools(self.tool_names, self.tool_options)
        usable = []
        for tool in tools:
            reason = tool.missing_reason()
            if reason is None:
                usable.append(tool)
            elif self.skip_missing_tools:
                log.warning("skipping tool %s: %s", tool.name, reason)
            else:
                raise ModelUnavailableError(f"tool {tool.name}: {reason}")
        if not usable:
            raise ModelUnavailableError("none of the selected tools can run here")
        return usable

    def run(
        self,
        *paths: str | PathLike[str],
        force: bool = False,
        limit: int | None = None,
        on_start: Callable[[int], None] | None = None,
        on_image: Callable[[Any], None] | None = None,
        stop: threading.Event | None = None,
    ) -> RunSummary:
        """Process every image under `paths` (recursively). Images already done are skipped unless `force`.

        `on_start(total)` is called once the files are listed; `on_image(outcome)` after each image.
        """
        from visextract.images import find_images

        if not paths:
            raise UsageError("no paths given: pass image files or folders")
        if limit is not None and limit < 0:
            raise UsageError("--limit must be 0 or more")
        files = list(itertools.islice(find_images(paths), limit))
        tools = self.prepare_tools()
        llm = self.prepare_llm()
        self.store  # noqa: B018  (open the database now: a bad URL is an error before any work)
        if on_start is not None:
            on_start(len(files))
        return run_sync(lambda: self._run(files, tools, llm, force, on_image, stop))

    def prepare_llm(self) -> VisionLlm | None:
        """The LLM backend for this run (None for tools only); a missing local model is an error now."""
        if self.llm is None or not isinstance(self.llm, str):
            return self.llm
        if self.llm == "openai":
            if not (os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL")):
                raise UsageError(
                    "--llm openai needs OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL (a local OpenAI-compatible server)"
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
            raise UsageError("--llm local needs --llm-model HF_ID_OR_PATH (e.g. HuggingFaceTB/SmolVLM-256M-Instruct)")
        from visextract.agents.llm.local_vlm import LocalVisionLlm

        local = LocalVisionLlm(self.llm_model, device=self.settings.device)
        reason = local.missing_reason()
        if reason is not None:
            raise ModelUnavailableError(f"--llm local: {reason}")
        return local

    async def _run(
        self,
        files: list[Any],
        tools: list[Tool],
        llm: VisionLlm | None,
        force: bool,
        on_image: Any,
        stop: Any,
    ) -> RunSummary:
        from visextract.agents.extraction_graph import build_extraction_graph
        from visextract.agents.extraction_run import run_images
        from visextract.agents.extraction_state import ExtractionContext, LlmSettings
        from visextract.agents.llm.gate import LlmGate
        from visextract.local_models.compute import ComputeBudget
        from visextract.tools.batcher import tool_batcher

        started = time.perf_counter()
        store = self.store
        tool_map = {tool.name: tool for tool in tools}
        run_id = store.start_run(
            self.schema,
            {name: tool.cache_key for name, tool in tool_map.items()},
            {"files": len(files), "force": force, "llm": llm.model_name if llm else None},
        )
        budget = ComputeBudget.for_this_machine(self.settings.threads)  # the cores, shared by every model
        batchers = {name: tool_batcher(tool, self.settings.batch_size, budget) for name, tool in tool_map.items()}
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-writer")
        embedder = search_embedder(budget) if self.settings.search_index else None
        context = ExtractionContext(
            store=store,
            schema=self.schema,
            tools=tool_map,
            batchers=batchers,
            settings=self.settings,
            run_id=run_id,
            force=force,
            writer=writer,
            embedder=embedder,
            stop=stop or threading.Event(),
            llm=LlmSettings(
                backend=llm,
                gate=LlmGate(self.concurrency, self.budget_usd),
                max_reasks=self.max_reasks,
                image_detail=self.image_detail,
                image_max_side=self.settings.llm_image_max_side,
                prices=self.settings.llm_prices,
            )
            if llm is not None
            else None,
        )
        # keep the tools busy while LLM calls are in flight: more images than LLM slots
        in_flight = max(self.settings.images_in_flight, 3 * self.concurrency if llm else 0)
        failures: list[tuple[str, str]] = []

        def on_outcome(outcome: Any) -> None:
            if outcome.status == "failed" and len(failures) < 100:
                failures.append((outcome.path, outcome.error or "unknown error"))
            if on_image is not None:
                on_image(outcome)

        try:
            outcome = await run_images(
                build_extraction_graph(),
                context,
                files,
                images_in_flight=in_flight,
                on_image=on_outcome,
            )
        finally:
            for batcher in [*batchers.values(), *([embedder] if embedder else [])]:
                batcher.close()
            writer.shutdown(wait=True)
            if llm is not None and hasattr(llm, "aclose"):
                await llm.aclose()
        counts = outcome.counts
        status = "failed" if outcome.fatal else "interrupted" if outcome.interrupted else "finished"
        gate = context.llm.gate if context.llm else None
        summary = RunSummary(
            processed=counts["ok"] + counts["needs_review"],
            skipped=counts["skipped"],
            failed=counts["failed"],
            needs_review=counts["needs_review"],
            seconds=round(time.perf_counter() - started, 3),
            run_id=run_id,
            interrupted=status == "interrupted",
            failures=failures,
            llm_cost_usd=round(gate.spent_usd, 6) if gate and not gate.unpriced_calls else None,
            budget_skipped=gate.skipped_for_budget if gate else 0,
        )
        store.finish_run(
            run_id,
            {
                "processed": summary.processed,
                "skipped": summary.skipped,
                "failed": summary.failed,
                "needs_review": summary.needs_review,
            },
            summary.seconds,
            status,
        )
        if outcome.fatal is not None:
            raise outcome.fatal
        return summary

    def records(self, schema: str | None = None, status: str | None = None) -> Iterator[Record[Any]]:
        """Current records, typed: `rec.data` is an instance of the schema's Pydantic model."""
        from visextract.store.typed_records import typed_records

        record_schema = self.schema if schema in (None, self.schema.name) else self._stored_or_named(schema)
        return typed_records(self.store, record_schema, status=status)

    def _stored_or_named(self, name: str) -> RecordSchema:
        """A built-in or file schema by name, else the latest version stored in the database."""
        from visextract.errors import SchemaLoadError
        from visextract.store.store import stored_schema

        try:
            return load_schema(name)
        except SchemaLoadError:
            versions = [row for row in self.store.schema_versions() if row.name == name]
            if not versions:
                raise
            return stored_schema(versions[-1])


def default_artifacts_dir(db_url: str) -> Path:
    """Where tools save files: next to a SQLite database (`photos.db` -> `photos-artifacts/`), else ./."""
    from visextract.store.engine import parse_db_url

    url = parse_db_url(db_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        database = Path(url.database).expanduser().absolute()
        return database.with_name(f"{database.stem}-artifacts")
    return Path("visextract-artifacts").absolute()


def resolve_llm_choice(llm: str | VisionLlm | None) -> str | VisionLlm | None:
    """ "auto" -> "openai" when OPENAI_API_KEY is set, else None; "none" -> None; names are checked."""
    if llm is None or llm == "none":
        return None
    if llm == "auto":
        return "openai" if os.environ.get("OPENAI_API_KEY") else None
    if isinstance(llm, str) and llm not in ("openai", "local"):
        raise UsageError(f"--llm {llm!r}: use none, openai or local")
    return llm


def search_embedder(budget: ComputeBudget) -> Batcher[str, bytes]:
    """Search text -> float32 vector bytes (as stored in `record_embedding`), in batches, computed by
    MiniLM in a child process (`EmbedderProcess`: its loading never holds up the run's event loop)."""
    from visextract.local_models.embedder import EmbedderProcess
    from visextract.tools.batcher import Batcher

    process = EmbedderProcess(threads=budget.threads_per_batch)
    return Batcher(
        "embed",
        lambda texts: [vector.tobytes() for vector in process.embed(texts)],
        batch_size=64,
        warm_up=process.start,
        budget=budget,
        cores=budget.threads_per_batch,
        on_close=process.close,
    )
