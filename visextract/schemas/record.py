"""The record visextract stores per image and schema, as the Python API returns it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Generic, TypeVar

from pydantic import BaseModel, Field, SerializeAsAny

from visextract.schemas.results import Box, ToolResult

DataT = TypeVar("DataT", bound=BaseModel)


class RecordStatus(StrEnum):
    ok = "ok"
    failed = "failed"
    needs_review = "needs_review"


class EvidenceRef(BaseModel):
    """Points at one tool output that supports (or contradicts) a field."""

    tool: str
    index: int = Field(description="position in that tool's result list for the image")
    text: str | None = Field(None, description="the output's label or text, for reading without a join")
    box: Box | None = None


class FieldProvenance(BaseModel):
    """Where a stored field came from.

    `source` is `"llm"` or `"tool:<name>"`; it is None when nothing filled the field (for example
    the tool it needs was not run). `verified` is the cross-check verdict: True (tools agree),
    False (tools contradict it) or None (nothing to check against).
    """

    source: str | None
    evidence: list[EvidenceRef] = Field(default_factory=list)
    verified: bool | None = None
    note: str | None = Field(None, description="why verified is what it is, or why the field is empty")

    def to_json(self) -> dict[str, object]:
        """The stored/exported form: source, evidence and verified always; note only when there is one."""
        out: dict[str, object] = {
            "source": self.source,
            "evidence": [ref.model_dump(mode="json", exclude_none=True) for ref in self.evidence],
            "verified": self.verified,
        }
        if self.note:
            out["note"] = self.note
        return out


class LlmUsage(BaseModel):
    """What the LLM stage cost for one record."""

    model: str
    attempts: int
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None


class Review(BaseModel):
    """Who reviewed a record and when; `fields` were edited, `accepted` were judged right as they were."""

    by: str
    at: str = Field(description="ISO-8601 time")
    fields: list[str]
    accepted: list[str] = Field(default_factory=list)


class Record(BaseModel, Generic[DataT]):
    """One image's current record for one schema. `data` is an instance of the schema's model."""

    id: int
    path: str
    sha256: str | None
    width: int | None
    height: int | None
    status: RecordStatus
    error: str | None
    schema_name: str
    schema_version: str
    data: DataT | None
    provenance: dict[str, FieldProvenance]
    tools: dict[str, list[SerializeAsAny[ToolResult]]]
    llm: LlmUsage | None
    created_at: datetime
    version: int = Field(1, description="1 for the first record of this image and schema, +1 for each new one")
    review: Review | None = None
