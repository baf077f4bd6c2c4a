"""What the web routes accept: path and query parameters, and JSON bodies, each checked by Pydantic.

A malformed body or parameter is a 422 with `{"errors": [{"field", "message"}]}` (see `app._invalid_request`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from visextract.store.browse import MAX_PAGE, GalleryFilter

_SHA256 = re.compile(r"[0-9a-f]{64}")
Status = Literal["ok", "needs_review", "failed"]


async def image_sha(sha256: str) -> str:
    """A `{sha256}` path parameter: 64 lowercase hex digits, anything else is not found (never a path)."""
    if not _SHA256.fullmatch(sha256):
        raise HTTPException(404, "no such image: the address must end in a sha256")
    return sha256


Sha256 = Annotated[str, Depends(image_sha)]


class RecordQuery(BaseModel):
    """The gallery's and `/api/records`' filters and page."""

    model_config = ConfigDict(extra="forbid")

    schema_name: str | None = Field(None, alias="schema", max_length=200)
    status: Status | None = None
    label: str | None = Field(None, max_length=500)
    q: str | None = Field(None, max_length=1000)
    limit: int = Field(48, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(None, max_length=100)

    @property
    def filters(self) -> GalleryFilter:
        return GalleryFilter(schema=self.schema_name or None, status=self.status, label=self.label or None)

    @property
    def search(self) -> str | None:
        return (self.q or "").strip() or None


async def record_query(
    schema: Annotated[str | None, Query(max_length=200)] = None,
    status: Status | None = None,
    label: Annotated[str | None, Query(max_length=500)] = None,
    q: Annotated[str | None, Query(max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 48,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> RecordQuery:
    """Depends: the record filters from the query string (an empty value means no filter)."""
    return RecordQuery(schema=schema or None, status=status, label=label, q=q, limit=limit, cursor=cursor)


Records = Annotated[RecordQuery, Depends(record_query)]
SchemaName = Annotated[str | None, Query(max_length=200)]


class ReviewBody(BaseModel):
    """`POST /api/records/{sha256}/review`: edited values (`data`), or `accept: true` to accept as is."""

    model_config = ConfigDict(extra="forbid")

    schema_name: str | None = Field(None, alias="schema", max_length=200)
    data: dict[str, Any] | None = None
    accept: bool = False
    by: str | None = Field(None, max_length=200)
    version: int | None = Field(None, ge=1, description="the version the reviewer saw: a later one is a conflict")


class SqlBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=20_000)


class AskBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=4000)
    thread: str | None = Field(None, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
