"""The Store: every read and write visextract makes to its database goes through here."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, and_, func, inspect, or_, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError
from sqlmodel import Session, col, select
from tenacity import Retrying, retry_if_exception, stop_before_delay, wait_exponential

from visextract.errors import StoreError
from visextract.schemas.base import RecordSchema
from visextract.store.engine import SQLITE_BUSY_TIMEOUT_S, open_engine, parse_db_url
from visextract.store.migrations import migrate
from visextract.store.paths import path_subject, reconcile_records
from visextract.store.tables import (
    ImagePathRow,
    ImageRow,
    LlmCallRow,
    RecordEmbeddingRow,
    RecordRow,
    RecordSchemaRow,
    RunRow,
    ToolResultRow,
    listed,
    utc_now,
)
from visextract.store.views import TypedView, create_typed_view, typed_view

T = TypeVar("T")


@dataclass
class ImageFacts:
    """What the load stage learned about an image file's content."""

    sha256: str
    size_bytes: int
    width: int
    height: int
    format: str
    exif: dict[str, str] = field(default_factory=dict)


@dataclass
class RecordDraft:
    """Everything the persist stage writes for one image, in one transaction."""

    path: str
    schema_name: str
    schema_version: str
    status: str
    image: ImageFacts | None = None
    subject: str | None = None  # sha256; defaults to "path:<path>" when the file could not be read
    tools: dict[str, str] = field(default_factory=dict)  # tool -> cache_key of the results the record used
    tools_key: str = ""  # what made the record (tools + LLM); a re-run with the same key skips it
    new_tool_results: dict[str, tuple[list[dict[str, Any]], float | None]] = field(default_factory=dict)
    error: str | None = None
    complete: bool = True
    data: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    llm: dict[str, Any] | None = None
    raw_answer: str | None = None
    llm_calls: list[dict[str, Any]] = field(default_factory=list)  # LlmCallRow fields, in call order
    run_id: int | None = None
    label: str | None = None  # the tools' top label (gallery facet)
    review: dict[str, Any] | None = None  # set by the save path when it keeps reviewed values
    discard_reviews: bool = False  # True: do not keep the human-reviewed values of the record it replaces

    def subject_key(self) -> str:
        return self.subject or (self.image.sha256 if self.image else path_subject(self.path))


USABLE_STATUSES = ("ok", "needs_review")
RUN_LEASE_BEATS = 3  # a running run that missed this many heartbeats has died: it shows as interrupted
DEFAULT_HEARTBEAT_S = 10.0


@dataclass(frozen=True)
class SaveResult:
    """What `Store.save` did: the new record's id, and whether it became the current record. A failed or
    unfinished attempt never replaces a usable finished record of the same content: it is kept as history."""

    record_id: int
    current: bool


SCHEMA_LOCK_ID = 0x76697379  # PostgreSQL advisory lock around schema registration
# Schemas by (name, version) as runs in this process registered them, so checks on stored records use the real
# model (with its validators) rather than one rebuilt from JSON Schema. A version is a hash of the JSON Schema.
_SCHEMAS: dict[tuple[str, str], RecordSchema] = {}


def tools_key(tools: dict[str, str]) -> str:
    """A canonical string for a tool set and the models/settings it used."""
    return ";".join(f"{name}={key}" for name, key in sorted(tools.items()))


