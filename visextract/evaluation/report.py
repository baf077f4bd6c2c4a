"""The typed results of `evaluate`: per-field scores, image counts, review-flag quality, comparisons.

`EvaluationReport.model_dump(mode="json")` is exactly the JSON that `visextract eval --format json` prints
(DESIGN.md, "Evaluation"). A metric whose denominator is 0 is None (JSON null), never 0 or NaN.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

FieldKind = Literal["string", "number", "boolean", "enum", "list", "object", "other"]

METRICS: dict[str, tuple[str, ...]] = {
    "string": ("cer",),
    "number": ("mae",),
    "list": ("precision", "recall", "f1"),
}
"""The metrics each kind of field gets besides `n` and `accuracy`."""


class Scores(BaseModel):
    """How one field (or one source's share of it) scored.

    `n`: gold values compared. `accuracy`: the share equal after normalising. Lists also get
    `precision`, `recall` and `f1` (micro-averaged over the items of every list); strings `cer`
    (edits / gold characters, summed over images); numbers `mae`. Metrics a field's type does not
    get are left unset and do not appear in the JSON.
    """

    n: int
    accuracy: float | None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    cer: float | None = None
    mae: float | None = None

    @model_serializer(mode="wrap")
    def _only_the_metrics_of_its_type(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        return {key: value for key, value in data.items() if key not in _OPTIONAL or key in self.model_fields_set}


_OPTIONAL = frozenset(name for names in METRICS.values() for name in names)


class FieldScores(Scores):
    """A field's scores, its type, and the same scores per source (`tool:*`, `llm`, `human`, `none`)."""

    type: FieldKind
    by_source: dict[str, Scores] = Field(default_factory=dict)


class ImageCounts(BaseModel):
    """Gold lines, how many found their record, and the path (or sha256) of each that did not."""

    gold: int
    matched: int
    unmatched: list[str]
    unmatched_reasons: list[str] = Field(default_factory=list, exclude=True)
    """Why each unmatched entry found no record (same order as `unmatched`); not in the JSON."""


class ReviewFlagScores(BaseModel):
    """How well `verified: false` flags the wrong fields.

    precision = wrong flagged fields / flagged fields; recall = wrong flagged fields / wrong fields
    (over every scored field of every matched image). None when its denominator is 0.
    """

    precision: float | None
    recall: float | None
    flagged: int = Field(0, exclude=True)
    wrong: int = Field(0, exclude=True)
    flagged_wrong: int = Field(0, exclude=True)


class EvaluationReport(BaseModel):
    """A database's records scored against gold labels.

    report = vx.evaluate("gold.jsonl", db="sqlite:///photos.db", schema="scene")
    report.fields["labels"].f1, report.images.unmatched, report.review_flag.recall
    """

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    schema_name: str = Field(alias="schema")
    images: ImageCounts
    fields: dict[str, FieldScores]
    review_flag: ReviewFlagScores
    db: str = Field("", exclude=True)
    """The database scored (password hidden); not in the JSON."""


class Difference(BaseModel):
    """`against` minus `db` for every number both reports have (None where either is None)."""

    images: dict[str, int]
    fields: dict[str, Scores]
    review_flag: dict[str, float | None]


class EvaluationComparison(BaseModel):
    """Two databases scored on the same gold (`visextract eval --against`): both reports and
    `difference` = against - db (positive accuracy: the `against` database is better)."""

    db: EvaluationReport
    against: EvaluationReport
    difference: Difference


def compare(db: EvaluationReport, against: EvaluationReport) -> EvaluationComparison:
    """Both reports side by side with their difference."""
    fields = {}
    for name, mine in db.fields.items():
        theirs = against.fields[name]
        metrics = {key: _minus(getattr(theirs, key), getattr(mine, key)) for key in METRICS.get(mine.type, ())}
        fields[name] = Scores(n=theirs.n - mine.n, accuracy=_minus(theirs.accuracy, mine.accuracy), **metrics)
    review_flag = {
        key: _minus(getattr(against.review_flag, key), getattr(db.review_flag, key)) for key in ("precision", "recall")
    }
    difference = Difference(
        images={"matched": against.images.matched - db.images.matched}, fields=fields, review_flag=review_flag
    )
    return EvaluationComparison(db=db, against=against, difference=difference)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b
