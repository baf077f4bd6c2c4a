"""What every LLM backend takes and returns, and the errors the extraction graph distinguishes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from visextract.errors import VisextractError

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatTurn:
    role: Role
    text: str


@dataclass(frozen=True)
class ImageInput:
    """The image as sent: a base64 JPEG (data URL), its pixel size and the requested detail."""

    data_url: str
    width: int
    height: int
    detail: str = "auto"


@dataclass(frozen=True)
class StructuredRequest:
    """Fill `json_schema` (named `schema_name`) from the conversation; the image goes with the first
    user turn."""

    turns: list[ChatTurn]
    image: ImageInput | None
    schema_name: str
    json_schema: dict[str, Any]
    strict_json_schema: dict[str, Any]


@dataclass
class CallLog:
    """One HTTP attempt (or one local generation), successful or not: what `llm_call` stores."""

    model: str
    mode: str
    status: str  # ok | error
    seconds: float
    error: str | None = None
    response_text: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class LlmReply:
    """The answer text (JSON expected) and usage of one completed request."""

    text: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    calls: list[CallLog] = field(default_factory=list)


class LlmUnavailableError(Exception):
    """Transient failures outlasted the retries (server down, timeouts): the image gets a tools-only
    record marked needs_review, and a re-run asks again."""

    def __init__(self, message: str, calls: list[CallLog]) -> None:
        super().__init__(message)
        self.calls = calls


class LlmFatalError(VisextractError):
    """The server refuses every request (bad API key, unknown model): the run stops with one line."""


class VisionLlm(Protocol):
    """A multimodal model that fills a JSON Schema from a conversation and an image."""

    @property
    def model_name(self) -> str: ...

    async def complete(self, request: StructuredRequest) -> LlmReply: ...
