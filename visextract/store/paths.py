"""Which records a path shows: a path shows the content it holds now.

`image_path` maps every path to the content (sha256) last found there. From it follow three rules for
current records, applied by `reconcile_records` whenever paths change:

- content that no longer sits at any path (its file was overwritten with other bytes) stops being current:
  its records stay as history;
- a record is `missing` when every path holding its content was not found by a later run over its folder;
- a record's `path` is one that holds its content now (a present one, when there is one).

A file that could not be read has no hash: its record's subject is `path:<path>`, and it holds while the
path still holds unreadable content.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, bindparam, text

_CHUNK = 500

_SUBJECT_FILTER = "record.subject IN :subjects"

_RETIRE = """
UPDATE record SET is_current = false
WHERE is_current AND {subjects}
  AND NOT EXISTS (SELECT 1 FROM image_path p WHERE p.sha256 = record.subject)
  AND NOT (record.subject LIKE 'path:%'
           AND EXISTS (SELECT 1 FROM image_path p WHERE p.path = record.path AND p.sha256 IS NULL))
"""

_MISSING = """
UPDATE record SET missing = CASE
    WHEN record.subject LIKE 'path:%'
    THEN EXISTS (SELECT 1 FROM image_path p WHERE p.path = record.path AND p.missing_at IS NOT NULL)
    ELSE NOT EXISTS (SELECT 1 FROM image_path p WHERE p.sha256 = record.subject AND p.missing_at IS NULL)
  END
WHERE is_current AND {subjects}
"""

_REPOINT = """
UPDATE record SET path = (
    SELECT min(p.path) FROM image_path p
    WHERE p.sha256 = record.subject AND (p.missing_at IS NULL OR record.missing))
WHERE is_current AND {subjects} AND record.subject NOT LIKE 'path:%'
  AND NOT EXISTS (SELECT 1 FROM image_path p
                  WHERE p.sha256 = record.subject AND p.path = record.path AND (p.missing_at IS NULL OR record.missing))
  AND EXISTS (SELECT 1 FROM image_path p WHERE p.sha256 = record.subject)
"""


def reconcile_records(connection: Connection, subjects: Iterable[str] | None = None) -> None:
    """Apply the rules above to the current records of `subjects` (sha256 or `path:<path>`), or of all
    records when `subjects` is None (upgrades). Runs inside the caller's transaction."""
    if subjects is None:
        for statement in (_RETIRE, _MISSING, _REPOINT):
            connection.execute(text(statement.format(subjects="true")))
        return
    todo = sorted({s for s in subjects if s})
    for start in range(0, len(todo), _CHUNK):
        chunk = todo[start : start + _CHUNK]
        for statement in (_RETIRE, _MISSING, _REPOINT):
            query = text(statement.format(subjects=_SUBJECT_FILTER)).bindparams(bindparam("subjects", expanding=True))
            connection.execute(query, {"subjects": chunk})


def path_subject(path: str) -> str:
    """The subject of a record for a file that could not be read (it has no content hash)."""
    return f"path:{path}"
