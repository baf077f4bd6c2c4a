"""The Python API for extraction: `Extractor(...).run(folder)` and `Extractor(...).records()`."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from os import PathLike
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from visextract.agents.llm.base import VisionLlm
from visextract.config import Settings
from visextract.engines.lifecycle import RunPlan, RunSummary
from visextract.errors import UsageError, option_name
from visextract.run_sync import run_sync
from visextract.schemas.base import RecordSchema
from visextract.schemas.record import Record
from visextract.schemas.registry import load_schema
from visextract.store import Store
from visextract.tools.base import Tool, ToolOptions

__all__ = ["Extractor", "RunSummary", "check_engine", "default_artifacts_dir", "resolve_llm_choice"]

log = logging.getLogger("visextract")


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

    `engine="ray"` runs the same extraction on a Ray cluster (`pip install 'visextract[ray]'`): at
    `ray_address` (default: $RAY_ADDRESS, else a local instance is started), one model set per worker,
    `gpus_per_worker` GPUs each where the cluster has GPUs, at most `workers` workers. Several machines
    need a PostgreSQL database.
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
        engine: str = "local",
        ray_address: str | None = None,
        gpus_per_worker: float | None = None,
        workers: int | None = None,
    ) -> None:
        self.settings = (settings or Settings()).model_copy(update={"db": db} if db else {})
        self.engine = engine
        self.ray = check_engine(engine, ray_address, gpus_per_worker, workers, self.settings.db)
        self.schema = load_schema(schema)
        self.llm = resolve_llm_choice(llm)
        if self.llm is None and self.schema.fill_from_tools is None:
            raise UsageError(
                f"schema {self.schema.name!r} is filled by an LLM: use {option_name('llm')} openai "
                f"(with OPENAI_API_KEY or OPENAI_BASE_URL) or {option_name('llm')} local with "
                f"{option_name('llm_model')} HF_ID_OR_PATH"
            )
        if concurrency < 1:
            raise UsageError(f"{option_name('concurrency')} must be 1 or more")
        if rpm is not None and rpm <= 0:
            raise UsageError(f"{option_name('rpm')} must be more than 0")
        if max_reasks < 0:
            raise UsageError(f"{option_name('max_reasks')} must be 0 or more")
        if image_detail not in ("low", "high", "auto"):
            raise UsageError(f"{option_name('image_detail')} {image_detail!r}: use low, high or auto")
        if budget_usd is not None and budget_usd < 0:
            raise UsageError(f"{option_name('budget_usd')} must be 0 or more")
        if detector_threshold is not None and not 0 <= detector_threshold <= 1:
            raise UsageError(f"{option_name('detector_threshold')} must be between 0 and 1")
        self.tool_names = list(tools) if tools is not None else list(self.schema.default_tools)
        if not self.tool_names:
            raise UsageError("no tools selected: pass at least one tool")
        self.plan = RunPlan(
            settings=self.settings,
            schema=self.schema,
            tool_names=self.tool_names,
            tool_options=ToolOptions(
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
            ),
            llm=self.llm,
            llm_model=llm_model,
            concurrency=concurrency,
            rpm=rpm,
            budget_usd=budget_usd,
            max_reasks=max_reasks,
            image_detail=image_detail,
        )
        self.skip_missing_tools = skip_missing_tools
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.settings.db)
        return self._store

    def prepare_tools(self) -> list[Tool]:
        """The tools this run will use, with a bad device and unavailable models reported (or dropped with
        `skip_missing_tools`) before any work."""
        self.plan.check_device()
        tools = self.plan.build_tools(skip_missing=self.skip_missing_tools)
        self.plan.tool_names = [tool.name for tool in tools]
        return tools

    def prepare_llm(self) -> VisionLlm | None:
        """The LLM backend for this run (None for tools only); a missing local model is an error now."""
        return self.plan.build_llm()

    def run(
        self,
        *paths: str | PathLike[str],
        force: bool = False,
        limit: int | None = None,
        discard_reviews: bool = False,
        on_start: Callable[[int], None] | None = None,
        on_image: Callable[[Any], None] | None = None,
        on_status: Callable[[str], None] | None = None,
        on_abort: Callable[[], None] | None = None,
        stop: threading.Event | None = None,
    ) -> RunSummary:
        """Process every image under `paths` (recursively). Images already done are skipped unless `force`.

        A redone record keeps the values a person reviewed (while its schema still has them and they still
        validate); `discard_reviews=True` redoes reviewed records and drops those values instead.

        Every option is checked before any work: a bad device, model or option raises and changes nothing.
        After a complete run over a folder, known paths under it that are gone are marked missing.
        `on_start(total)` is called once the files are listed (the ray engine streams the listing: it calls
        `on_start(None)` at once and `on_start(total)` when the listing ends), `on_status(text)` while
        models load, `on_image(outcome)` after each image, and `on_abort()` on a second Ctrl-C (the CLI
        exits there).
        """
        from visextract.engines.lifecycle import FileListing, run_with_lifecycle

        if not paths:
            raise UsageError("no paths given: pass image files or folders")
        if limit is not None and limit < 1:
            raise UsageError(f"{option_name('limit')} must be 1 or more")
        listing = FileListing(paths, limit)
        files = list(listing) if self.engine == "local" else listing  # the local engine shows a total at once
        self.prepare_tools()
        self.prepare_llm()
        store = self.store  # open the database now: a bad URL is an error before any work
        folders = [Path(p) for p in paths if os.path.isdir(p)] if listing.complete or files is listing else []
        plan = dataclasses.replace(self.plan, force=force, discard_reviews=discard_reviews)
        if self.engine == "local":
            from visextract.engines.local import extract_locally

            engine = partial(extract_locally, on_image=on_image, on_status=on_status)
            if on_start is not None:
                on_start(len(files))
        else:
            from visextract.engines.ray import extract_on_ray

            cluster = self.ray.connect()  # the cluster is checked before any work too
            engine = partial(extract_on_ray, cluster=cluster, on_start=on_start, on_image=on_image, on_status=on_status)
            try:
                return run_sync(lambda: run_with_lifecycle(plan, files, folders, engine, store, stop, on_abort))
            finally:
                cluster.close()
        return run_sync(lambda: run_with_lifecycle(plan, files, folders, engine, store, stop, on_abort))

    def records(self, schema: str | None = None, status: str | None = None) -> Iterator[Record[Any]]:
        """Current records, typed: `rec.data` is an instance of the schema's Pydantic model."""
        from visextract.store.typed_records import typed_records

        record_schema = self.schema if schema in (None, self.schema.name) else self._stored_or_named(schema)
        return typed_records(self.store, record_schema, status=status)

    def review(
        self,
        path_or_sha: str,
        data: dict[str, Any] | None = None,
        *,
        accept: bool = False,
        by: str | None = None,
        version: int | None = None,
    ) -> Record[Any]:
        """Review this schema's record of an image: `data` holds the corrected fields (the others are
        accepted as they are), or `accept=True` accepts it as it is. Writes a new version: edited fields get
        source "human", the others `verified: True`, the status becomes ok. Re-runs keep these values.

            ex = vx.Extractor(db="sqlite:///cars.db", schema="vehicle")
            rec = ex.review("cars/1.jpg", {"color": "dark blue"}, by="ann")
            rec.provenance["color"].source        # "human"

        Raises ReviewRefusedError (with `.errors`) when a value does not validate, ReviewConflictError when
        `version` is given and the record changed since; nothing is stored then.
        """
        row = self.store.review(
            path_or_sha, data, accept=accept, by=by, schema=self.schema.name, version=version, model_schema=self.schema
        )
        return _typed(self.store, row)

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


