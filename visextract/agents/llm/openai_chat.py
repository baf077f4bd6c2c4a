"""The `openai` backend: any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp, LM Studio...)
through LangChain's ChatOpenAI.

Structured output is asked for the way the server supports it: strict `json_schema` first, then
function calling, then JSON mode. The first mode the server rejects as unsupported is dropped for the
rest of the run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import warnings
from typing import Any

from visextract.agents.llm.base import (
    CallLog,
    LlmFatalError,
    LlmReply,
    LlmUnavailableError,
    StructuredRequest,
)
from visextract.agents.llm.gate import RateLimiter
from visextract.agents.llm.retry import describe_error, is_transient, with_transient_retries

log = logging.getLogger("visextract")
# LangChain warns when a server lacks json_schema; falling back is handled (and logged once) here.
warnings.filterwarnings("ignore", message="This model does not support OpenAI's structured output")

MODES = ("json_schema", "function_calling", "json_mode")
_UNSUPPORTED_HINTS = (
    "response_format",
    "json_schema",
    "json_object",
    "tool",
    "function",
    "structured",
    "guided",
)


class OpenAIVisionLlm:
    """A chat model on an OpenAI-compatible server.

    llm = OpenAIVisionLlm("gpt-4o-mini", base_url=os.environ.get("OPENAI_BASE_URL"))
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_attempts: int = 5,
        initial_wait: float = 1.0,
        max_wait: float = 60.0,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        import openai
        from langchain_openai import ChatOpenAI

        self.model = model
        # our own HTTP client: LangChain's shared default is tied to the first event loop that used it
        self._http = openai.DefaultAsyncHttpxClient(timeout=timeout)
        self.base_url = base_url or "https://api.openai.com/v1"
        self.chat = ChatOpenAI(
            model=model,
            api_key=api_key or "not-needed",  # local servers often need no key, but the client wants one
            base_url=base_url,
            timeout=timeout,
            max_retries=0,  # transient retries are ours (tenacity), so every attempt is seen and logged
            http_async_client=self._http,
        )
        self.max_attempts = max_attempts
        self.initial_wait = initial_wait
        self.max_wait = max_wait
        self.rate_limiter = rate_limiter
        self._mode_index = 0
        self._mode_confirmed = False
        self._probe_lock = asyncio.Lock()
        self._warned_unreachable = False  # one console warning per run when the server does not answer

    @property
    def model_name(self) -> str:
        return self.model

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def mode(self) -> str:
        return MODES[self._mode_index]

    async def complete(self, request: StructuredRequest) -> LlmReply:
        if not self._mode_confirmed:
            async with self._probe_lock:  # until one mode has worked, find it with one request at a time
                if not self._mode_confirmed:
                    reply = await self._complete(request)
                    self._mode_confirmed = True
                    return reply
        return await self._complete(request)

    async def _complete(self, request: StructuredRequest) -> LlmReply:
        calls: list[CallLog] = []
        while True:
            mode_index = self._mode_index
            mode = MODES[mode_index]

            def record_failure(exc: BaseException, seconds: float, mode: str = mode) -> None:
                if is_transient(exc) and not self._warned_unreachable:
                    self._warned_unreachable = True
                    log.warning(
                        "the LLM server %s is not answering (%s); retrying, and images it cannot answer get "
                        "tools-only records marked needs_review",
                        self.base_url,
                        describe_error(exc),
                    )
                calls.append(
                    CallLog(
                        model=self.model,
                        mode=mode,
                        status="error",
                        seconds=round(seconds, 3),
                        error=describe_error(exc),
                    )
                )

            try:
                reply = await with_transient_retries(
                    lambda mode=mode: self._call(mode, request),
                    max_attempts=self.max_attempts,
                    initial_wait=self.initial_wait,
                    max_wait=self.max_wait,
                    on_failure=record_failure,
                )
            except Exception as exc:
                if is_transient(exc):
                    raise LlmUnavailableError(
                        f"LLM unavailable after {self.max_attempts} tries: {describe_error(exc)}", calls
                    ) from None
                if _is_unsupported_mode(exc) and mode_index + 1 < len(MODES):
                    if self._mode_index == mode_index:
                        self._mode_index += 1
                        log.warning("server rejected %s structured output; using %s", mode, self.mode)
                    continue
                raise LlmFatalError(self._fatal_message(exc)) from None
            reply.calls[:0] = calls
            return reply

    async def _call(self, mode: str, request: StructuredRequest) -> LlmReply:
        if self.rate_limiter is not None:
            await self.rate_limiter.wait()
        started = time.perf_counter()
        messages = _messages(request, mode)
        if mode == "json_schema":
            runnable: Any = self.chat.bind(
                response_format={
                    "type": "json_schema",
                    "json_schema": {
                        "name": request.schema_name,
                        "strict": True,
                        "schema": request.strict_json_schema,
                    },
                }
            )
        elif mode == "function_calling":
            tool = {
                "type": "function",
                "function": {
                    "name": request.schema_name,
                    "description": f"Record the {request.schema_name} fields seen in the image.",
                    "parameters": request.json_schema,
                },
            }
            runnable = self.chat.bind_tools([tool], tool_choice=request.schema_name)
        else:
            runnable = self.chat.bind(response_format={"type": "json_object"})
        message = await runnable.ainvoke(messages)
        text = _answer_text(message, mode)
        usage = getattr(message, "usage_metadata", None) or {}
        prompt_tokens = usage.get("input_tokens")
        completion_tokens = usage.get("output_tokens")
        call = CallLog(
            model=self.model,
            mode=mode,
            status="ok",
            seconds=round(time.perf_counter() - started, 3),
            response_text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )
        return LlmReply(
            text=text,
            model=message.response_metadata.get("model_name") or self.model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            calls=[call],
        )

    def _fatal_message(self, exc: BaseException) -> str:
        status = getattr(exc, "status_code", None)
        detail = describe_error(exc)
        hint = {
            401: "check OPENAI_API_KEY",
            403: "the key may not have access to this model",
            404: f"check --llm-model {self.model!r} and OPENAI_BASE_URL",
        }.get(status or 0, f"check --llm-model {self.model!r} and the server")
        return f"LLM server {self.base_url} refused the request ({detail}); {hint}"


