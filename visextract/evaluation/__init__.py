"""Measuring extraction quality against gold labels (`visextract eval`).

    import visextract as vx
    report = vx.evaluate("gold.jsonl", db="sqlite:///photos.db", schema="scene")
    print(report.fields["labels"].f1, report.review_flag.precision, report.images.unmatched)
    both = vx.evaluate("gold.jsonl", db="sqlite:///run-a.db", against="sqlite:///run-b.db")
    print(both.difference.fields["text"].cer)       # negative: the second run reads text better

gold.py parses and checks the gold file, matching.py finds each entry's record, metrics.py scores the
fields, report.py holds the typed results.
"""

from __future__ import annotations

from typing import overload

from visextract.errors import UsageError
from visextract.evaluation.gold import Gold, GoldSource, field_kinds, read_gold
from visextract.evaluation.matching import match_gold
from visextract.evaluation.metrics import FieldTally, ReviewFlagTally
from visextract.evaluation.report import (
    EvaluationComparison,
    EvaluationReport,
    FieldScores,
    ImageCounts,
    Scores,
    compare,
)
from visextract.schemas.base import RecordSchema
from visextract.store import Store

__all__ = ["EvaluationComparison", "EvaluationReport", "FieldScores", "Scores", "evaluate"]


@overload
def evaluate(
    gold: GoldSource, db: str | None = None, schema: str | None = None, against: None = None
) -> EvaluationReport: ...
@overload
def evaluate(gold: GoldSource, db: str | None, schema: str | None, against: str) -> EvaluationComparison: ...
@overload
def evaluate(
    gold: GoldSource, db: str | None = None, schema: str | None = None, *, against: str
) -> EvaluationComparison: ...


def evaluate(
    gold: GoldSource, db: str | None = None, schema: str | None = None, against: str | None = None
) -> EvaluationReport | EvaluationComparison:
    """Score the current records of `db` against gold labels.

    `gold` is a GOLD.jsonl path (one `{"path" or "sha256": ..., "data": {...}}` a line) or those entries
    as dicts. `schema` names the record schema; it may be left out when the database has only one.
    With `against`, the second database is scored on the same gold and an EvaluationComparison
    (both reports and their difference) is returned. Neither database is created or changed.
    """
    from visextract.config import Settings
    from visextract.query import open_store

    store = open_store(db or Settings().db)
    record_schema = schema_in(store, schema)
    other = open_store(against) if against is not None else None
    if other is not None:
        schema_in(other, record_schema.name)  # it has records of this schema; both are scored as in `db`
    entries = read_gold(gold, record_schema)
    report = score(store, record_schema, entries)
    return report if other is None else compare(report, score(other, record_schema, entries))


def schema_in(store: Store, name: str | None) -> RecordSchema:
    """The latest stored version of schema `name`, or of the only schema when `name` is None."""
    from visextract.store.store import stored_schema

    names = store.schema_names()
    if name is None:
        if not names:
            raise UsageError(f"no records in {store.safe_url}: extract some first with `visextract run`")
        if len(names) > 1:
            raise UsageError(f"{store.safe_url} has records of several schemas ({', '.join(sorted(names))}): "
                             "pass --schema NAME")  # fmt: skip
        name = names[0]
    store.check_schema_name(name)
    return stored_schema([row for row in store.schema_versions() if row.name == name][-1])


def score(store: Store, schema: RecordSchema, gold: Gold) -> EvaluationReport:
    """Match the gold entries to the records of `store` and score every field the gold gives."""
    kinds = field_kinds(schema)
    given = list(dict.fromkeys(name for entry in gold.entries for name in entry.data))
    matches = match_gold(store, schema.name, gold, given)
    names = sorted(given, key=schema.field_names.index)
    by_source: dict[str, dict[str, FieldTally]] = {name: {} for name in names}
    review_flag = ReviewFlagTally()
    position = {name: 2 * i for i, name in enumerate(given)}  # of its source in Extracted.flags
    for entry, record in matches.pairs:
        for name, truth in entry.data.items():
            source, verified = record.flags[position[name]], record.flags[position[name] + 1]
            tally = by_source[name].get(source or "none")
            if tally is None:
                tally = by_source[name][source or "none"] = FieldTally(kinds[name])
            correct = tally.add(truth, record.data.get(name))
            review_flag.add(verified is False, correct)
    fields = {}
    for name in names:
        total = FieldTally(kinds[name])
        for tally in by_source[name].values():
            total = total.merge(tally)
        fields[name] = FieldScores(
            **total.scores().model_dump(exclude_unset=True),
            type=total.kind,
            by_source={source: tally.scores() for source, tally in sorted(by_source[name].items())},
        )
    images = ImageCounts(
        gold=len(gold.entries),
        matched=len(matches.pairs),
        unmatched=[entry.key for entry, _ in matches.unmatched],
        unmatched_reasons=[reason for _, reason in matches.unmatched],
    )
    return EvaluationReport(
        schema=schema.name, images=images, fields=fields, review_flag=review_flag.scores(), db=store.safe_url
    )
