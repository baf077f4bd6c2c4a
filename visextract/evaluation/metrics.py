"""Scoring gold values against extracted ones, field by field.

Normalising: strings compare without case and with whitespace collapsed; lists compare as sets of
normalised items; numbers compare equal within 1e-9; everything else compares as normalised JSON.
A gold null against a value is wrong, and a gold value against null too.

    tally = FieldTally("list")
    tally.add(["cat", "sofa"], ["Cat"])      # -> False (wrong); 1 true positive, 1 false negative
    tally.scores()                            # Scores(n=1, accuracy=0.0, precision=1.0, recall=0.5, f1=0.667)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from rapidfuzz.distance import Levenshtein

from visextract.evaluation.report import FieldKind, ReviewFlagScores, Scores


def normalise_text(text: str) -> str:
    """Case-folded, whitespace runs as one space, no leading or trailing space."""
    return " ".join(text.casefold().split())


def normalise(value: Any) -> Any:
    """A value in comparable form: strings normalised (also inside lists and objects), whole floats as ints."""
    if isinstance(value, str):
        return normalise_text(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [normalise(item) for item in value]
    if isinstance(value, dict):
        return {key: normalise(item) for key, item in value.items()}
    return value


def item_set(items: list[Any] | None) -> set[Any]:
    """A list's items as a set of normalised, hashable items (a null list is empty)."""
    return {
        " ".join(item.casefold().split()) if isinstance(item, str) else _hashable(normalise(item))
        for item in items or ()
    }


def _hashable(value: Any) -> Any:
    if isinstance(value, list | dict):
        return ("json", json.dumps(value, sort_keys=True, ensure_ascii=False))
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def ratio(part: float, whole: float) -> float | None:
    """part / whole, or None when whole is 0."""
    return part / whole if whole else None


@dataclass(slots=True)
class FieldTally:
    """Running counts for one field (or one source's share of it); `scores()` turns them into metrics."""

    kind: FieldKind
    n: int = 0
    correct: int = 0
    true_positives: int = 0  # lists: items in both
    false_positives: int = 0  # lists: extracted items not in the gold
    false_negatives: int = 0  # lists: gold items not extracted
    edits: int = 0  # strings: Levenshtein distance, summed
    gold_chars: int = 0  # strings: gold length, summed (over gold strings only)
    absolute_error: float = 0.0  # numbers: summed over pairs of numbers
    number_pairs: int = 0

    def add(self, gold: Any, extracted: Any) -> bool:
        """Count one gold value against the extracted one; True when they are equal after normalising."""
        self.n += 1
        if self.kind == "list":
            correct = self._add_list(gold, extracted)
        elif self.kind == "string":
            correct = self._add_string(gold, extracted)
        elif self.kind == "number":
            correct = self._add_number(gold, extracted)
        else:
            correct = normalise(gold) == normalise(extracted)
        self.correct += correct
        return correct

    def _add_list(self, gold: Any, extracted: Any) -> bool:
        if not (isinstance(gold, list | None) and isinstance(extracted, list | None)):
            return normalise(gold) == normalise(extracted)
        wanted, got = item_set(gold), item_set(extracted)
        self.true_positives += len(wanted & got)
        self.false_positives += len(got - wanted)
        self.false_negatives += len(wanted - got)
        return (gold is None) == (extracted is None) and wanted == got

    def _add_string(self, gold: Any, extracted: Any) -> bool:
        if not isinstance(gold, str):  # a gold null: no characters to measure an error rate on
            return extracted is None
        truth = normalise_text(gold)
        read = normalise_text(extracted) if isinstance(extracted, str) else ""
        self.edits += Levenshtein.distance(truth, read)
        self.gold_chars += len(truth)
        return isinstance(extracted, str) and truth == read

    def _add_number(self, gold: Any, extracted: Any) -> bool:
        if _is_number(gold) and _is_number(extracted):
            self.absolute_error += abs(gold - extracted)
            self.number_pairs += 1
            return math.isclose(gold, extracted, rel_tol=1e-9, abs_tol=1e-9)
        return normalise(gold) == normalise(extracted)

    def merge(self, other: FieldTally) -> FieldTally:
        """Counts of both tallies (e.g. every source's share of a field -> the field)."""
        return FieldTally(
            self.kind,
            *(getattr(self, name) + getattr(other, name) for name in _COUNTS),  # type: ignore[arg-type]
        )

    def scores(self) -> Scores:
        metrics: dict[str, float | None] = {}
        if self.kind == "list":
            precision = ratio(self.true_positives, self.true_positives + self.false_positives)
            recall = ratio(self.true_positives, self.true_positives + self.false_negatives)
            f1 = None
            if precision is not None and recall is not None:
                f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            metrics = {"precision": precision, "recall": recall, "f1": f1}
        elif self.kind == "string":
            metrics = {"cer": ratio(self.edits, self.gold_chars)}
        elif self.kind == "number":
            metrics = {"mae": ratio(self.absolute_error, self.number_pairs)}
        return Scores(n=self.n, accuracy=ratio(self.correct, self.n), **metrics)


_COUNTS = [name for name in FieldTally.__dataclass_fields__ if name != "kind"]


@dataclass
class ReviewFlagTally:
    """Counts `verified: false` flags against the fields that were actually wrong."""

    flagged: int = 0
    wrong: int = 0
    flagged_wrong: int = 0

    def add(self, flagged: bool, correct: bool) -> None:
        self.flagged += flagged
        self.wrong += not correct
        self.flagged_wrong += flagged and not correct

    def scores(self) -> ReviewFlagScores:
        return ReviewFlagScores(
            precision=ratio(self.flagged_wrong, self.flagged),
            recall=ratio(self.flagged_wrong, self.wrong),
            flagged=self.flagged,
            wrong=self.wrong,
            flagged_wrong=self.flagged_wrong,
        )
