"""Human review: a person's edits or approval become a new version of a record, and re-runs keep them.

    new = store.review(subject, "vehicle", {"color": "red"}, by="ann")     # or accept=True
    new.provenance["color"]   # {"source": "human", "evidence": [], "verified": True}
    new.review                # {"by": "ann", "at": "2026-...", "fields": ["color"], "accepted": ["type", ...]}

Rules:
- edited fields get provenance `{"source": "human", "evidence": [], "verified": true}`; every other field
  the reviewer saw is accepted unchanged: it keeps its source and gets `verified: true`; the status is `ok`;
- `review` is `{"by", "at", "fields": [edited], "accepted": [accepted unchanged]}`;
- a value that does not validate against the schema is refused with the field errors, nothing stored;
- a review that names the version it was based on is refused when the record changed since (a conflict);
- a re-run (`--force`, or after a schema change) keeps every reviewed value (edited or accepted) whose
  field still exists and still validates, with its provenance (`carry_reviewed_fields`, called by the
  store's save path); `discard_reviews` is the only way to drop them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, update
from sqlmodel import Session, col, select

from visextract.errors import UsageError, VisextractError
from visextract.store.tables import RecordEmbeddingRow, RecordRow

if TYPE_CHECKING:
    from visextract.schemas.base import RecordSchema
    from visextract.store.store import RecordDraft, Store

HUMAN = "human"


@dataclass(frozen=True)
class FieldError:
    """Why one field's value was refused. `field` is dotted for nested values: `labels.0`, `owner.name`."""

    field: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class RecordNotFoundError(UsageError):
    """No current record for that path or sha256 (and schema)."""