def _messages(request: StructuredRequest, mode: str) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    messages: list[Any] = []
    image_sent = False
    for turn in request.turns:
        if turn.role == "system":
            text = turn.text
            if mode == "json_mode":
                text += "\n\nReply with one JSON object matching this JSON Schema:\n" + json.dumps(request.json_schema)
            messages.append(SystemMessage(content=text))
        elif turn.role == "assistant":
            messages.append(AIMessage(content=turn.text))
        elif request.image is not None and not image_sent:
            image_sent = True
            image_block = {
                "type": "image_url",
                "image_url": {"url": request.image.data_url, "detail": request.image.detail},
            }
            messages.append(HumanMessage(content=[{"type": "text", "text": turn.text}, image_block]))
        else:
            messages.append(HumanMessage(content=turn.text))
    return messages


def _answer_text(message: Any, mode: str) -> str:
    """The JSON answer as text: tool-call arguments in function-calling mode, else the content."""
    if mode == "function_calling":
        for call in getattr(message, "tool_calls", None) or []:
            return json.dumps(call.get("args", {}))
        for call in getattr(message, "invalid_tool_calls", None) or []:
            return str(call.get("args") or "")
    content = message.content
    if isinstance(content, list):
        content = "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return str(content or "")


def _is_unsupported_mode(exc: BaseException) -> bool:
    import openai

    if not isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
        return False
    text = str(exc).lower()
    return any(hint in text for hint in _UNSUPPORTED_HINTS)