class Store:
    """A visextract database. Creates or upgrades its tables on open.

    store = Store("sqlite:///photos.db")
    for row in store.current_records("scene"):
        print(row.path, row.status)
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        """Open (and upgrade) the database at `url`. With `create=False` (read commands), a URL with no
        visextract database behind it is a StoreError instead of a new, empty database."""
        self.url = url
        if not create:
            _refuse_sqlite_file_that_is_not_ours(url)
        self.engine: Engine = open_engine(url)
        self._writer = self.engine.execution_options(write=True)
        try:
            if not create and not _retry_while_sqlite_is_locked(lambda: inspect(self.engine).has_table("record")):
                raise StoreError(f"no visextract database at {self.safe_url}: run `visextract run ... --db URL` first")
            if _retry_while_sqlite_is_locked(lambda: migrate(self.engine)):
                self._refresh_typed_views()
        except DatabaseError as exc:
            self.engine.dispose()
            raise StoreError(f"cannot open database {self.safe_url}: {_first_line(exc)}") from None

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def read(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def write(self) -> Session:
        """A session whose transaction takes the write lock up front (SQLite `BEGIN IMMEDIATE`)."""
        return Session(self._writer, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    # ---- runs and schemas -------------------------------------------------------------------

    def start_run(self, schema: RecordSchema, tools: dict[str, str], options: dict[str, Any]) -> int:
        with self.write() as session:
            self._register_schema(session, schema)
            run = RunRow(
                schema_name=schema.name,
                schema_version=schema.version,
                tools=tools,
                options=options,
                heartbeat_at=utc_now(),
            )
            session.add(run)
            session.commit()
            assert run.id is not None
            return run.id

    def renew_run(self, run_id: int) -> None:
        """The running run's heartbeat: while it is renewed, the run shows as running."""
        with self.write() as session:
            session.execute(
                update(RunRow)
                .where(col(RunRow.id) == run_id, RunRow.status == "running")
                .values(heartbeat_at=utc_now())
            )
            session.commit()

    def finish_run(self, run_id: int, counts: dict[str, int], seconds: float, status: str) -> None:
        with self.write() as session:
            run = session.get(RunRow, run_id)
            if run is None:
                return
            for name, value in counts.items():
                setattr(run, name, value)
            run.seconds = round(seconds, 3)
            run.status = status
            run.finished_at = utc_now()
            session.add(run)
            session.commit()

    def abort_run(self, run_id: int) -> None:
        """Mark a run `interrupted` when its summary is not at hand (a second Ctrl-C): the counts are what
        it saved (its records by status) and the time is since it started."""
        with self.write() as session:
            run = session.get(RunRow, run_id)
            if run is None:
                return
            statuses = session.exec(
                select(RecordRow.status, func.count()).where(RecordRow.run_id == run_id).group_by(RecordRow.status)
            ).all()
            saved = dict(statuses)
            run.processed = saved.get("ok", 0) + saved.get("needs_review", 0)
            run.needs_review = saved.get("needs_review", 0)
            run.failed = saved.get("failed", 0)
            run.finished_at = utc_now()
            run.seconds = round((run.finished_at - _aware(run.started_at)).total_seconds(), 3)
            run.status = "interrupted"
            session.add(run)
            session.commit()

    def _register_schema(self, session: Session, schema: RecordSchema) -> None:
        """Remember this schema version and (re)create its typed view (runs starting at once queue up)."""
        _SCHEMAS[(schema.name, schema.version)] = schema
        if self.dialect == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": SCHEMA_LOCK_ID})
        self._insert_ignore(
            session,
            RecordSchemaRow,
            {
                "name": schema.name,
                "version": schema.version,
                "json_schema": schema.json_schema,
                "origin": schema.origin,
                "created_at": utc_now(),
            },
            ["name", "version"],
        )
        create_typed_view(session.connection(), schema)

    def _refresh_typed_views(self) -> None:
        """Recreate every schema's typed view (after an upgrade changed what views select)."""
        with self.write() as session:
            for row in self._latest_schema_rows(session):
                create_typed_view(session.connection(), stored_schema(row))
            session.commit()

    @staticmethod
    def _latest_schema_rows(session: Session) -> list[RecordSchemaRow]:
        latest: dict[str, RecordSchemaRow] = {}
        for row in session.exec(select(RecordSchemaRow).order_by(col(RecordSchemaRow.created_at))):
            latest[row.name] = row
        return list(latest.values())

    def typed_views(self) -> list[TypedView]:
        """The typed view of each schema, from its latest stored version."""
        return [typed_view(schema) for schema in self.latest_schemas()]

    def latest_schemas(self) -> list[RecordSchema]:
        """Each schema in the database, as its latest stored version, in the order first seen."""
        with self.read() as session:
            return [stored_schema(row) for row in self._latest_schema_rows(session)]

    def schema_names(self) -> list[str]:
        """Names of the schemas that records were made with, in the order first seen."""
        return list(dict.fromkeys(row.name for row in self.schema_versions()))

    def check_schema_name(self, name: str | None) -> None:
        """A UsageError naming the known schemas when `name` is given and no record was made with it."""
        from visextract.errors import UsageError

        if name is None:
            return
        known = self.schema_names()
        if name not in known:
            listed = ", ".join(known) if known else "none yet"
            raise UsageError(f"no records of schema {name!r} in {self.safe_url} (schemas here: {listed})")

    def schema_versions(self) -> list[RecordSchemaRow]:
        with self.read() as session:
            return list(session.exec(select(RecordSchemaRow).order_by(col(RecordSchemaRow.created_at))))

    # ---- what is already done ------------------------------------------------------------------

    def current_record(self, subject: str, schema_name: str) -> RecordRow | None:
        with self.read() as session:
            return session.exec(
                select(RecordRow).where(
                    RecordRow.subject == subject,
                    RecordRow.schema_name == schema_name,
                    col(RecordRow.is_current),
                )
            ).first()

    def is_done(
        self,
        subject: str,
        schema: RecordSchema,
        producer_key: str,
        *,
        run_id: int | None = None,
        force: bool = False,
        redo_reviewed: bool = False,
    ) -> bool:
        """Whether the image needs no work: run `run_id` already made a record of it (a copy of the file, or
        a batch retried after its worker died: one run never makes two versions), or, unless `force`, the
        current record was made with this schema version and the same tools/LLM (`producer_key`), and is
        final. `redo_reviewed`: a reviewed record is not done (discard reviews)."""
        if run_id is not None:
            with self.read() as session:
                if _made_in_run(session, subject, schema.name, run_id) is not None:
                    return True
        if force:
            return False
        record = self.current_record(subject, schema.name)
        return (
            record is not None
            and record.complete
            and record.schema_version == schema.version
            and record.tools_key == producer_key
            and not (redo_reviewed and record.review)
        )

    def cached_tool_results(self, sha256: str, tools: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
        """Stored results for this image under exactly these tools' cache keys."""
        if not tools:
            return {}
        with self.read() as session:
            rows = session.exec(
                select(ToolResultRow.tool, ToolResultRow.cache_key, ToolResultRow.results)
                .join(ImageRow, col(ImageRow.id) == col(ToolResultRow.image_id))
                .where(ImageRow.sha256 == sha256, col(ToolResultRow.tool).in_(list(tools)))
            ).all()
        return {tool: results for tool, key, results in rows if tools.get(tool) == key}

    # ---- writing --------------------------------------------------------------------------------

    def save(self, draft: RecordDraft) -> SaveResult:
        """Write an image's facts, path, new tool results and record in one transaction.

        The new record becomes the current one for its image and schema, with the next version number;
        older ones stay as history. A failed or unfinished attempt does not replace a usable finished
        record of the same content (a bad option or a server outage must not destroy good records): it is
        stored as history, and the good record stays current.
        """
        for attempt in range(3):
            try:
                return self._save(draft)
            except IntegrityError:  # a concurrent writer made the same image/record first: redo on top
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _save(self, draft: RecordDraft) -> SaveResult:
        with self.write() as session:
            image_id = self._upsert_image(session, draft.image) if draft.image else None
            self._upsert_path(session, draft.path, image_id, draft.subject, draft.run_id)
            if image_id is not None:
                for tool, (results, seconds) in draft.new_tool_results.items():
                    self._insert_ignore(
                        session,
                        ToolResultRow,
                        {
                            "image_id": image_id,
                            "tool": tool,
                            "cache_key": draft.tools[tool],
                            "results": results,
                            "seconds": seconds,
                            "run_id": draft.run_id,
                            "created_at": utc_now(),
                        },
                        ["image_id", "tool", "cache_key"],
                    )
            subject = draft.subject_key()
            made = _made_in_run(session, subject, draft.schema_name, draft.run_id) if draft.run_id else None
            if made is not None:  # a copy or a retry raced this one: the run keeps the record it made first
                session.commit()
                return SaveResult(made[0], made[1])
            same_subject = (col(RecordRow.subject) == subject, col(RecordRow.schema_name) == draft.schema_name)
            current = session.exec(select(RecordRow).where(*same_subject, col(RecordRow.is_current))).first()
            self._keep_reviewed_values(session, draft, current, same_subject)
            becomes_current = current is None or not _keeps_over(current, draft)
            if becomes_current and current is not None:
                session.execute(
                    update(RecordRow).where(*same_subject, col(RecordRow.is_current)).values(is_current=False)
                )
            last_version = session.exec(select(func.max(RecordRow.version)).where(*same_subject)).one()
            record = RecordRow(
                subject=subject,
                image_id=image_id,
                path=draft.path,
                schema_name=draft.schema_name,
                schema_version=draft.schema_version,
                tools=draft.tools,
                tools_key=draft.tools_key or tools_key(draft.tools),
                status=draft.status,
                error=draft.error,
                complete=draft.complete,
                data=draft.data,
                provenance=draft.provenance,
                llm=draft.llm,
                raw_answer=draft.raw_answer,
                run_id=draft.run_id,
                is_current=becomes_current,
                version=(last_version or 0) + 1,
                label=draft.label,
                review=draft.review,
            )
            session.add(record)
            session.flush()
            for call in draft.llm_calls:
                session.add(LlmCallRow(record_id=record.id, run_id=draft.run_id, path=draft.path, **call))
            session.commit()
            assert record.id is not None
            return SaveResult(record.id, becomes_current)

    def review(
        self,
        path_or_sha: str,
        data: dict[str, Any] | None = None,
        *,
        accept: bool = False,
        by: str | None = None,
        schema: str | None = None,
        version: int | None = None,
        model_schema: RecordSchema | None = None,
    ) -> RecordRow:
        """A person's review of an image's current record, written as its new version in one transaction.

        `data` holds edited values (the rest are accepted as they are); `accept=True` without `data` accepts
        the record as it is. `version` is the version the reviewer saw: a later one raises
        ReviewConflictError. Values that do not validate raise ReviewRefusedError. See `store.review`.
        """
        from visextract.store.review import reindex_reviewed, review_in_session

        for attempt in range(3):
            try:
                with self.write() as session:
                    row, previous_id = review_in_session(
                        self, session, path_or_sha, data, accept, by, schema, version, model_schema
                    )
                    session.commit()
                break
            except IntegrityError:  # a concurrent writer made a new version first: review on top of it
                if attempt == 2:
                    raise
        reindex_reviewed(self, previous_id, row)  # after the commit: the review is durable first
        return row

    def schema_model(self, name: str, version: str) -> RecordSchema:
        """The schema a record version was made with: the one a run registered in this process (its real
        Pydantic model, validators and all), else rebuilt from the stored JSON Schema."""
        known = _SCHEMAS.get((name, version))
        if known is None:
            with self.read() as session:
                row = session.get(RecordSchemaRow, (name, version))
            if row is None:
                raise StoreError(f"schema {name!r} version {version} is not in {self.safe_url}")
            known = _SCHEMAS.setdefault((name, version), stored_schema(row))
        return known

    def _keep_reviewed_values(
        self, session: Session, draft: RecordDraft, current: RecordRow | None, same_subject: tuple[Any, ...]
    ) -> None:
        """Human values are never lost: the draft keeps the reviewed values of the record it follows (the
        current one, else the latest version), unless the run discards reviews. See `store.review`."""
        from visextract.store.review import carry_reviewed_fields

        if draft.discard_reviews or draft.data is None:
            return
        previous = (
            current
            or session.exec(
                select(RecordRow).where(*same_subject).order_by(col(RecordRow.version).desc()).limit(1)
            ).first()
        )
        if previous is not None and previous.review:
            carry_reviewed_fields(draft, previous, self.schema_model(draft.schema_name, draft.schema_version).model)

    def save_embedding(self, record_id: int, model: str, segments: list[str], vector: bytes) -> None:
        """Store a record's search text and its embedding (replacing any earlier one; a search may embed
        a record at the same time as the run that made it)."""
        values = {"record_id": record_id, "model": model, "segments": segments, "vector": vector}
        with self.write() as session:
            session.execute(
                self._insert_statement(RecordEmbeddingRow)
                .values(values)
                .on_conflict_do_update(
                    index_elements=["record_id"], set_={k: v for k, v in values.items() if k != "record_id"}
                )
            )
            session.commit()

    def remember_path(self, path: str, sha256: str | None, run_id: int | None = None) -> None:
        """Note that `path` holds the image `sha256` now (e.g. a duplicate, or an image already done)."""
        with self.write() as session:
            image_id = None
            if sha256:
                image_id = session.exec(select(ImageRow.id).where(ImageRow.sha256 == sha256)).first()
            self._upsert_path(session, path, image_id, sha256, run_id)
            session.commit()

    def mark_missing(self, folder: str | Path, run_id: int) -> int:
        """Mark the known paths under `folder` that run `run_id` did not find as missing; returns how many.
        Call only after a run listed the whole folder."""
        prefix = os.path.join(os.path.abspath(folder), "")
        under = (
            col(ImagePathRow.path).startswith(prefix, autoescape=True),
            col(ImagePathRow.missing_at).is_(None),
            or_(col(ImagePathRow.seen_run_id).is_(None), col(ImagePathRow.seen_run_id) != run_id),
        )
        with self.write() as session:
            rows = session.exec(select(ImagePathRow.path, ImagePathRow.sha256).where(*under)).all()
            if rows:
                session.execute(update(ImagePathRow).where(*under).values(missing_at=utc_now()))
                reconcile_records(session.connection(), {sha or path_subject(path) for path, sha in rows})
            session.commit()
        return len(rows)

    def _upsert_image(self, session: Session, image: ImageFacts) -> int:
        self._insert_ignore(
            session,
            ImageRow,
            {
                "sha256": image.sha256,
                "size_bytes": image.size_bytes,
                "width": image.width,
                "height": image.height,
                "format": image.format,
                "exif": image.exif,
                "created_at": utc_now(),
            },
            ["sha256"],
        )
        image_id = session.exec(select(ImageRow.id).where(ImageRow.sha256 == image.sha256)).one()
        assert image_id is not None
        return image_id

    def _upsert_path(
        self, session: Session, path: str, image_id: int | None, sha256: str | None, run_id: int | None
    ) -> None:
        """`path` holds `sha256` now (None: unreadable). The content it held before, if other, stops
        claiming it, and content found again is no longer missing."""
        before = session.exec(
            select(ImagePathRow.sha256, ImagePathRow.missing_at).where(ImagePathRow.path == path)
        ).first()
        now = utc_now()
        values = {"path": path, "image_id": image_id, "sha256": sha256, "seen_at": now, "seen_run_id": run_id}
        statement = self._insert_statement(ImagePathRow).values(values | {"missing_at": None})
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["path"],
                set_={key: value for key, value in values.items() if key != "path"} | {"missing_at": None},
            )
        )
        if before is None:
            return
        old_sha, was_missing = before
        if old_sha != sha256 or was_missing is not None:
            subjects = {sha256 or path_subject(path), old_sha or path_subject(path)}
            reconcile_records(session.connection(), subjects)

    def _insert_ignore(self, session: Session, table: Any, values: dict[str, Any], keys: list[str]) -> None:
        session.execute(self._insert_statement(table).values(values).on_conflict_do_nothing(index_elements=keys))

    def _insert_statement(self, table: Any) -> Any:
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        if self.dialect == "sqlite":
            return sqlite.insert(table)
        raise StoreError(f"database {self.dialect!r} is not supported: use SQLite or PostgreSQL")

    # ---- reading --------------------------------------------------------------------------------

    def current_records(
        self,
        schema_name: str | None = None,
        status: str | None = None,
        all_versions: bool = False,
        include_missing: bool = False,
    ) -> Iterator[RecordRow]:
        """Records in id order: the listed current ones (see `listed`), or every version with `all_versions`."""
        statement = select(RecordRow).order_by(col(RecordRow.id))
        if not all_versions:
            statement = statement.where(*listed(include_missing))
        if schema_name:
            statement = statement.where(RecordRow.schema_name == schema_name)
        if status:
            statement = statement.where(RecordRow.status == status)
        with self.read() as session:
            yield from session.exec(statement.execution_options(yield_per=500))

    def find_records(self, path_or_sha: str, schema_name: str | None = None) -> list[RecordRow]:
        """Current records of the content a path holds now (as given, or absolute), or of a sha256 or a
        unique sha256 prefix (6+ characters). A duplicate's path finds the records made from its twin."""
        absolute = os.path.abspath(os.path.expanduser(path_or_sha))
        with self.read() as session:
            held = session.exec(
                select(ImagePathRow.path, ImagePathRow.sha256).where(
                    col(ImagePathRow.path).in_([path_or_sha, absolute])
                )
            ).all()
            subjects = [sha or path_subject(path) for path, sha in held]
            conditions = [col(RecordRow.subject).in_(subjects)] if subjects else []
            if not held and len(path_or_sha) >= 6 and all(c in "0123456789abcdef" for c in path_or_sha.lower()):
                prefix = path_or_sha.lower()  # hex digits sort below "g": an index range, not a LIKE scan
                conditions.append(and_(col(RecordRow.subject) >= prefix, col(RecordRow.subject) < prefix + "g"))
            if not conditions:
                return []
            statement = select(RecordRow).where(col(RecordRow.is_current), or_(*conditions))
            if schema_name:
                statement = statement.where(RecordRow.schema_name == schema_name)
            return list(session.exec(statement.order_by(col(RecordRow.id))))

    def paths_of(self, sha256: str, *, missing: bool = False) -> list[str]:
        """The paths that hold this content now (or, with `missing=True`, held it until they went missing)."""
        with self.read() as session:
            return list(
                session.exec(
                    select(ImagePathRow.path)
                    .where(ImagePathRow.sha256 == sha256)
                    .where(
                        col(ImagePathRow.missing_at).isnot(None) if missing else col(ImagePathRow.missing_at).is_(None)
                    )
                    .order_by(col(ImagePathRow.path))
                )
            )

    def image_source(self, sha256: str) -> Path | None:
        """A file that holds this content now, for serving the original (None if no known file has it).
        Never takes a path from a user: only paths the database knows for this hash, re-checked on disk."""
        for path in self.paths_of(sha256):
            if os.path.isfile(path):
                return Path(path)
        return None

    def status_counts(self) -> dict[str, dict[str, int]]:
        """{schema name: {status: count}} over listed current records, plus `missing`: records whose every
        path is missing (not counted under their status)."""
        with self.read() as session:
            rows = session.exec(
                select(RecordRow.schema_name, RecordRow.status, RecordRow.missing, func.count())
                .where(col(RecordRow.is_current))
                .group_by(RecordRow.schema_name, RecordRow.status, RecordRow.missing)
            ).all()
        counts: dict[str, dict[str, int]] = {}
        for schema_name, status, missing, count in rows:
            by_status = counts.setdefault(schema_name, {})
            key = "missing" if missing else status
            by_status[key] = by_status.get(key, 0) + count
        return counts

    def recent_runs(self, limit: int = 5) -> list[RunRow]:
        """The latest runs. A run still marked running whose heartbeat stopped (its process died) shows
        as interrupted."""
        with self.read() as session:
            runs = list(session.exec(select(RunRow).order_by(col(RunRow.id).desc()).limit(limit)).all())
        now = utc_now()
        for run in runs:
            lease = timedelta(seconds=RUN_LEASE_BEATS * float(run.options.get("heartbeat_s", DEFAULT_HEARTBEAT_S)))
            if run.status == "running" and now - _aware(run.heartbeat_at or run.started_at) > lease:
                run.status = "interrupted"
        return runs

    def image_count(self) -> int:
        """Distinct contents that some path holds now."""
        with self.read() as session:
            return session.exec(
                select(func.count(func.distinct(ImagePathRow.sha256))).where(col(ImagePathRow.missing_at).is_(None))
            ).one()


