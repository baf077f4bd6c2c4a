"""The query agent's tools: plain typed functions over a store. Nothing here can write.

Every tool returns JSON text for the model. Paths found in results are collected, so answers can
cite the images they rest on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from visextract.errors import QueryRefusedError, VisextractError
from visextract.store import Store

MAX_ROWS_FOR_MODEL = 50


@dataclass
class QueryTools:
    """The agent's dependencies and what it did this turn (SQL it ran, image paths it saw)."""

    store: Store
    look: Any = None  # async (path, question) -> str; None when no vision model is configured
    sql_queries: list[str] = field(default_factory=list)
    seen_paths: list[str] = field(default_factory=list)

    def new_turn(self) -> None:
        self.seen_paths.clear()

    def _saw(self, paths: list[str]) -> None:
        self.seen_paths.extend(p for p in paths if p and p not in self.seen_paths)

    def list_schemas(self) -> str:
        """The record schemas in the database, each with its typed SQL view and columns, plus record counts."""
        from visextract.store.catalog import schema_catalog

        return json.dumps(schema_catalog(self.store), default=str)

    def run_sql(self, query: str) -> str:
        """Run ONE read-only SQL SELECT (SQLite or PostgreSQL syntax, as the database is). Prefer the typed
        views from list_schemas; always select the `path` column so answers can cite images."""
        from visextract.store.readonly_sql import run_readonly_sql

        self.sql_queries.append(query)
        try:
            result = run_readonly_sql(self.store.url, query, max_rows=MAX_ROWS_FOR_MODEL)
        except QueryRefusedError as exc:
            return json.dumps({"refused": str(exc)})
        except VisextractError as exc:
            return json.dumps({"error": str(exc)})
        self._saw([str(row["path"]) for row in result.rows if row.get("path")])
        return json.dumps({"rows": result.rows, "truncated": result.truncated}, default=str)

    def search_images(self, query: str, k: int = 5) -> str:
        """Semantic search over what was extracted from each image (labels, text, captions, fields)."""
        from visextract.store.search import search_records

        hits = search_records(self.store, query, k=max(1, min(int(k), 20)))
        self._saw([hit.path for hit in hits])
        return json.dumps([hit.model_dump(exclude={"record_id"}) for hit in hits])

    async def look_again(self, image_path: str, question: str) -> str:
        """Look at one stored image again with the vision model, for a question its record does not answer.
        `image_path` must be a path from search or SQL results."""
        if self.look is None:
            return json.dumps({"error": "no vision model is configured"})
        known = self.store.find_records(image_path)
        if not known:
            return json.dumps({"error": f"{image_path!r} is not an image in this database"})
        path = known[0].path
        try:
            answer = await self.look(path, question)
        except VisextractError as exc:
            return json.dumps({"error": str(exc)})
        self._saw([path])
        return json.dumps({"path": path, "answer": answer})


def cite_sources(answer: str, paths: list[str], limit: int = 5) -> str:
    """The answer, with a Sources line naming the images it rests on when it names none itself."""
    if not paths or any(path in answer or re.search(re.escape(path.rsplit("/", 1)[-1]), answer) for path in paths):
        return answer
    shown = paths[:limit]
    more = f" (+{len(paths) - limit} more)" if len(paths) > limit else ""
    return f"{answer.rstrip()}\n\nSources: {', '.join(shown)}{more}"