def check_engine(
    engine: str, ray_address: str | None, gpus_per_worker: float | None, workers: int | None, db_url: str
) -> Any:
    """The ray engine's options, checked (None for the local engine); a bad choice is a usage error now."""
    if engine == "local":
        for name, value in (("ray_address", ray_address), ("gpus_per_worker", gpus_per_worker), ("workers", workers)):
            if value is not None:
                raise UsageError(f"{option_name(name)} is for the ray engine: add {option_name('engine')} ray")
        return None
    if engine != "ray":
        raise UsageError(f"{option_name('engine')} {engine!r}: use local or ray")
    try:
        from visextract.engines.ray import RayOptions
    except ImportError as exc:
        raise UsageError(
            f"{option_name('engine')} ray needs Ray Data ({exc.name or 'ray'} is not installed): "
            "pip install 'visextract[ray]'"
        ) from None
    return RayOptions(address=ray_address, gpus_per_worker=gpus_per_worker, workers=workers, db_url=db_url)


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
        raise UsageError(f"{option_name('llm')} {llm!r}: use none, openai or local")
    return llm


def review(
    path_or_sha: str,
    data: dict[str, Any] | None = None,
    *,
    accept: bool = False,
    by: str | None = None,
    schema: str | None = None,
    version: int | None = None,
    db: str | None = None,
) -> Record[Any]:
    """Review an image's record (a path, a sha256 or a unique prefix of one): the same as the web app's
    Accept and Save. `schema` picks the record when the image has records of several schemas.

        import visextract as vx
        vx.review("photos/cat.jpg", {"labels": ["cat"]}, by="ann", db="sqlite:///photos.db")
        vx.review("photos/dog.jpg", accept=True, db="sqlite:///photos.db")

    See `Extractor.review` for what a review writes and raises.
    """
    from visextract.query import open_store

    store = open_store(db or Settings().db)
    row = store.review(path_or_sha, data, accept=accept, by=by, schema=schema, version=version)
    return _typed(store, row)


def _typed(store: Store, row: Any) -> Record[Any]:
    from visextract.store.browse import exported
    from visextract.store.typed_records import typed_record

    (item,) = exported(store, [row.id])
    return typed_record(
        item | {"record_id": row.id, "created_at": row.created_at},
        store.schema_model(row.schema_name, row.schema_version),
    )
