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

from visextract.errors import VisextractError

if TYPE_CHECKING:
    from visextract.store.store import RecordDraft
    from visextract.store.tables import RecordRow

HUMAN = "human"


@dataclass(frozen=True)
class FieldError:
    """Why one field's value was refused. `field` is dotted for nested values: `labels.0`, `owner.name`."""

    field: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


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
    return [
        FieldError(".".join(str(part) for part in error["loc"]) or "data", error["msg"]) for error in exc.errors()
    ]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
