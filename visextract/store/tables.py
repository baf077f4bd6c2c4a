"""The SQL tables. The database is a first-class artifact: open it with any SQL tool.

image        one row per distinct image content (sha256)
image_path   every path an image was found at (duplicates share one image); `missing_at` once a run over
             its folder no longer finds it
run          one row per `visextract run`, with its options, counts and a heartbeat (a dead run shows as
             interrupted)
tool_result  one tool's typed results for one image and one model/settings (`cache_key`)
record       versions of an image's record for a schema; exactly one `is_current` per image and schema.
             A current record is listed while some path holds its content (`missing` when all its paths
             are missing); content no longer at any path leaves only history.
record_schema every schema version that records were made with
llm_call     every LLM attempt of the extraction stage (prompts, answers, errors, tokens), like a log
record_embedding  each record's search text and its MiniLM embedding, for semantic search
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel, col

JsonColumn = JSON()  # json, not jsonb, on PostgreSQL: keeps key order as written
NullableJson = JSON(none_as_null=True)  # Python None is SQL NULL (not the JSON text 'null'): `IS NULL` works


def utc_now() -> datetime:
    return datetime.now(UTC)


class ImageRow(SQLModel, table=True):
    __tablename__ = "image"

    id: int | None = Field(default=None, primary_key=True)
    sha256: str = Field(unique=True, index=True, max_length=64)
    size_bytes: int
    width: int
    height: int
    format: str
    exif: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JsonColumn, nullable=False))
    created_at: datetime = Field(default_factory=utc_now)


class ImagePathRow(SQLModel, table=True):
    __tablename__ = "image_path"

    path: str = Field(primary_key=True)
    image_id: int | None = Field(default=None, foreign_key="image.id", index=True)
    sha256: str | None = Field(default=None, index=True, description="content hash, also for undecodable files")
    seen_at: datetime = Field(default_factory=utc_now)
    seen_run_id: int | None = Field(default=None, description="the last run that found a file here")
    missing_at: datetime | None = Field(default=None, description="when a run over its folder no longer found it")


class RunRow(SQLModel, table=True):
    __tablename__ = "run"

    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = Field(default_factory=utc_now)
    finished_at: datetime | None = None
    status: str = "running"  # running | finished | interrupted | failed
    heartbeat_at: datetime | None = Field(default=None, description="a running run renews it; stale: it died")
    schema_name: str
    schema_version: str
    tools: dict[str, str] = Field(default_factory=dict, sa_column=Column(JsonColumn, nullable=False))
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JsonColumn, nullable=False))
    processed: int = 0
    skipped: int = 0
    failed: int = 0
    needs_review: int = 0
    seconds: float = 0.0


class ToolResultRow(SQLModel, table=True):
    __tablename__ = "tool_result"
    __table_args__ = (UniqueConstraint("image_id", "tool", "cache_key"),)

    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="image.id", index=True)
    tool: str
    cache_key: str
    results: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JsonColumn, nullable=False))
    seconds: float | None = None
    run_id: int | None = Field(default=None, foreign_key="run.id")
    created_at: datetime = Field(default_factory=utc_now)


# The gallery's keyset pages (newest first, one filter at a time) and its facet counts (a covering index).
# is_current never leads: other queries (by subject, by path) must not be drawn to these indexes. The
# unfiltered page walks the primary key backwards.
GALLERY_INDEXES = (
    Index("record_page_by_status", "status", "is_current", "missing", "id"),
    Index("record_page_by_schema", "schema_name", "is_current", "missing", "id"),
    Index("record_page_by_label", "label", "is_current", "missing", "id"),
    Index("record_facets", "schema_name", "status", "label", "is_current", "missing"),
)


# For search at a million records: the ids the search index holds, and the few current records whose
# paths are all missing (`search --include-missing`). (Counts and queues by status use record_page_by_status.)
SEARCH_INDEXES = (
    Index(
        "record_searchable",
        "id",
        sqlite_where=text("is_current AND NOT missing AND status != 'failed'"),
        postgresql_where=text("is_current AND NOT missing AND status != 'failed'"),
    ),
    Index(
        "record_missing",
        "id",
        sqlite_where=text("is_current AND missing"),
        postgresql_where=text("is_current AND missing"),
    ),
)


class RecordRow(SQLModel, table=True):
    __tablename__ = "record"
    __table_args__ = (
        Index(
            "record_one_current",
            "subject",
            "schema_name",
            unique=True,
            sqlite_where=text("is_current"),
            postgresql_where=text("is_current"),
        ),
        Index("record_by_status", "schema_name", "is_current", "status"),
        Index("record_by_subject", "subject", "schema_name"),
        *GALLERY_INDEXES,
        *SEARCH_INDEXES,
    )

    id: int | None = Field(default=None, primary_key=True)
    subject: str = Field(description="the image's sha256, or 'path:<path>' when the file could not be read")
    image_id: int | None = Field(default=None, foreign_key="image.id", index=True)
    path: str
    schema_name: str
    schema_version: str
    tools: dict[str, str] = Field(default_factory=dict, sa_column=Column(JsonColumn, nullable=False))
    tools_key: str
    status: str
    error: str | None = Field(default=None, sa_column=Column(Text))
    complete: bool = Field(default=True, description="False when a re-run should try again")
    data: dict[str, Any] | None = Field(default=None, sa_column=Column(NullableJson))
    provenance: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JsonColumn, nullable=False))
    llm: dict[str, Any] | None = Field(default=None, sa_column=Column(NullableJson))
    raw_answer: str | None = Field(default=None, sa_column=Column(Text))
    run_id: int | None = Field(default=None, foreign_key="run.id")
    created_at: datetime = Field(default_factory=utc_now)
    is_current: bool = True
    version: int = Field(default=1, description="1 for the image+schema's first record, +1 for each new one")
    review: dict[str, Any] | None = Field(
        default=None, sa_column=Column(NullableJson), description='{"by", "at", "fields"} when a person reviewed it'
    )
    missing: bool = Field(default=False, description="every path that held this content is gone")
    label: str | None = Field(default=None, description="its tools' top label, for the gallery's label facet")


class RecordSchemaRow(SQLModel, table=True):
    __tablename__ = "record_schema"

    name: str = Field(primary_key=True)
    version: str = Field(primary_key=True)
    json_schema: dict[str, Any] = Field(sa_column=Column(JsonColumn, nullable=False))
    origin: str
    created_at: datetime = Field(default_factory=utc_now)


class LlmCallRow(SQLModel, table=True):
    __tablename__ = "llm_call"

    id: int | None = Field(default=None, primary_key=True)
    record_id: int | None = Field(default=None, foreign_key="record.id", index=True)
    run_id: int | None = Field(default=None, foreign_key="run.id")
    path: str
    attempt: int = Field(description="1 for the first question, 2+ for validation re-asks")
    model: str
    mode: str = Field(description="json_schema | function_calling | json_mode | constrained")
    status: str  # ok | error
    error: str | None = Field(default=None, sa_column=Column(Text))
    request: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(NullableJson))
    response_text: str | None = Field(default=None, sa_column=Column(Text))
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    seconds: float | None = None
    created_at: datetime = Field(default_factory=utc_now)


class RecordEmbeddingRow(SQLModel, table=True):
    __tablename__ = "record_embedding"

    record_id: int = Field(foreign_key="record.id", primary_key=True)
    model: str
    segments: list[str] = Field(default_factory=list, sa_column=Column(JsonColumn, nullable=False))
    vector: bytes = Field(sa_column=Column(LargeBinary, nullable=False), description="float32, unit length")


def listed(include_missing: bool = False) -> tuple[Any, ...]:
    """The conditions for the records users see: current, and (unless `include_missing`) not missing."""
    return (col(RecordRow.is_current),) if include_missing else (col(RecordRow.is_current), ~col(RecordRow.missing))
