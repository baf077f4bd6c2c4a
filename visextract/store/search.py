"""Semantic search over records: MiniLM embeddings stored at extraction time, cosine similarity here.

    hits = search_records(store, "a small rodent in a tree", k=5)
    hits[0].path, hits[0].score, hits[0].snippet

The current records' vectors are loaded once per process and reused until the records change.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import col, select

from visextract.store.store import Store, listed
from visextract.store.tables import ImageRow, RecordEmbeddingRow, RecordRow

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


@dataclass
class _Matrix:
    key: tuple[Any, ...]
    vectors: np.ndarray  # (n, 384) float32
    rows: list[tuple[int, str, str | None, str, str, list[str]]]  # id, path, sha, schema, status, segments


_cache: dict[tuple[str, str | None, bool], _Matrix] = {}
_cache_lock = threading.Lock()


def search_records(
    store: Store, query: str, k: int = 10, schema_name: str | None = None, include_missing: bool = False
) -> list[SearchHit]:
    """The `k` listed records most similar to `query`, best first (`include_missing`: also those whose
    every path is missing)."""
    from visextract.local_models.embedder import embed_texts

    if not query.strip():
        return []
    matrix = _matrix(store, schema_name, include_missing)
    if not matrix.rows:
        return []
    query_vector = embed_texts([query])[0]
    scores = matrix.vectors @ query_vector
    k = min(max(1, k), len(scores))
    best = np.argpartition(-scores, k - 1)[:k]
    top = best[np.argsort(-scores[best])]
    hits = []
    for i in top:
        record_id, path, sha, schema, status, segments = matrix.rows[int(i)]
        hits.append(
            SearchHit(
                path=path,
                sha256=sha,
                score=round(float(scores[i]), 4),
                snippet=best_segment(query, segments),
                schema_name=schema,
                record_id=record_id,
                status=status,
            )
        )
    return hits


def _change_key(store: Store) -> tuple[Any, ...]:
    """Changes whenever a record or an embedding is added (both ids only grow): two index lookups."""
    with store.read() as session:
        return (
            session.exec(select(func.max(RecordRow.id))).one(),
            session.exec(select(func.max(RecordEmbeddingRow.record_id))).one(),
        )


def _matrix(store: Store, schema_name: str | None, include_missing: bool) -> _Matrix:
    """The listed records' vectors, from cache unless records were added or replaced since."""
    key = _change_key(store)
    cache_key = (store.url, schema_name, include_missing)
    with _cache_lock:
        cached = _cache.get(cache_key)
        if cached is not None and cached.key == key:
            return cached
    if index_missing_records(store):  # records made by an older visextract: embed them once
        key = _change_key(store)
    statement = (
        select(
            RecordEmbeddingRow.record_id,
            RecordEmbeddingRow.vector,
            RecordEmbeddingRow.segments,
            RecordRow.path,
            ImageRow.sha256,
            RecordRow.schema_name,
            RecordRow.status,
        )
        .join(RecordRow, col(RecordRow.id) == col(RecordEmbeddingRow.record_id))
        .join(ImageRow, col(ImageRow.id) == col(RecordRow.image_id), isouter=True)
        .where(*listed(include_missing))
    )
    if schema_name:
        statement = statement.where(RecordRow.schema_name == schema_name)
    vectors = []
    rows = []
    with store.read() as session:
        for record_id, vector, segments, path, sha, schema, status in session.exec(statement):
            vectors.append(np.frombuffer(vector, dtype=np.float32))
            rows.append((record_id, path, sha, schema, status, segments))
    matrix = _Matrix(key, np.vstack(vectors) if vectors else np.zeros((0, 384), np.float32), rows)
    with _cache_lock:
        _cache[cache_key] = matrix
    return matrix


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
    """Embed current records that have no embedding yet (made by an older visextract); returns how many."""
    from visextract.local_models.embedder import EMBEDDING_MODEL, embed_texts
    from visextract.schemas.evidence import ToolEvidence
    from visextract.schemas.search_text import search_segments
    from visextract.store.export import export_dicts
    from visextract.tools.registry import TOOL_SPECS

    with store.read() as session:
        missing = set(
            session.exec(
                select(RecordRow.id)
                .join(RecordEmbeddingRow, col(RecordEmbeddingRow.record_id) == col(RecordRow.id), isouter=True)
                .where(
                    col(RecordRow.is_current), col(RecordEmbeddingRow.record_id).is_(None), RecordRow.status != "failed"
                )
            ).all()
        )
    if not missing:
        return 0
    todo = []
    for item in export_dicts(store, with_ids=True):
        if item["record_id"] in missing:
            tools = {
                name: [TOOL_SPECS[name].result_type.model_validate(r) for r in results]
                for name, results in item["tools"].items()
                if name in TOOL_SPECS
            }
            todo.append((item["record_id"], search_segments(item["data"], ToolEvidence(tools))))
    vectors = embed_texts(["\n".join(segments) for _, segments in todo])
    for (record_id, segments), vector in zip(todo, vectors, strict=True):
        store.save_embedding(record_id, EMBEDDING_MODEL, segments, vector.tobytes())
    return len(todo)
