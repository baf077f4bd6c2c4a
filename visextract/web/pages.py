"""The HTML pages: gallery `/`, record `/record/{sha256}`, review queue `/review`, chat `/chat`.

Every page carries `<meta name="csrf-token">`; templates escape everything (autoescape, no `|safe` on data).
"""

from __future__ import annotations

import getpass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from visextract.store import browse
from visextract.store.export import records_for
from visextract.web.context import Context, WebContext
from visextract.web.forms import form_fields
from visextract.web.overlays import evidence_ids, overlays
from visextract.web.params import RecordQuery, Records, SchemaName, Sha256

router = APIRouter()


def render(request: Request, ctx: WebContext, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """A page with what every page needs: the CSRF token, the review count, the database's name."""
    values = (
        {"query": None, "schemas": [], "next_url": None}
        | values
        | {
            "csrf_token": request.app.state.security.csrf_token,
            "review_count": browse.count_records(ctx.store, browse.GalleryFilter(status="needs_review")),
            "database": ctx.store.safe_url,
            "reviewer": getpass.getuser(),
        }
    )
    return ctx.templates.TemplateResponse(request, name, values, status_code=status_code)


@router.get("/", response_class=HTMLResponse)
def gallery(request: Request, query: Records, ctx: Context) -> HTMLResponse:
    page = browse.find_page(ctx.store, query.filters, q=query.search, limit=query.limit, cursor=query.cursor)
    facets = browse.gallery_facets(ctx.store, query.filters)
    link = gallery_link(query)
    return render(request, ctx, "gallery.html", nav="gallery", page=page, facets=facets, query=query, link=link)


def gallery_link(query: RecordQuery) -> Any:
    """`link(status="ok")`: the gallery's address with one filter changed (and back to the first page)."""

    def link(**changes: Any) -> str:
        params = {"schema": query.schema_name, "status": query.status, "label": query.label, "q": query.search}
        params |= {"cursor": None} | changes
        if query.limit != RecordQuery().limit:
            params["limit"] = query.limit
        return "/?" + urlencode({k: v for k, v in params.items() if v}) if any(params.values()) else "/"

    return link


@router.get("/record/{sha256}", response_class=HTMLResponse)
def record(request: Request, sha: Sha256, ctx: Context, schema: SchemaName = None) -> HTMLResponse:
    records = records_for(ctx.store, sha)
    chosen = next((r for r in records if r["schema"] == schema), None) if schema else next(iter(records), None)
    if chosen is None:
        problem = f"no record for {sha}"
        if schema and records:
            problem += f" with schema {schema!r} (it has: {', '.join(r['schema'] for r in records)})"
        return render(request, ctx, "problem.html", 404, nav="", heading="Not found", problems=[problem])
    return render(
        request,
        ctx,
        "record.html",
        nav="gallery",
        **record_view(ctx, sha, chosen),
        schemas=[r["schema"] for r in records],
    )


@router.get("/review", response_class=HTMLResponse)
def review_queue(
    request: Request,
    ctx: Context,
    schema: SchemaName = None,
    below: Annotated[int | None, Query(ge=1)] = None,
    above: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    record_id = browse.next_in_queue(ctx.store, "needs_review", schema or None, below=below, above=above)
    row = browse.record_by_id(ctx.store, record_id) if record_id is not None else None
    found = records_for(ctx.store, row.subject, row.schema_name) if row is not None else []
    if row is None or not found:
        return render(request, ctx, "review.html", nav="review", record=None, schema=schema)
    newer = browse.next_in_queue(ctx.store, "needs_review", schema or None, above=row.id)
    older = browse.next_in_queue(ctx.store, "needs_review", schema or None, below=row.id)
    return render(
        request,
        ctx,
        "review.html",
        nav="review",
        **record_view(ctx, row.subject, found[0]),
        schema=schema,
        queue={"id": row.id, "newer": newer, "older": older},
    )


@router.get("/chat", response_class=HTMLResponse)
def chat(request: Request, ctx: Context) -> HTMLResponse:
    from visextract.query import llm_configured, no_llm_message

    return render(request, ctx, "chat.html", nav="chat", llm=llm_configured(), no_llm=no_llm_message("the chat agent"))


def record_view(ctx: WebContext, sha: str, record: dict[str, Any]) -> dict[str, Any]:
    """What the record template shows: the record, its boxes, its form, its history, whether its file is there."""
    history = browse.record_history(ctx.store, sha, record["schema"])
    schema_json = browse.schema_json(ctx.store, record["schema"], record["schema_version"])
    return {
        "sha": sha,
        "record": record,
        "overlays": overlays(record["tools"]),
        "field_boxes": {name: evidence_ids(p) for name, p in (record["provenance"] or {}).items()},
        "form": form_fields(schema_json or {}, record["data"]),
        "history": history,
        "file_present": record["sha256"] is not None and ctx.store.image_source(sha) is not None,
    }
