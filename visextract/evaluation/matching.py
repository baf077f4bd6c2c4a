"""Finding the record each gold entry is about: by sha256, by absolute path, else by file name when
exactly one image in the database has that name.

A gold path that is relative is tried against the gold file's folder, then the working directory. An
entry that gives both sha256 and path is matched by sha256 first, then by path.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement
from sqlmodel import col, select

from visextract.errors import UsageError
from visextract.evaluation.gold import Gold, GoldEntry
from visextract.store import Store
from visextract.store.tables import ImagePathRow, RecordRow

_CHUNK = 500


@dataclass(frozen=True)
class Extracted:
    """What the current record holds for one image: its path, field values and their provenance."""

    path: str
    data: dict[str, Any]
    provenance: dict[str, Any]


@dataclass
class Matches:
    """Gold entries paired with their records, and the entries that found none (with the reason)."""

    pairs: list[tuple[GoldEntry, Extracted]] = field(default_factory=list)
    unmatched: list[tuple[GoldEntry, str]] = field(default_factory=list)


def match_gold(store: Store, schema_name: str, gold: Gold) -> Matches:
    """Pair each gold entry with the current record of `schema_name` for its image."""
    index = _PathIndex(store, schema_name) if any(entry.path for entry in gold.entries) else None
    subjects: list[str | None] = []
    reasons: dict[int, str] = {}
    for position, entry in enumerate(gold.entries):
        subject, reason = None, "no record of this image"
        if entry.sha256 is not None:
            subject = entry.sha256
        elif index is not None and entry.path is not None:
            subject, reason = index.find(entry.path, gold)
        subjects.append(subject)
        reasons[position] = reason
    records = _records(store, schema_name, {s for s in subjects if s is not None})
    for position, entry in enumerate(gold.entries):  # a sha256 with no record: try the path too
        if subjects[position] is not None and subjects[position] not in records and entry.path and index:
            subject, reasons[position] = index.find(entry.path, gold)
            if subject is not None:
                records |= _records(store, schema_name, {subject})
                subjects[position] = subject

    matches = Matches()
    first_line: dict[str, int] = {}
    for position, entry in enumerate(gold.entries):
        subject = subjects[position]
        if subject is None or subject not in records:
            matches.unmatched.append((entry, reasons[position]))
            continue
        if subject in first_line:
            raise UsageError(
                f"{gold.name}: lines {first_line[subject]} and {entry.line} are the same image "
                f"({records[subject].path}): keep one line per image"
            )
        first_line[subject] = entry.line
        matches.pairs.append((entry, records[subject]))
    return matches


def _current(schema_name: str) -> list[ColumnElement[bool]]:
    return [col(RecordRow.is_current), col(RecordRow.schema_name) == schema_name]


class _PathIndex:
    """Every path of every image with a current record of the schema: by absolute path and by file name."""

    def __init__(self, store: Store, schema_name: str) -> None:
        self.by_path: dict[str, str] = {}
        self.by_name: dict[str, set[str]] = defaultdict(set)
        with store.read() as session:
            record_paths = session.exec(select(RecordRow.path, RecordRow.subject).where(*_current(schema_name)))
            image_paths = session.exec(
                select(ImagePathRow.path, RecordRow.subject)
                .join(RecordRow, col(RecordRow.subject) == col(ImagePathRow.sha256))
                .where(*_current(schema_name))
            )
            for path, subject in [*record_paths, *image_paths]:
                self.by_path[path] = subject
                self.by_name[os.path.basename(path)].add(subject)

    def find(self, path: str, gold: Gold) -> tuple[str | None, str]:
        """(the subject for this gold path, or None and why not)."""
        for candidate in _candidates(path, gold):
            if candidate in self.by_path:
                return self.by_path[candidate], ""
        name = os.path.basename(path)
        subjects = self.by_name.get(name, set())
        if len(subjects) == 1:
            return next(iter(subjects)), ""
        if subjects:
            return None, f"the file name {name!r} is not unique: {len(subjects)} images have it (give the full path)"
        return None, "no record of this image"


def _candidates(path: str, gold: Gold) -> Iterable[str]:
    expanded = os.path.expanduser(path)
    if os.path.isabs(expanded):
        yield os.path.normpath(expanded)
        return
    if gold.folder is not None:
        yield os.path.normpath(gold.folder / expanded)
    yield os.path.abspath(expanded)


def _records(store: Store, schema_name: str, subjects: set[str]) -> dict[str, Extracted]:
    """The current records of these subjects (images' sha256, or `path:...` for unreadable files)."""
    found: dict[str, Extracted] = {}
    wanted = sorted(subjects)
    with store.read() as session:
        for start in range(0, len(wanted), _CHUNK):
            rows = session.exec(
                select(RecordRow.subject, RecordRow.path, RecordRow.data, RecordRow.provenance).where(
                    *_current(schema_name), col(RecordRow.subject).in_(wanted[start : start + _CHUNK])
                )
            )
            for subject, path, data, provenance in rows:
                found[subject] = Extracted(path=path, data=data or {}, provenance=provenance or {})
    return found