def _made_in_run(session: Session, subject: str, schema_name: str, run_id: int) -> tuple[int, bool] | None:
    """(id, is_current) of the record run `run_id` made of this image and schema, if it made one."""
    row = session.exec(
        select(RecordRow.id, RecordRow.is_current).where(
            RecordRow.subject == subject, RecordRow.schema_name == schema_name, RecordRow.run_id == run_id
        )
    ).first()
    return None if row is None else (row[0], row[1])


def _keeps_over(current: RecordRow, draft: RecordDraft) -> bool:
    """Whether the current record stays current over `draft`: a usable, finished record is never replaced
    by a failed or unfinished attempt at the same content."""
    usable_current = current.status in USABLE_STATUSES and current.complete
    worse_draft = draft.status not in USABLE_STATUSES or not draft.complete
    return usable_current and worse_draft


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _refuse_sqlite_file_that_is_not_ours(url: str) -> None:
    """For read commands: a SQLite file that does not exist, or is not a visextract database (an empty
    file, another program's database), is a StoreError, found through a read-only connection before
    anything (WAL mode, a migration) could change the file."""
    parsed = parse_db_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    missing = StoreError(f"no visextract database at {url}: run `visextract run ... --db URL` first")
    if not path.is_file():
        raise missing
    try:
        with contextlib.closing(sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)) as connection:
            found = connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'record'")
            has_records = found.fetchone() is not None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open database {url}: {exc}") from None
    if not has_records:
        raise missing


