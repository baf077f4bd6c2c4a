"""Browsing records the way the web app shows them: newest first, keyset-paged, filtered, with facet counts.

    page = gallery_page(store, GalleryFilter(status="needs_review"), limit=48)
    page.items[0].path, page.next        # pass `next` back as `cursor` for the following page
    facets = gallery_facets(store, GalleryFilter(schema="scene"))
    facets.status                        # {"ok": 812, "needs_review": 3, "failed": 1}

Every query is bounded: `LIMIT`, `id < cursor` (never OFFSET), and an index behind each filter.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func
from sqlmodel import col, select

from visextract.store.tables import ImagePathRow, ImageRow, RecordRow, RecordSchemaRow, listed

if TYPE_CHECKING:
    from visextract.store.store import Store

MAX_PAGE = 200
TOP_LABELS = 20
SEARCH_DEPTH = 1000  # a search page ranks at most this many records
SEARCH_MIN_SCORE = 0.2  # below this cosine similarity a record is not a match (MiniLM, normalised vectors)


@dataclass(frozen=True)
class GalleryFilter:
    """What the gallery shows: the records users see (current, some path holds them), narrowed by schema,
    status and top label."""

    schema: str | None = None
    status: str | None = None
    label: str | None = None

    def conditions(self) -> list[Any]:
        conditions: list[Any] = list(listed())
        if self.schema:
            conditions.append(col(RecordRow.schema_name) == self.schema)
        if self.status:
            conditions.append(col(RecordRow.status) == self.status)
        if self.label:
            conditions.append(col(RecordRow.label) == self.label)
        return conditions


@dataclass(frozen=True)
class GalleryItem:
    """What a gallery card shows of one record."""

    record_id: int
    subject: str  # the content's sha256 (also for undecodable files), or "path:<path>" for unreadable ones
    sha256: str | None  # set when the content decoded as an image (then it has a thumbnail)
    path: str
    schema_name: str
    status: str
    label: str | None
    error: str | None
    created_at: datetime

    @property
    def key(self) -> str | None:
        """The sha256 the record page is found by; None for a file that could not even be read."""
        return None if self.subject.startswith("path:") else self.subject


@dataclass(frozen=True)
class GalleryPage:
    items: list[GalleryItem]
    next: str | None  # the cursor of the following page, None on the last one


@dataclass(frozen=True)
class Facets:
    """Counts of current records per value, each counted under the other filters (so a click narrows)."""

    schema: dict[str, int] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    label: list[tuple[str, int]] = field(default_factory=list)  # the most common labels, most first
    total: int = 0


def _item_query() -> Any:
    return select(
        RecordRow.id,
        RecordRow.subject,
        ImageRow.sha256,
        RecordRow.path,
        RecordRow.schema_name,
        RecordRow.status,
        RecordRow.label,
        RecordRow.error,
        RecordRow.created_at,
    ).join(ImageRow, col(ImageRow.id) == col(RecordRow.image_id), isouter=True)


def gallery_page(
    store: Store, filters: GalleryFilter = GalleryFilter(), limit: int = 48, cursor: str | None = None
) -> GalleryPage:
    """One page of current records, newest first. `cursor` is the `next` of the page before."""
    limit = max(1, min(int(limit), MAX_PAGE))
    statement = _item_query().where(*filters.conditions())
    before = parse_cursor(cursor)
    if before is not None:
        statement = statement.where(col(RecordRow.id) < before)
    statement = statement.order_by(col(RecordRow.id).desc()).limit(limit + 1)
    with store.read() as session:
        items = [GalleryItem(*row) for row in session.exec(statement)]
    more = len(items) > limit
    items = items[:limit]
    return GalleryPage(items, str(items[-1].record_id) if more and items else None)


def find_page(
    store: Store,
    filters: GalleryFilter = GalleryFilter(),
    q: str | None = None,
    limit: int = 48,
    cursor: str | None = None,
) -> GalleryPage:
    """A gallery page: newest first, or with `q` the records that match it in meaning, best first."""
    if not q:
        return gallery_page(store, filters, limit, cursor)
    return search_page(store, q, filters, limit, cursor)


def search_page(
    store: Store, q: str, filters: GalleryFilter = GalleryFilter(), limit: int = 48, cursor: str | None = None
) -> GalleryPage:
    """Records matching `q` in meaning, best first, scoring at least SEARCH_MIN_SCORE; `cursor` is a rank."""
    from visextract.store.search import search_records

    limit = max(1, min(int(limit), MAX_PAGE))
    start = parse_cursor(cursor) or 0
    hits = [
        hit
        for hit in search_records(store, q, k=SEARCH_DEPTH, schema_name=filters.schema)
        if hit.score >= SEARCH_MIN_SCORE
    ]
    items = [
        item
        for item in gallery_items(store, [hit.record_id for hit in hits])
        if (not filters.status or item.status == filters.status) and (not filters.label or item.label == filters.label)
    ]
    end = start + limit
    return GalleryPage(items[start:end], str(end) if len(items) > end else None)


def exported(store: Store, record_ids: list[int]) -> list[dict[str, Any]]:
    """These records in the export shape, in the order given."""
    from visextract.store.export import export_dicts

    by_id = {}
    for item in export_dicts(store, with_ids=True, record_ids=record_ids):
        record_id = item.pop("record_id")
        for extra in ("is_current", "missing", "created_at"):
            item.pop(extra, None)
        by_id[record_id] = item
    return [by_id[i] for i in record_ids if i in by_id]


def gallery_items(store: Store, record_ids: list[int]) -> list[GalleryItem]:
    """Gallery items for these records, in the order given (e.g. search ranking)."""
    if not record_ids:
        return []
    with store.read() as session:
        found = {
            row[0]: GalleryItem(*row) for row in session.exec(_item_query().where(col(RecordRow.id).in_(record_ids)))
        }
    return [found[i] for i in record_ids if i in found]


def parse_cursor(cursor: str | None) -> int | None:
    """The record id a page starts below; a cursor that is not one gives the first page."""
    if not cursor:
        return None
    try:
        value = int(cursor)
    except ValueError:
        return None
    return value if value > 0 else None


def gallery_facets(store: Store, filters: GalleryFilter = GalleryFilter()) -> Facets:
    """Counts by schema, status and top label, in one grouped pass over a covering index. On SQLite the
    counts are kept until the database changes (any commit, by any process), so paging costs nothing."""
    version = _data_version(store)
    key = (store.url, filters)
    with _facets_lock:
        cached = _facets_cache.get(key)
    if version is not None and cached is not None and cached[0] == version:
        return cached[1]
    facets = _count_facets(store, filters)
    if version is not None:
        with _facets_lock:
            if len(_facets_cache) > 256:
                _facets_cache.clear()
            _facets_cache[key] = (version, facets)
    return facets


_facets_cache: dict[tuple[str, GalleryFilter], tuple[int, Facets]] = {}
_facets_lock = threading.Lock()
_watchers: dict[str, tuple[sqlite3.Connection, threading.Lock]] = {}


def _data_version(store: Store) -> int | None:
    """SQLite's `PRAGMA data_version` on a read-only connection of its own: it changes whenever any other
    connection commits. None for other databases (nothing is cached there)."""
    database = store.engine.url.database
    if store.dialect != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    with _facets_lock:
        watcher = _watchers.get(store.url)
        if watcher is None:
            uri = f"{Path(database).absolute().as_uri()}?mode=ro"
            watcher = _watchers[store.url] = (sqlite3.connect(uri, uri=True, check_same_thread=False), threading.Lock())
    connection, lock = watcher
    with lock:
        return int(connection.execute("PRAGMA data_version").fetchone()[0])


def _count_facets(store: Store, filters: GalleryFilter) -> Facets:
    statement = (
        select(RecordRow.schema_name, RecordRow.status, RecordRow.label, func.count())
        .where(*listed())
        .group_by(RecordRow.schema_name, RecordRow.status, RecordRow.label)
    )
    schema_counts: Counter[str] = Counter()
    status_counts: Counter[str] = Counter()
    label_counts: Counter[str] = Counter()
    total = 0
    with store.read() as session:
        for schema_name, status, label, count in session.exec(statement):
            in_schema = not filters.schema or schema_name == filters.schema
            in_status = not filters.status or status == filters.status
            in_label = not filters.label or label == filters.label
            if in_status and in_label:
                schema_counts[schema_name] += count
            if in_schema and in_label:
                status_counts[status] += count
            if in_schema and in_status and label:
                label_counts[label] += count
            if in_schema and in_status and in_label:
                total += count
    return Facets(
        schema=dict(sorted(schema_counts.items())),
        status=dict(sorted(status_counts.items())),
        label=label_counts.most_common(TOP_LABELS),
        total=total,
    )


def next_in_queue(
    store: Store, status: str, schema: str | None = None, *, below: int | None = None, above: int | None = None
) -> int | None:
    """The id of the next record of `status` (newest first) below `below`, or the one just above `above`."""
    statement = select(RecordRow.id).where(*GalleryFilter(schema=schema, status=status).conditions())
    if above is not None:
        statement = statement.where(col(RecordRow.id) > above).order_by(col(RecordRow.id))
    else:
        if below is not None:
            statement = statement.where(col(RecordRow.id) < below)
        statement = statement.order_by(col(RecordRow.id).desc())
    with store.read() as session:
        return session.exec(statement.limit(1)).first()


def record_by_id(store: Store, record_id: int) -> RecordRow | None:
    with store.read() as session:
        return session.get(RecordRow, record_id)


def record_history(store: Store, subject: str, schema_name: str) -> list[RecordRow]:
    """Every version of an image's record for one schema, newest first."""
    with store.read() as session:
        return list(
            session.exec(
                select(RecordRow)
                .where(RecordRow.subject == subject, RecordRow.schema_name == schema_name)
                .order_by(col(RecordRow.id).desc())
            )
        )


