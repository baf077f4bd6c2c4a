"""The JSON API: the same data as the pages, in the export shape (DESIGN.md, "Web app").

GET  /api/records?schema=&status=&label=&q=&limit=&cursor=   {"items": [record, ...], "next": cursor | null}
GET  /api/records/{sha256}?schema=NAME                        record (404 when unknown)
POST /api/records/{sha256}/review                             the new record (409 conflict, 422 refused)
GET  /api/search?q=&k=                                        [{"path", "sha256", "score", "snippet"}]
POST /api/sql    {"query": "SELECT ..."}                      [{"column": value, ...}] (read-only)
POST /api/ask    {"question": "..."}                          server-sent events; the last is the answer
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse, StreamingResponse

from visextract.errors import QueryRefusedError, UsageError, VisextractError
from visextract.store.browse import exported, find_page, hashes_of_paths
from visextract.store.export import records_for
from visextract.store.review import ReviewConflictError, ReviewRefusedError
from visextract.web.context import Context, WebContext
from visextract.web.params import AskBody, Records, ReviewBody, SchemaName, Sha256, SqlBody

router = APIRouter(prefix="/api")


@router.get("/records")
def list_records(query: Records, ctx: Context) -> dict[str, Any]:
    page = find_page(ctx.store, query.filters, q=query.search, limit=query.limit, cursor=query.cursor)
    return {"items": exported(ctx.store, [item.record_id for item in page.items]), "next": page.next}


@router.get("/records/{sha256}")
def get_record(sha: Sha256, ctx: Context, schema: SchemaName = None) -> dict[str, Any]:
    found = records_for(ctx.store, sha, schema)
    if not found:
        raise HTTPException(404, f"no record for {sha}" + (f" with schema {schema!r}" if schema else ""))
    return found[0]


@router.post("/records/{sha256}/review", response_model=None)
def review(body: ReviewBody, sha: Sha256, ctx: Context) -> Any:
    from visextract.store.review import RecordNotFoundError

    try:
        row = ctx.store.review(
            sha, body.data, accept=body.accept, by=body.by, schema=body.schema_name, version=body.version
        )
    except RecordNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except ReviewRefusedError as exc:
        return JSONResponse({"errors": [error.to_json() for error in exc.errors]}, 422)
    except ReviewConflictError as exc:
        return JSONResponse(_current(ctx, exc.current.subject, exc.current.schema_name), 409)
    except UsageError as exc:
        return JSONResponse({"errors": [{"field": "body", "message": str(exc)}]}, 422)
    return _current(ctx, row.subject, row.schema_name)


def _current(ctx: WebContext, subject: str, schema: str) -> dict[str, Any]:
    return records_for(ctx.store, subject, schema)[0]


@router.get("/search")
def search(
    ctx: Context,
    q: Annotated[str, Query(min_length=1, max_length=1000)],
    k: Annotated[int, Query(ge=1, le=200)] = 10,
) -> list[dict[str, Any]]:
    from visextract.store.search import search_records

    return [
        {"path": hit.path, "sha256": hit.sha256, "score": hit.score, "snippet": hit.snippet}
        for hit in search_records(ctx.store, q, k=k)
    ]


@router.post("/sql", response_model=None)
def sql(body: SqlBody, ctx: Context) -> Any:
    from visextract.query import sql as run_sql

    try:
        result = run_sql(body.query, db=ctx.store.url)
    except QueryRefusedError as exc:
        return JSONResponse({"errors": [{"field": "query", "message": str(exc)}]}, 422)
    return JSONResponse(json.loads(json.dumps(result.rows, default=str)))


@router.post("/ask")
async def ask(body: AskBody, ctx: Context) -> StreamingResponse:
    from visextract.query import llm_configured, no_llm_message

    if not llm_configured():
        raise HTTPException(503, no_llm_message("the chat"))
    return StreamingResponse(
        _ask_events(ctx, body),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _ask_events(ctx: WebContext, body: AskBody) -> AsyncIterator[str]:
    """The agent's events as server-sent events; the last (`answer`) also maps cited paths to thumbnails."""
    from visextract.query import Answer, ChatSession

    try:
        async with ChatSession(ctx.store.url, thread_id=body.thread) as chat:
            async for event in chat.stream(body.question):
                data = event.model_dump(mode="json")
                if isinstance(event, Answer):
                    data["images"] = _cited_images(ctx, event.paths)
                yield _sse(event.event, data)
    except VisextractError as exc:
        yield _sse("error", {"message": str(exc)})


def _cited_images(ctx: WebContext, paths: list[str]) -> list[dict[str, str]]:
    hashes = hashes_of_paths(ctx.store, paths)
    return [{"path": path, "sha256": hashes[path]} for path in paths if path in hashes]


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"
