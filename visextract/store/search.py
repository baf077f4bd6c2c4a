"""Semantic search over records: MiniLM embeddings stored at extraction time, found through a vector index.

    hits = search_records(store, "a small rodent in a tree", k=5)
    hits[0].path, hits[0].score, hits[0].snippet

The query is embedded (numpy MiniLM, no torch), the index (`visextract.store.search_index`, caught up
with the database first) proposes candidates, and the database has the last word: only records that are
still listed (current, not missing) count, their path and status come from the database, and they are
ranked by the exact cosine similarity of their stored float32 embeddings. Stale candidates are dropped
from the index; when too few candidates survive, more are asked for.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel
from sqlalchemy import bindparam, text

from visextract.store.search_index import SEARCHABLE, embed_records, search_index
from visextract.store.store import Store

_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "with",
        "and",
        "or",
        "is",
        "are",
        "was",
        "this",
        "that",
        "it",
        "its",
        "some",
        "any",
        "by",
        "from",
        "photo",
        "image",
        "picture",
    ]
)


class SearchHit(BaseModel):
    """One search result: the image, how similar it is, and the part of its record that matched."""

    path: str
    sha256: str | None
    score: float
    snippet: str
    schema_name: str
    record_id: int
    status: str


OVERFETCH = 4  # candidates asked of the index per result wanted (at least MIN_CANDIDATES)
MIN_CANDIDATES = 40
_CURRENT_ROWS = text(
    "SELECT r.id, r.path, i.sha256, r.schema_name, r.status, r.missing, e.segments, e.vector FROM record r "
    "JOIN record_embedding e ON e.record_id = r.id LEFT JOIN image i ON i.id = r.image_id "
    "WHERE r.id IN :ids AND r.is_current"
).bindparams(bindparam("ids", expanding=True))
_MISSING_VECTORS = text(
    "SELECT r.id, e.vector FROM record r JOIN record_embedding e ON e.record_id = r.id "
    "WHERE r.is_current AND r.missing AND r.status != 'failed'"
)


def search_records(
    store: Store,
    query: str,
    k: int = 10,
    schema_name: str | None = None,
    include_missing: bool = False,
    index_dir: Path | None = None,
) -> list[SearchHit]:
    """The `k` listed records most similar to `query`, best first (`include_missing`: also those whose
    every path is missing; `index_dir`: where the index lives, default VISEXTRACT_INDEX_DIR)."""
    from visextract.local_models.embedder import embed_texts

    if not query.strip():
        return []
    index = search_index(store, index_dir)
    snapshot = index.current()
    query_vector = embed_texts([query])[0]
    k = max(1, k)
    count = max(OVERFETCH * k, MIN_CANDIDATES)
    while True:
        keys, _ = snapshot.nearest(query_vector, count)
        candidates = keys.tolist()
        if include_missing:  # the index holds listed records only; missing ones are few and ranked here
            candidates += _nearest_missing(store, query_vector, count)
        rows = _current_rows(store, candidates)
        stale = {key for key in keys.tolist() if key not in rows or rows[key].missing}
        if stale:
            snapshot = index.forget(stale)
        scored = [
            (-float(np.frombuffer(row.vector, np.float32) @ query_vector), row.id, row)
            for row in rows.values()
            if (include_missing or not row.missing) and (schema_name is None or row.schema_name == schema_name)
        ]
        if len(scored) >= k or count >= snapshot.entries:  # enough, or the index has nothing more
            break
        count *= OVERFETCH
    return [_hit(row, -negative, query) for negative, _, row in sorted(scored, key=lambda s: s[:2])[:k]]


def _current_rows(store: Store, record_ids: list[int]) -> dict[int, Any]:
    """{record id: row} for the current ones of these records, with what a hit shows and their vector."""
    if not record_ids:
        return {}
    with store.engine.connect() as connection:
        return {row.id: row for row in connection.execute(_CURRENT_ROWS, {"ids": record_ids})}


def _nearest_missing(store: Store, query_vector: np.ndarray, count: int) -> list[int]:
    """The `count` current records whose every path is missing that are most similar, exactly."""
    with store.engine.connect() as connection:
        rows = connection.execute(_MISSING_VECTORS).all()
    if not rows:
        return []
    vectors = np.frombuffer(b"".join(vector for _, vector in rows), np.float32).reshape(len(rows), -1)
    best = np.argsort(-(vectors @ query_vector))[:count]
    return [rows[i][0] for i in best]


def _hit(row: Any, score: float, query: str) -> SearchHit:
    segments = json.loads(row.segments) if isinstance(row.segments, str) else row.segments  # SQLite: JSON text
    return SearchHit(
        path=row.path,
        sha256=row.sha256,
        score=round(score, 4),
        snippet=best_segment(query, segments),
        schema_name=row.schema_name,
        record_id=row.id,
        status=row.status,
    )


def best_segment(query: str, segments: list[str], width: int = 160) -> str:
    """The segment sharing the most words with the query (the first, most telling one on a tie)."""
    if not segments:
        return ""
    words = _words(query)
    best = max(segments, key=lambda segment: len(words & _words(segment)))
    return best if len(best) <= width else best[: width - 1] + "…"


def _words(text: str) -> set[str]:
    return {w.rstrip("s") for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOPWORDS and len(w) > 1}


def index_missing_records(store: Store) -> int:
    """Embed listed records that have no embedding yet (made by an older visextract); returns how many.
    Searches do this on their own for the records they read; this does every record at once."""
    sql = text(
        "SELECT r.id FROM record r LEFT JOIN record_embedding e ON e.record_id = r.id "
        f"WHERE {SEARCHABLE} AND e.record_id IS NULL"
    )
    with store.engine.connect() as connection:
        missing = [row[0] for row in connection.execute(sql)]
    return len(embed_records(store, missing)[0]) if missing else 0
