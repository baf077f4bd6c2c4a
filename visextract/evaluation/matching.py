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

from pydantic_core import from_json
from sqlalchemy import Text, cast, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import col, select

from visextract.errors import UsageError
from visextract.evaluation.gold import Gold, GoldEntry
from visextract.store import Store
from visextract.store.paths import path_subject
from visextract.store.tables import ImagePathRow, RecordRow

_CHUNK = 500
NO_RECORD = "no record of this image"
_PRESENT = (col(ImagePathRow.missing_at).is_(None),)  # paths where a run last found a file
# The records users see (`store.listed()`), written bare: SQLite then looks each subject up in the partial
# index on current records instead of scanning every current record of the schema for each chunk.
_LISTED = text("record.is_current AND NOT record.missing")


@dataclass(frozen=True, slots=True)
class Extracted:
    """What the listed record holds for one image: its path, its field values, and for each scored field
    (in the order asked for) its source (`tool:*`, `llm`, `human` or None) and its cross-check verdict
    (True, False or None) side by side: `flags[2 * i]`, `flags[2 * i + 1]`."""

    path: str
    data: dict[str, Any]
    flags: tuple[Any, ...]


@dataclass
class Matches:
    """Gold entries paired with their records, and the entries that found none (with the reason)."""

    pairs: list[tuple[GoldEntry, Extracted]] = field(default_factory=list)
    unmatched: list[tuple[GoldEntry, str]] = field(default_factory=list)


def match_gold(store: Store, schema_name: str, gold: Gold, fields: list[str]) -> Matches:
    """Pair each gold entry with the listed record of `schema_name` for its image (with the source and
    verdict of `fields`)."""
    entries = gold.entries
    listed = _listed_subjects(store, schema_name)
    candidates = [list(_candidates(entry.path, gold)) if entry.path else [] for entry in entries]
    at_path = _subjects_at(store, [path for paths in candidates for path in paths])
    subjects: list[str | None] = [
        next((s for s in [entry.sha256, *map(at_path.get, paths)] if s in listed), None)
        for entry, paths in zip(entries, candidates, strict=True)
    ]
    reasons = [NO_RECORD] * len(entries)
    by_name = [i for i, entry in enumerate(entries) if subjects[i] is None and entry.path]
    if by_name:  # only for the entries that need it: every file name in the database
        names = _subjects_by_file_name(store)
        for i in by_name:
            name = _file_name(entries[i].path or "")
            found = names.get(name, set())
            if len(found) == 1:
                subjects[i] = next(iter(found))
            elif found:
                reasons[i] = f"the file name {name!r} is not unique: {len(found)} images have it (give the full path)"
    wanted = {subject for subject in subjects if subject in listed}
    records = _records(store, schema_name, wanted, fields, scan=len(wanted) > len(listed) // 4)

    matches = Matches()
    first_line: dict[str, int] = {}
    for entry, subject, reason in zip(entries, subjects, reasons, strict=True):
        if subject is None or subject not in records:
            matches.unmatched.append((entry, reason))
            continue
        if subject in first_line:
            raise UsageError(
                f"{gold.name}: lines {first_line[subject]} and {entry.line} are the same image "
                f"({records[subject].path}): keep one line per image"
            )
        first_line[subject] = entry.line
        matches.pairs.append((entry, records[subject]))
    return matches


def _candidates(path: str, gold: Gold) -> Iterable[str]:
    """The absolute paths a gold path may mean."""
    expanded = os.path.expanduser(path)
    if os.path.isabs(expanded):
        yield os.path.normpath(expanded)
        return
    if gold.folder is not None:
        yield os.path.normpath(os.path.join(gold.folder, expanded))
    yield os.path.abspath(expanded)


def _file_name(path: str) -> str:
    return path.rpartition(os.sep)[2]


def _subject(path: str, sha256: str | None) -> str:
    """A path's record subject: its content's sha256, or `path:<path>` for a file that could not be read."""
    return sha256 or path_subject(path)


def _subjects_at(store: Store, paths: list[str]) -> dict[str, str]:
    """{path: subject} for the paths the database knows."""
    found: dict[str, str] = {}
    wanted = sorted(set(paths))
    with store.read() as session:
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            rows = session.exec(
                select(ImagePathRow.path, ImagePathRow.sha256).where(col(ImagePathRow.path).in_(chunk), *_PRESENT)
            )
            found |= {path: _subject(path, sha256) for path, sha256 in rows}
    return found


def _subjects_by_file_name(store: Store) -> dict[str, set[str]]:
    """{file name: the subjects of every image found under that name}."""
    names: dict[str, set[str]] = defaultdict(set)
    with store.read() as session:
        for path, sha256 in session.exec(select(ImagePathRow.path, ImagePathRow.sha256).where(*_PRESENT)):
            names[_file_name(path)].add(_subject(path, sha256))
    return names


def _listed_subjects(store: Store, schema_name: str) -> set[str]:
    """The subjects of every listed record of the schema."""
    with store.read() as session:
        return set(session.exec(select(RecordRow.subject).where(_LISTED, col(RecordRow.schema_name) == schema_name)))


def _records(
    store: Store, schema_name: str, subjects: set[str], fields: list[str], scan: bool = False
) -> dict[str, Extracted]:
    """The listed records of these subjects (images' sha256, or `path:...` for unreadable files): looked
    up by subject, or with `scan` (when they are most of the schema's records) read in one pass.

    Only the scored fields' source and verdict are read from the provenance, by the database's JSON
    functions: the provenance (evidence lists and all) is most of a record's bytes.
    """
    provenance: Any = col(RecordRow.provenance)
    if store.dialect == "postgresql":  # json is text there: parse it once as jsonb, not once per path
        provenance = cast(provenance, JSONB)
    query = select(
        RecordRow.subject, RecordRow.path, cast(RecordRow.data, Text).label("data"), provenance.label("provenance")
    ).where(_LISTED, col(RecordRow.schema_name) == schema_name)
    wanted = sorted(subjects)
    queries = (
        [query]
        if scan
        else [query.where(col(RecordRow.subject).in_(wanted[i : i + _CHUNK])) for i in range(0, len(wanted), _CHUNK)]
    )
    found: dict[str, Extracted] = {}
    with store.read() as session:
        for inner in queries:
            row = inner.offset(0).subquery()  # OFFSET 0: PostgreSQL keeps the subquery, so the cast runs once
            flags = [
                column
                for name in fields
                for column in (
                    row.c.provenance[(name, "source")].as_string(),
                    row.c.provenance[(name, "verified")].as_boolean(),
                )
            ]
            statement = select(row.c.subject, row.c.path, row.c.data, *flags)
            for subject, path, data, *verdicts in session.execute(statement.execution_options(yield_per=_CHUNK)):
                if subject in subjects:
                    found[subject] = Extracted(
                        path, from_json(data) if data and data != "null" else {}, tuple(verdicts)
                    )
    return found
