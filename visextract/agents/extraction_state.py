"""What flows through the extraction graph for one image, and the run-wide context its nodes share."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from visextract.config import Settings
from visextract.images import ImageFile, LoadedImage
from visextract.schemas.base import RecordSchema
from visextract.schemas.record import FieldProvenance
from visextract.schemas.results import ToolResult
from visextract.store import Store
from visextract.tools.base import Tool
from visextract.tools.batcher import ToolBatcher

Outcome = Literal["ok", "failed", "needs_review", "skipped"]


class ImageState(TypedDict, total=False):
    """One image's journey: load -> plan -> tools -> extract -> validate -> persist."""

    path: str
    file: ImageFile | None
    image: LoadedImage | None
    tools_to_run: list[str]
    tool_results: dict[str, list[ToolResult]]
    tool_seconds: dict[str, float]
    new_tools: list[str]
    data: dict[str, Any] | None
    provenance: dict[str, FieldProvenance]
    status: Outcome
    error: str | None
    complete: bool
    record_id: int | None


@dataclass
class ExtractionContext:
    """Run-wide dependencies, passed to every node explicitly (LangGraph runtime context)."""

    store: Store
    schema: RecordSchema
    tools: dict[str, Tool]
    batchers: dict[str, ToolBatcher]
    settings: Settings
    run_id: int
    force: bool = False
    writer: ThreadPoolExecutor | None = (
        None  # one thread: database writes stay ordered and off the event loop
    )

    @property
    def tool_keys(self) -> dict[str, str]:
        return {name: tool.cache_key for name, tool in self.tools.items()}