class ReviewRefusedError(VisextractError):
    """The reviewed values do not validate against the schema; nothing was stored."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        shown = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        super().__init__(f"review refused, nothing stored: {shown}")


class ReviewConflictError(VisextractError):
    """The record changed since the version the reviewer saw; nothing was stored. `current` is the record now."""

    def __init__(self, current: RecordRow, expected: int) -> None:
        self.current = current
        super().__init__(
            f"the record changed since version {expected} (it is now version {current.version}): "
            "look at it again, then review the current version"
        )


def review_in_session(
    store: Store,
    session: Session,
    path_or_sha: str,
    data: dict[str, Any] | None,
    accept: bool,
    by: str | None,
    schema: str | None,
    version: int | None,
    model_schema: RecordSchema | None,
) -> tuple[RecordRow, int]:
    """Write a review inside `session`'s write transaction (see `Store.review`); the caller commits.
    Returns the new version and the id of the record it replaced."""
    if data is None and not accept:
        raise UsageError("nothing to review: give the edited values (data), or accept=True to accept it as it is")
    current = _locked_current(store, session, path_or_sha, schema)
    if version is not None and current.version != version:
        raise ReviewConflictError(current, version)
    if model_schema is None or (model_schema.name, model_schema.version) != (
        current.schema_name,
        current.schema_version,
    ):
        model_schema = store.schema_model(current.schema_name, current.schema_version)
    same = (col(RecordRow.subject) == current.subject, col(RecordRow.schema_name) == current.schema_name)
    last = session.exec(select(func.max(RecordRow.version)).where(*same)).one() or current.version
    new = reviewed_record(current, model_schema.model, data, by=by or default_reviewer(), version=last + 1)
    session.execute(update(RecordRow).where(col(RecordRow.id) == current.id).values(is_current=False))
    session.add(new)
    session.flush()
    assert current.id is not None
    return new, current.id


def _locked_current(store: Store, session: Session, path_or_sha: str, schema: str | None) -> RecordRow:
    """The current record to review, locked against concurrent reviews (PostgreSQL `FOR UPDATE`; SQLite's
    write transaction already holds the database's write lock)."""
    found = store.find_records(path_or_sha)
    if schema is not None:
        found = [row for row in found if row.schema_name == schema]
    if not found:
        where = f" with schema {schema!r}" if schema else ""
        raise RecordNotFoundError(f"no record for {path_or_sha!r}{where} in {store.safe_url}")
    if len({(row.subject, row.schema_name) for row in found}) > 1:
        names = ", ".join(sorted({row.schema_name for row in found}))
        raise UsageError(f"{path_or_sha!r} has records of several schemas ({names}): name the schema to review")
    subject, schema_name = found[0].subject, found[0].schema_name
    for _ in range(3):
        row = session.exec(
            select(RecordRow)
            .where(RecordRow.subject == subject, RecordRow.schema_name == schema_name, col(RecordRow.is_current))
            .with_for_update()
        ).first()
        if row is not None:
            return row  # (a concurrent review that got the lock first made a newer current record: retry)
    raise RecordNotFoundError(f"no current record for {path_or_sha!r} in {store.safe_url}")


def reindex_reviewed(store: Store, previous_id: int, record: RecordRow) -> None:
    """Give a reviewed version the search text its values make: the previous embedding when the text is the
    same (an accept), else a new one. Nothing when the previous version had none (search indexes it later)."""
    from visextract.schemas.evidence import ToolEvidence
    from visextract.schemas.search_text import search_segments
    from visextract.store.export import export_dicts
    from visextract.tools.registry import TOOL_SPECS

    with store.read() as session:
        previous = session.get(RecordEmbeddingRow, previous_id)
    if previous is None or record.id is None:
        return
    (item,) = export_dicts(store, record_ids=[record.id])
    tools = {
        name: [TOOL_SPECS[name].result_type.model_validate(result) for result in results]
        for name, results in item["tools"].items()
        if name in TOOL_SPECS
    }
    segments = search_segments(item["data"], ToolEvidence(tools))
    if segments == previous.segments:
        store.save_embedding(record.id, previous.model, previous.segments, previous.vector)
        return
    from visextract.local_models.embedder import EMBEDDING_MODEL, embed_texts

    (vector,) = embed_texts(["\n".join(segments)])
    store.save_embedding(record.id, EMBEDDING_MODEL, segments, vector.tobytes())


def default_reviewer() -> str:
    """Who reviews when no name is given: the user running visextract."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def reviewed_record(
    current: RecordRow,
    model: type[BaseModel],
    edits: dict[str, Any] | None,
    *,
    by: str,
    version: int,
) -> RecordRow:
    """The new version a review makes of `current` (not yet stored). `edits=None` accepts it as it is.

    Raises ReviewRefusedError with every field error when the result does not validate.
    """
    from visextract.store.tables import RecordRow

    before = current.data or {}
    if edits is None and current.data is None:
        raise ReviewRefusedError([FieldError("data", "this record has no values to accept: edit it instead")])
    edits = dict(edits or {})
    unknown = [FieldError(name, f"not a field of this schema ({', '.join(model.model_fields)})") for name in edits]
    unknown = [error for error in unknown if error.field not in model.model_fields]
    if unknown:
        raise ReviewRefusedError(unknown)
    try:
        data = model.model_validate({**before, **edits}).model_dump(mode="json")
    except ValidationError as exc:
        raise ReviewRefusedError(field_errors(exc)) from None
    edited = [name for name in model.model_fields if name in edits and data.get(name) != before.get(name)]
    accepted = [name for name in model.model_fields if name not in edited]
    note = f"accepted in review by {by}"
    provenance = {}
    for name in model.model_fields:
        if name in edited:
            provenance[name] = {"source": HUMAN, "evidence": [], "verified": True}
        else:
            old = current.provenance.get(name) or {"source": None, "evidence": []}
            provenance[name] = {**old, "verified": True, "note": note}
    kept = current.model_dump(exclude={"id", "created_at", "is_current", "run_id", "version"})
    return RecordRow(
        **kept
        | {
            "status": "ok",
            "error": None,
            "complete": True,
            "data": data,
            "provenance": provenance,
            "review": {"by": by, "at": now_iso(), "fields": edited, "accepted": accepted},
            "version": version,
        }
    )


def carry_reviewed_fields(draft: RecordDraft, previous: RecordRow, model: type[BaseModel]) -> None:
    """Put the human-reviewed values of `previous` into `draft` (a re-run's new version), in place.

    A value is kept when its field still exists in the draft's schema and the record still validates with
    it; its provenance comes along, and so does the review, naming the fields it still covers. When every
    field of the draft is a reviewed one, the draft's needs_review verdict no longer applies: it is ok.
    """
    review = previous.review or {}
    judged = [*review.get("fields", []), *review.get("accepted", [])]
    if not judged or previous.data is None or draft.data is None:
        return
    data = dict(draft.data)
    kept: list[str] = []
    for name in judged:
        if name not in model.model_fields or name not in previous.data:
            continue
        candidate = {**data, name: previous.data[name]}
        try:
            model.model_validate(candidate)
        except ValidationError:
            continue
        data = candidate
        kept.append(name)
    if not kept:
        return
    draft.data = model.model_validate(data).model_dump(mode="json")
    for name in kept:
        if name in previous.provenance:
            draft.provenance[name] = previous.provenance[name]
    draft.review = {
        **review,
        "fields": [name for name in review.get("fields", []) if name in kept],
        "accepted": [name for name in review.get("accepted", []) if name in kept],
    }
    if draft.status == "needs_review" and set(model.model_fields) <= set(kept):
        draft.status, draft.error = "ok", None


def field_errors(exc: ValidationError) -> list[FieldError]:
    """Pydantic's errors as (dotted field, message) pairs."""
    return [FieldError(".".join(str(part) for part in error["loc"]) or "data", error["msg"]) for error in exc.errors()]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
