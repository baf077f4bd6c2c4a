"""What flows through the extraction graph for one image, and the run-wide context its nodes share."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from visextract.agents.llm.base import CallLog, ChatTurn, ImageInput, VisionLlm
from visextract.agents.llm.gate import LlmGate
from visextract.config import Settings
from visextract.images import ImageFile, LoadedImage
from visextract.local_models.embedder import EMBEDDING_MODEL
from visextract.schemas.base import RecordSchema
from visextract.schemas.record import FieldProvenance
from visextract.schemas.results import ToolResult
from visextract.store import ImageFacts, Store
from visextract.store.store import tools_key
from visextract.tools.base import Tool
from visextract.tools.batcher import Batched, Batcher

log = logging.getLogger("visextract")
Outcome = Literal["ok", "failed", "needs_review", "skipped", "cancelled"]


class ImageState(TypedDict, total=False):
    """One image's journey through load -> plan -> tools -> llm/assemble -> validate -> persist."""

    path: str
    file: ImageFile | None
    image: LoadedImage | None  # pixels; dropped once the tools and the LLM image are done with them
    facts: ImageFacts | None
    tools_to_run: list[str]
    tool_results: dict[str, list[ToolResult]]
    tool_seconds: dict[str, float]
    new_tools: list[str]
    # LLM stage
    turns: list[ChatTurn]
    llm_image: ImageInput | None
    raw_answer: str | None
    attempts: int
    llm_calls: list[dict[str, Any]]
    llm_usage: dict[str, Any] | None
    llm_problem: str | None  # why there is no LLM answer (server down, budget spent)
    reask: bool
    # the record
    data: dict[str, Any] | None
    provenance: dict[str, FieldProvenance]
    status: Outcome
    error: str | None
    complete: bool
    record_id: int | None


@dataclass
class LlmSettings:
    """How the LLM stage runs for this extraction."""

    backend: VisionLlm
    gate: LlmGate
    max_reasks: int = 2
    image_detail: str = "auto"
    image_max_side: int = 1024
    prices: dict[str, tuple[float, float]] | None = None


@dataclass
class ExtractionContext:
    """Run-wide dependencies, passed to every node explicitly (LangGraph runtime context)."""

    store: Store
    schema: RecordSchema
    tools: dict[str, Tool]
    batchers: dict[str, Batcher[LoadedImage, list[ToolResult]]]
    settings: Settings
    run_id: int
    force: bool = False
    discard_reviews: bool = False  # re-runs drop the human-reviewed values instead of keeping them
    writer: ThreadPoolExecutor | None = None  # one thread: database writes stay ordered, off the event loop
    llm: LlmSettings | None = None
    embedder: Batcher[str, bytes] | None = None  # search text -> float32 vector bytes; None: no search index
    stop: threading.Event = field(default_factory=threading.Event)  # set: images not yet at the tools stop
    warm_up_started: bool = False
    # identical files in flight at once: the first copy is processed, the others wait and then skip
    _claims: dict[str, asyncio.Event] = field(default_factory=dict)
    _claim_of_path: dict[str, str] = field(default_factory=dict)

    async def claim(self, path: str, sha256: str) -> None:
        """Wait until no other image with this content is in flight, then hold it for `path`."""
        while (held := self._claims.get(sha256)) is not None:
            await held.wait()
        self._claims[sha256] = asyncio.Event()
        self._claim_of_path[path] = sha256

    def release(self, path: str) -> None:
        """Let waiting copies of `path`'s content go on (they will find it done)."""
        sha256 = self._claim_of_path.pop(path, None)
        if sha256 is not None:
            self._claims.pop(sha256).set()

    def start_warm_up(self) -> None:
        """Load every model in the background, once the first image needs them (a re-run that skips
        everything loads none)."""
        self.warm_up_started = True
        for batcher in self._all_batchers():
            batcher.start_warm_up()

    def index_for_search(self, path: str, record_id: int, segments: list[str]) -> None:
        """Embed a stored record's search text and store the vector, in the background.

        The image does not wait for it: an embedder still loading must not hold images in flight, and
        with them the LLM requests of the images behind. Embeddings queue up and run in batches; the run
        stores the last ones when it closes the embedder, then the writer.
        """
        assert self.embedder is not None and self.writer is not None

        def warn_on_error(done: Future[Any]) -> None:  # search is a convenience: never lose a record over it
            if not done.cancelled() and done.exception() is not None:
                log.warning("could not index %s for search: %s", path, done.exception())

        def save(embedded: Future[Batched[bytes]]) -> None:
            warn_on_error(embedded)
            if not embedded.cancelled() and embedded.exception() is None:
                vector = embedded.result().value
                saved = self.writer.submit(self.store.save_embedding, record_id, EMBEDDING_MODEL, segments, vector)
                saved.add_done_callback(warn_on_error)

        self.embedder.submit("\n".join(segments)).add_done_callback(save)

    def models_ready(self) -> bool:
        """Whether every model has finished loading (or failed to: the images will say why)."""
        return all(batcher.warmed.is_set() for batcher in self._all_batchers())

    def _all_batchers(self) -> list[Batcher[Any, Any]]:
        return [*self.batchers.values(), *([self.embedder] if self.embedder else [])]

    @property
    def tool_keys(self) -> dict[str, str]:
        return {name: tool.cache_key for name, tool in self.tools.items()}

    @property
    def producer_key(self) -> str:
        """What makes a record: the tools with their models and settings, and the LLM model if any.
        A current record with the same key (and schema version) is not redone."""
        key = tools_key(self.tool_keys)
        return f"{key};llm={self.llm.backend.model_name}" if self.llm else key


def call_row(
    call: CallLog, attempt: int, cost_usd: float | None, request: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """An `llm_call` row (without ids) for one logged call."""
    return {
        "attempt": attempt,
        "model": call.model,
        "mode": call.mode,
        "status": call.status,
        "error": call.error,
        "request": request,
        "response_text": call.response_text,
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens,
        "cost_usd": cost_usd,
        "seconds": call.seconds,
    }