def hashes_of_paths(store: Store, paths: list[str]) -> dict[str, str]:
    """{path: sha256} for the paths the database knows (to show cited images as thumbnails)."""
    if not paths:
        return {}
    with store.read() as session:
        rows = session.exec(
            select(ImagePathRow.path, ImageRow.sha256)
            .join(ImageRow, col(ImageRow.id) == col(ImagePathRow.image_id))
            .where(col(ImagePathRow.path).in_(paths))
        ).all()
    return dict(rows)


def is_image(store: Store, sha256: str) -> bool:
    """Whether this content is an image in the database (only those are ever served)."""
    with store.read() as session:
        return session.exec(select(ImageRow.id).where(ImageRow.sha256 == sha256)).first() is not None


def count_records(store: Store, filters: GalleryFilter = GalleryFilter()) -> int:
    """How many current records pass `filters` (an index range count)."""
    with store.read() as session:
        return session.exec(select(func.count()).select_from(RecordRow).where(*filters.conditions())).one()


def schema_json(store: Store, name: str, version: str) -> dict[str, Any] | None:
    """The JSON Schema a record was made with (what its review form is generated from)."""
    with store.read() as session:
        row = session.get(RecordSchemaRow, (name, version))
    return row.json_schema if row is not None else None


def refresh_statistics(store: Store) -> None:
    """Give SQLite's query planner table statistics (a quick, sampled ANALYZE), so lookups by subject or path
    use their own indexes rather than a filter index that only looks selective. PostgreSQL keeps its own."""
    if store.dialect != "sqlite":
        return
    with store.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA analysis_limit = 1000")
        connection.exec_driver_sql("ANALYZE")
        connection.commit()
