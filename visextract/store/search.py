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

from visextract.store.search_index import LISTED, embed_records, search_index
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


def search_records(
    store: Store, query: str, k: int = 10, schema_name: str | None = None, index_dir: Path | None = None
) -> list[SearchHit]:
    """The `k` listed records most similar to `query`, best first (`index_dir`: VISEXTRACT_INDEX_DIR)."""
    from visextract.local_models.embedder import embed_texts

    if not query.strip():
        return []
    index = search_index(store, index_dir)
    snapshot = index.current()
    if not len(snapshot):
        return []
    query_vector = embed_texts([query])[0]
    k = max(1, k)
    count = max(OVERFETCH * k, MIN_CANDIDATES)
    while True:
        keys, _ = snapshot.nearest(query_vector, count)
        rows = _listed_rows(store, keys.tolist())
        stale = set(keys.tolist()) - rows.keys()
        if stale:
            snapshot = index.forget(stale)
        hits = [
            _hit(row, float(np.frombuffer(row[-1], np.float32) @ query_vector), query)
            for row in rows.values()
            if schema_name is None or row[3] == schema_name
        ]
        if len(hits) >= k or len(keys) < count:  # enough, or the index has nothing more
            break
        count *= OVERFETCH
    hits.sort(key=lambda hit: (-hit.score, hit.record_id))
    return hits[:k]


def _listed_rows(store: Store, record_ids: list[int]) -> dict[int, tuple[Any, ...]]:
    """{record id: (id, path, sha256, schema, status, segments, vector)} for those still listed."""
    if not record_ids:
        return {}
    sql = text(
        "SELECT r.id, r.path, i.sha256, r.schema_name, r.status, e.segments, e.vector FROM record r "
        "JOIN record_embedding e ON e.record_id = r.id LEFT JOIN image i ON i.id = r.image_id "
        f"WHERE r.id IN :ids AND {LISTED}"
    ).bindparams(bindparam("ids", expanding=True))
    with store.engine.connect() as connection:
        return {row[0]: tuple(row) for row in connection.execute(sql, {"ids": record_ids})}


def _hit(row: tuple[Any, ...], score: float, query: str) -> SearchHit:
    record_id, path, sha, schema, status, segments, _ = row
    if isinstance(segments, str):  # a JSON column read through plain text() comes back as text on SQLite
        segments = json.loads(segments)
    return SearchHit(
        path=path,
        sha256=sha,
        score=round(score, 4),
        snippet=best_segment(query, segments),
        schema_name=schema,
        record_id=record_id,
        status=status,
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
        f"WHERE {LISTED} AND r.status != 'failed' AND e.record_id IS NULL"
    )
    with store.engine.connect() as connection:
        missing = [row[0] for row in connection.execute(sql)]
    return len(embed_records(store, missing)[0]) if missing else 0