def _retry_while_sqlite_is_locked(step: Callable[[], T]) -> T:
    """Run `step`, retrying while SQLite answers "database is locked", for up to SQLITE_BUSY_TIMEOUT_S.

    The busy timeout covers ordinary lock waits, but SQLite skips it where waiting could deadlock, which
    happens when several processes open (and create) the same new file at once, e.g. `visextract status`
    polling a run that is just starting, or Ray workers opening the database together."""
    retrying = Retrying(
        retry=retry_if_exception(_is_sqlite_locked),
        wait=wait_exponential(multiplier=0.01, max=0.5),  # 0.01 s, doubling, at most 0.5 s
        stop=stop_before_delay(SQLITE_BUSY_TIMEOUT_S),
        reraise=True,
    )
    return retrying(step)


def _is_sqlite_locked(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)


def _first_line(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__


def stored_schema(row: RecordSchemaRow) -> RecordSchema:
    """A RecordSchema rebuilt from a stored JSON Schema (for schemas whose code is not at hand)."""
    from visextract.schemas.registry import BUILT_IN_SCHEMAS
    from visextract.schemas.user_schemas import model_from_json_schema, schema_from_model

    built_in = BUILT_IN_SCHEMAS.get(row.name)
    if built_in is not None and built_in.version == row.version:
        return built_in
    model = model_from_json_schema(row.json_schema, row.json_schema.get("title") or row.name)
    return schema_from_model(model, name=row.name, origin=row.origin)
