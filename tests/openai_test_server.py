"""A real, scriptable OpenAI-compatible HTTP server for tests (standard library only).

The server listens on ``127.0.0.1`` on a free port, serves every request in its
own thread (``http.server.ThreadingHTTPServer``) and speaks enough of the OpenAI
wire protocol for the official ``openai`` SDK and ``langchain_openai.ChatOpenAI``
to talk to it unmodified:

* ``POST /v1/chat/completions`` - JSON or SSE streaming (``"stream": true``)
* ``POST /v1/responses``        - Responses API, JSON or SSE streaming
* ``GET  /v1/models`` and ``GET /v1/models/{id}``

Anything else gets a 404 in OpenAI's error format.

Basic usage::

    from openai_test_server import OpenAITestServer, json_reply

    with OpenAITestServer() as server:
        server.reply_json({"title": "Invoice", "total": 12.5})   # 1st request
        server.reply_error(429, retry_after=1)                    # 2nd request
        server.reply_slow(5, then=json_reply({"title": "late"}))  # 3rd request

        client = openai.OpenAI(base_url=server.base_url, api_key="test")
        ...
        assert server.request_count == 3
        assert "validation error" in server.requests[2].text

    # or point environment-configured code at it (pytest's monkeypatch):
    #     for k, v in server.env.items(): monkeypatch.setenv(k, v)

Scripted replies are consumed first-in first-out, one per model call
(chat completion or response). When the queue is empty the server asks the
responder installed with :meth:`OpenAITestServer.respond_with`, then falls back
to :attr:`OpenAITestServer.default_reply`, and finally answers HTTP 500
``"no scripted reply"`` so that a test which forgot to script a reply notices.

How a JSON reply (:func:`json_reply` / :meth:`OpenAITestServer.reply_json`) is
delivered depends on the request it answers (``delivery="auto"``):

* the request *forces a function* - chat ``tool_choice={"type": "function",
  "function": {"name": N}}`` (what LangChain's
  ``with_structured_output(method="function_calling")`` sends), Responses
  ``tool_choice={"type": "function", "name": N}``, or ``tool_choice="required"``
  with exactly one function tool - the JSON becomes the arguments of a single
  tool call to ``N`` (``finish_reason`` ``"stop"``, like OpenAI does for a forced
  function);
* otherwise (``response_format`` ``json_schema`` / ``json_object`` / none, or
  tools with ``tool_choice`` ``"auto"``) the serialized JSON is the assistant
  message content.

``delivery="content"`` or ``delivery="tool_call"`` overrides the choice.

Capabilities can be switched off to emulate servers that only support one
structured-output mode: ``supports_json_schema=False`` (400 for
``response_format.type == "json_schema"`` / Responses ``text.format.type ==
"json_schema"``, with the exact message OpenAI uses for models without
structured outputs), ``supports_json_object=False`` and ``supports_tools=False``
(400 for any request carrying ``tools`` or legacy ``functions``). Such
rejections happen before the script is consulted, so they do **not** consume a
queued reply, but they are recorded in :attr:`OpenAITestServer.requests`.

Every request made to a model endpoint is recorded as a :class:`RecordedRequest`
(a ``dict`` of the parsed JSON body with extra attributes such as ``headers``,
``path``, ``status``, ``text``, ``images`` and ``structured_mode``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = [
    "OpenAITestServer",
    "RecordedRequest",
    "Reply",
    "ReplyLike",
    "ToolCall",
    "error_reply",
    "json_reply",
    "raw_reply",
    "refusal_reply",
    "slow_reply",
    "text_reply",
    "tool_calls_reply",
]

ReplyKind = Literal["json", "text", "tool_calls", "refusal", "error", "raw", "fallback"]
Delivery = Literal["auto", "content", "tool_call"]


# --------------------------------------------------------------------------- #
# Reply specifications
# --------------------------------------------------------------------------- #


@dataclass
class ToolCall:
    """One scripted tool call.

    ``arguments`` may be any JSON-serialisable value (it is ``json.dumps``-ed) or
    a ``str`` that is sent verbatim - use a string to send malformed arguments.
    ``id`` defaults to a deterministic ``call_<request#>_<i>``.
    """

    name: str
    arguments: Any = field(default_factory=dict)
    id: str | None = None

    @property
    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, ensure_ascii=False)


ToolCallLike = ToolCall | tuple | Mapping[str, Any]


def _coerce_tool_call(tc: ToolCallLike) -> ToolCall:
    if isinstance(tc, ToolCall):
        return tc
    if isinstance(tc, tuple):
        if len(tc) == 2:
            return ToolCall(name=tc[0], arguments=tc[1])
        if len(tc) == 3:
            return ToolCall(name=tc[0], arguments=tc[1], id=tc[2])
        raise ValueError(f"tool call tuple must be (name, args) or (name, args, id): {tc!r}")
    if isinstance(tc, Mapping):
        return ToolCall(name=tc["name"], arguments=tc.get("arguments", tc.get("args", {})), id=tc.get("id"))
    raise TypeError(f"cannot interpret {tc!r} as a tool call")


@dataclass
class Reply:
    """What the server answers to one model call.

    Build instances with the module-level helpers (:func:`json_reply`,
    :func:`text_reply`, :func:`tool_calls_reply`, :func:`refusal_reply`,
    :func:`error_reply`, :func:`raw_reply`, :func:`slow_reply`) rather than
    directly.

    Attributes:
        kind: ``json`` | ``text`` | ``tool_calls`` | ``refusal`` | ``error`` |
            ``raw`` | ``fallback`` (``fallback`` = "answer as if the queue were
            empty", used by :func:`slow_reply` without ``then``).
        value: JSON value (``json``), text (``text``/``refusal``), message
            (``error``) or body (``raw``: dict/list are JSON-encoded, str/bytes
            sent verbatim).
        tool_calls: tool calls for ``kind == "tool_calls"``.
        content: optional assistant text sent alongside ``tool_calls``.
        delivery: for ``json`` - ``auto``/``content``/``tool_call`` (see module doc).
        status: HTTP status (errors / raw).
        error_type, error_code, error_param: fields of the OpenAI error object.
        retry_after: value of the ``Retry-After`` header (seconds), if any.
        retry_after_ms: value of the ``retry-after-ms`` header, if any.
        headers: extra response headers.
        delay: seconds to sleep before answering (added to ``fixed_latency``).
        finish_reason: override (``"length"`` makes the SDK's ``parse()`` raise
            ``LengthFinishReasonError``; in the Responses API it becomes
            ``status="incomplete"``).
        prompt_tokens, completion_tokens: usage overrides for this reply.
    """

    kind: ReplyKind
    value: Any = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    content: str | None = None
    delivery: Delivery = "auto"
    status: int = 200
    error_type: str | None = None
    error_code: str | None = None
    error_param: str | None = None
    retry_after: float | None = None
    retry_after_ms: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def with_delay(self, seconds: float) -> Reply:
        """Copy of this reply that is answered ``seconds`` later."""
        return dataclasses.replace(self, delay=self.delay + seconds)


ReplyLike = Reply | Mapping[str, Any] | list | str
"""A :class:`Reply`, or a shortcut: ``dict``/``list`` -> :func:`json_reply`,
``str`` -> :func:`text_reply`."""

Responder = Callable[["RecordedRequest"], ReplyLike | None]


def json_reply(
    value: Any,
    *,
    delivery: Delivery = "auto",
    delay: float = 0.0,
    finish_reason: str | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
) -> Reply:
    """Assistant answer whose payload is ``json.dumps(value)``.

    Delivered as message content, or as the arguments of a tool call when the
    request forces a function (see module docstring / ``delivery``).
    """
    return Reply(
        "json",
        value=value,
        delivery=delivery,
        delay=delay,
        finish_reason=finish_reason,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


def text_reply(
    text: str,
    *,
    delay: float = 0.0,
    finish_reason: str | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
) -> Reply:
    """Assistant message with ``text`` as content, always (even if a function is forced)."""
    return Reply(
        "text",
        value=text,
        delay=delay,
        finish_reason=finish_reason,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


def tool_calls_reply(
    calls: Iterable[ToolCallLike],
    *,
    content: str | None = None,
    delay: float = 0.0,
    finish_reason: str | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
) -> Reply:
    """Assistant message with OpenAI-format ``tool_calls`` (finish_reason ``tool_calls``).

    ``calls`` items: ``(name, args)``, ``(name, args, id)``, ``{"name", "arguments"|"args", "id"?}``
    or :class:`ToolCall`. ``args`` that are ``str`` are sent verbatim.
    """
    return Reply(
        "tool_calls",
        tool_calls=[_coerce_tool_call(c) for c in calls],
        content=content,
        delay=delay,
        finish_reason=finish_reason,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


def refusal_reply(text: str = "I'm sorry, I can't help with that.", *, delay: float = 0.0) -> Reply:
    """Structured-outputs refusal: ``message.refusal`` set and ``content`` null
    (Responses API: a ``refusal`` content part)."""
    return Reply("refusal", value=text, delay=delay)


_DEFAULT_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Bad request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to access this resource.", "permission_error", None),
    404: (
        "The model does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    408: ("Request timed out.", "timeout_error", None),
    409: ("Conflict.", "invalid_request_error", None),
    413: ("Request too large.", "invalid_request_error", None),
    422: ("Unprocessable entity.", "invalid_request_error", None),
    429: ("Rate limit reached for requests. Please try again later.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}


def error_reply(
    status: int,
    message: str | None = None,
    *,
    retry_after: float | None = None,
    retry_after_ms: float | None = None,
    type: str | None = None,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
    delay: float = 0.0,
) -> Reply:
    """HTTP error with body ``{"error": {"message", "type", "param", "code"}}``.

    Sensible OpenAI-like defaults per status (401 -> ``invalid_api_key``, 429 ->
    type ``requests``/code ``rate_limit_exceeded``, 5xx -> ``server_error``).
    ``retry_after`` adds a ``Retry-After`` header (integers rendered without a
    decimal point), ``retry_after_ms`` a ``retry-after-ms`` header.
    Use e.g. ``error_reply(400, "...", code="context_length_exceeded")`` for
    context-overflow errors.
    """
    d_msg, d_type, d_code = _DEFAULT_ERRORS.get(
        status, (f"HTTP {status}", "server_error" if status >= 500 else "invalid_request_error", None)
    )
    return Reply(
        "error",
        value=message if message is not None else d_msg,
        status=status,
        error_type=type if type is not None else d_type,
        error_code=code if code is not None else d_code,
        error_param=param,
        retry_after=retry_after,
        retry_after_ms=retry_after_ms,
        headers=dict(headers or {}),
        delay=delay,
    )


def raw_reply(
    body: Any,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    delay: float = 0.0,
) -> Reply:
    """Send ``body`` as-is (dict/list JSON-encoded; str/bytes verbatim). For
    malformed-response tests. ``headers`` may override ``Content-Type``."""
    return Reply("raw", value=body, status=status, headers=dict(headers or {}), delay=delay)


def slow_reply(seconds: float, then: ReplyLike | None = None) -> Reply:
    """Sleep ``seconds`` before answering with ``then``.

    ``then=None`` means: after sleeping, answer as if the queue were empty
    (responder -> ``default_reply`` -> 500 "no scripted reply"). If the client
    times out first, the reply is still consumed (by the timed-out attempt).
    """
    if then is None:
        return Reply("fallback", delay=seconds)
    return coerce_reply(then).with_delay(seconds)


def coerce_reply(spec: ReplyLike) -> Reply:
    """Turn a reply shortcut into a :class:`Reply` (dict/list -> JSON, str -> text)."""
    if isinstance(spec, Reply):
        return spec
    if isinstance(spec, str):
        return text_reply(spec)
    if isinstance(spec, (Mapping, list, tuple)):
        return json_reply(spec if not isinstance(spec, tuple) else list(spec))
    raise TypeError(f"cannot interpret {spec!r} as a reply (use Reply/json_reply/text_reply/...)")


# --------------------------------------------------------------------------- #
# Recorded requests
# --------------------------------------------------------------------------- #


class RecordedRequest(dict):
    """The parsed JSON body of one request (it *is* that dict) plus metadata.

    Attributes:
        index: 0-based position among model calls (``None`` for other endpoints).
        method, path: e.g. ``"POST"``, ``"/v1/chat/completions"``.
        endpoint: ``"chat.completions"`` | ``"responses"`` | ``"models"`` | ``"unknown"``.
        headers: request headers, keys lower-cased (``req.headers["authorization"]``).
        raw_body: the bytes received.
        received_at: ``time.monotonic()`` at arrival.
        status: HTTP status answered (``None`` until decided).
        reply: the :class:`Reply` used (``None`` for validation errors / non-model endpoints).
    """

    index: int | None
    method: str
    path: str
    endpoint: str
    headers: dict[str, str]
    raw_body: bytes
    received_at: float
    status: int | None
    reply: Reply | None

    def __init__(
        self,
        body: Mapping[str, Any],
        *,
        method: str,
        path: str,
        endpoint: str,
        headers: Mapping[str, str],
        raw_body: bytes,
        index: int | None = None,
    ) -> None:
        super().__init__(body)
        self.index = index
        self.method = method
        self.path = path
        self.endpoint = endpoint
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.raw_body = raw_body
        self.received_at = time.monotonic()
        self.status = None
        self.reply = None

    # -- convenience views ------------------------------------------------- #

    @property
    def body(self) -> dict[str, Any]:
        """A plain ``dict`` copy of the JSON body."""
        return dict(self)

    @property
    def model(self) -> str | None:
        return self.get("model")

    @property
    def stream(self) -> bool:
        return bool(self.get("stream"))

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Chat ``messages``; for the Responses API the ``input`` items (a string
        input becomes one user message; ``instructions`` becomes a system message)."""
        if self.endpoint == "responses":
            items: list[dict[str, Any]] = []
            if self.get("instructions"):
                items.append({"role": "system", "content": self["instructions"]})
            inp = self.get("input")
            if isinstance(inp, str):
                items.append({"role": "user", "content": inp})
            elif isinstance(inp, list):
                items.extend(i for i in inp if isinstance(i, dict))
            return items
        msgs = self.get("messages")
        return [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []

    @property
    def text(self) -> str:
        """All text in the conversation (message contents, text parts, tool-call
        arguments, tool outputs) joined by newlines - handy for ``in`` assertions."""
        out: list[str] = []
        for m in self.messages:
            content = m.get("content")
            if isinstance(content, str):
                out.append(content)
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        out.append(part["text"])
                    elif isinstance(part, str):
                        out.append(part)
            for tc in m.get("tool_calls") or []:
                fn = tc.get("function") or {}
                if isinstance(fn.get("arguments"), str):
                    out.append(fn["arguments"])
            if m.get("type") == "function_call" and isinstance(m.get("arguments"), str):
                out.append(m["arguments"])
            if m.get("type") == "function_call_output" and isinstance(m.get("output"), str):
                out.append(m["output"])
            if isinstance(m.get("refusal"), str):
                out.append(m["refusal"])
        return "\n".join(out)

    @property
    def images(self) -> list[dict[str, Any]]:
        """Images sent, as ``[{"url": ..., "detail": ...}]`` (chat ``image_url``
        parts and Responses ``input_image`` parts)."""
        found: list[dict[str, Any]] = []
        for m in self.messages:
            content = m.get("content")
            if not isinstance(content, list):
                continue
            for part in content:
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "image_url":
                    iu = part.get("image_url")
                    if isinstance(iu, str):
                        found.append({"url": iu, "detail": None})
                    elif isinstance(iu, dict):
                        found.append({"url": iu.get("url"), "detail": iu.get("detail")})
                elif part.get("type") == "input_image":
                    found.append({"url": part.get("image_url"), "detail": part.get("detail")})
        return found

    @property
    def tools(self) -> list[dict[str, Any]]:
        t = self.get("tools")
        return list(t) if isinstance(t, list) else []

    @property
    def tool_names(self) -> list[str]:
        """Names of the function tools offered (chat or Responses format)."""
        return [n for n in (_tool_name(t) for t in self.tools) if n]

    @property
    def tool_choice(self) -> Any:
        return self.get("tool_choice")

    @property
    def response_format(self) -> dict[str, Any] | None:
        """Chat ``response_format`` as sent; for the Responses API ``text.format``
        (shape ``{"type": "json_schema", "name", "schema", "strict"}``)."""
        if self.endpoint == "responses":
            text = self.get("text")
            fmt = text.get("format") if isinstance(text, dict) else None
            return fmt if isinstance(fmt, dict) else None
        rf = self.get("response_format")
        return rf if isinstance(rf, dict) else None

    @property
    def response_format_type(self) -> str | None:
        """``"json_schema"`` | ``"json_object"`` | ``"text"`` | ``None``."""
        rf = self.response_format
        return rf.get("type") if rf else None

    @property
    def json_schema(self) -> dict[str, Any] | None:
        """The JSON schema the model is asked to follow: ``response_format``'s
        schema, or the forced function's ``parameters``."""
        rf = self.response_format
        if rf and rf.get("type") == "json_schema":
            if isinstance(rf.get("json_schema"), dict):
                return rf["json_schema"].get("schema")
            return rf.get("schema")
        forced = self.forced_function
        if forced:
            for t in self.tools:
                if _tool_name(t) == forced:
                    fn = t.get("function", t)
                    return fn.get("parameters")
        return None

    @property
    def strict(self) -> bool | None:
        """``strict`` of the json_schema response format or of the forced function."""
        rf = self.response_format
        if rf and rf.get("type") == "json_schema":
            inner = rf["json_schema"] if isinstance(rf.get("json_schema"), dict) else rf
            return inner.get("strict")
        forced = self.forced_function
        for t in self.tools:
            if forced and _tool_name(t) == forced:
                return t.get("function", t).get("strict")
        return None

    @property
    def forced_function(self) -> str | None:
        """Name of the function the request forces via ``tool_choice`` (or the only
        function tool when ``tool_choice == "required"``), else ``None``."""
        tc = self.get("tool_choice")
        if isinstance(tc, dict) and tc.get("type") == "function":
            if isinstance(tc.get("function"), dict) and tc["function"].get("name"):
                return tc["function"]["name"]
            if tc.get("name"):
                return tc["name"]
        if tc == "required":
            names = self.tool_names
            if len(names) == 1:
                return names[0]
        return None

    @property
    def structured_mode(self) -> str:
        """How the request asks for structure: ``"json_schema"``, ``"json_object"``,
        ``"function_calling"`` (a forced function), ``"tools"`` (tools, not
        forced) or ``"text"``."""
        rft = self.response_format_type
        if rft in ("json_schema", "json_object"):
            return rft
        if self.forced_function:
            return "function_calling"
        if self.tools:
            return "tools"
        return "text"

    def __repr__(self) -> str:
        body = dict.__repr__(self)[:300]
        return f"RecordedRequest(#{self.index} {self.method} {self.path} -> {self.status}, {body})"


def _tool_name(tool: Any) -> str | None:
    if not isinstance(tool, dict):
        return None
    if isinstance(tool.get("function"), dict):
        return tool["function"].get("name")
    if tool.get("type") == "function":
        return tool.get("name")
    return None


# --------------------------------------------------------------------------- #
# The server
# --------------------------------------------------------------------------- #


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: a burst of >5 simultaneous new
    # connections overflows it and the kernel makes clients retry the SYN ~1 s
    # later, which would show up as phantom latency in concurrency tests.
    request_queue_size = 1024
    owner: OpenAITestServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (timeouts, closed keep-alive connections) are normal
        # in tests; only report real bugs.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, _ClientGone)):
            return
        super().handle_error(request, client_address)


class OpenAITestServer:
    """Scriptable OpenAI-compatible server on ``127.0.0.1:<free port>``.

    Args:
        supports_json_schema: if False, reject ``json_schema`` response formats with 400.
        supports_json_object: if False, reject ``json_object`` response formats with 400.
        supports_tools: if False, reject requests carrying ``tools``/``functions`` with 400.
        prompt_tokens: fixed ``usage.prompt_tokens`` (int), or a callable
            ``(RecordedRequest) -> int``; default ``len(compact JSON of messages/input) // 4``.
        fixed_latency: seconds added before every model-call answer (errors included).
        default_reply: answer used whenever queue and responder give nothing.
        models: ids listed by ``GET /v1/models``.
        api_key: if set, model calls without ``Authorization: Bearer <api_key>`` get 401.
        stream_chunk_chars: size of the text pieces sent when streaming.
        host: interface to bind (default ``127.0.0.1``).

    Use as a context manager (or call :meth:`start` / :meth:`stop`).
    """

    def __init__(
        self,
        *,
        supports_json_schema: bool = True,
        supports_json_object: bool = True,
        supports_tools: bool = True,
        prompt_tokens: int | Callable[[RecordedRequest], int] | None = None,
        fixed_latency: float = 0.0,
        default_reply: ReplyLike | None = None,
        models: Sequence[str] = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini"),
        api_key: str | None = None,
        stream_chunk_chars: int = 8,
        host: str = "127.0.0.1",
    ) -> None:
        self.supports_json_schema = supports_json_schema
        self.supports_json_object = supports_json_object
        self.supports_tools = supports_tools
        self.prompt_tokens = prompt_tokens
        self.fixed_latency = fixed_latency
        self.models = list(models)
        self.api_key = api_key
        self.stream_chunk_chars = max(1, stream_chunk_chars)
        self.host = host

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._queue: deque[Reply] = deque()
        self._responder: Responder | None = None
        self._default_reply: Reply | None = coerce_reply(default_reply) if default_reply is not None else None
        self._requests: list[RecordedRequest] = []
        self._all_requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._in_flight = 0
        self._max_in_flight = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------- #

    def start(self) -> OpenAITestServer:
        """Bind a free port and start serving in a daemon thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((self.host, 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="OpenAITestServer", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; in-progress delays are cut short and their replies dropped."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> OpenAITestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------- #

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (no ``/v1``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1`` - pass as ``base_url`` / ``OPENAI_BASE_URL``."""
        return f"{self.url}/v1"

    @property
    def env(self) -> dict[str, str]:
        """``{"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": api_key or "test"}``."""
        return {"OPENAI_BASE_URL": self.base_url, "OPENAI_API_KEY": self.api_key or "test"}

    # -- scripting --------------------------------------------------------- #

    def enqueue(self, *replies: ReplyLike) -> None:
        """Append replies to the FIFO script (shortcuts allowed, see :data:`ReplyLike`)."""
        with self._lock:
            self._queue.extend(coerce_reply(r) for r in replies)

    def reply_json(self, value: Any, **kwargs: Any) -> Reply:
        """Queue :func:`json_reply` ``(value, **kwargs)``; returns the queued Reply."""
        r = json_reply(value, **kwargs)
        self.enqueue(r)
        return r

    def reply_text(self, text: str, **kwargs: Any) -> Reply:
        """Queue :func:`text_reply` ``(text, **kwargs)``."""
        r = text_reply(text, **kwargs)
        self.enqueue(r)
        return r

    def reply_tool_calls(self, calls: Iterable[ToolCallLike], **kwargs: Any) -> Reply:
        """Queue :func:`tool_calls_reply`, e.g. ``[("run_sql", {"query": "..."})]``."""
        r = tool_calls_reply(calls, **kwargs)
        self.enqueue(r)
        return r

    def reply_refusal(self, text: str = "I'm sorry, I can't help with that.", **kwargs: Any) -> Reply:
        """Queue :func:`refusal_reply`."""
        r = refusal_reply(text, **kwargs)
        self.enqueue(r)
        return r

    def reply_error(self, status: int, message: str | None = None, **kwargs: Any) -> Reply:
        """Queue :func:`error_reply`, e.g. ``reply_error(429, retry_after=1)``."""
        r = error_reply(status, message, **kwargs)
        self.enqueue(r)
        return r

    def reply_raw(self, body: Any, **kwargs: Any) -> Reply:
        """Queue :func:`raw_reply`."""
        r = raw_reply(body, **kwargs)
        self.enqueue(r)
        return r

    def reply_slow(self, seconds: float, then: ReplyLike | None = None) -> Reply:
        """Queue :func:`slow_reply` - pass ``then`` built with the *module-level*
        helpers (``json_reply(...)``), not ``server.reply_json`` (which would queue
        a second entry)."""
        r = slow_reply(seconds, then)
        self.enqueue(r)
        return r

    def respond_with(self, fn: Responder | None) -> Responder | None:
        """Install a responder ``fn(request) -> ReplyLike | None`` consulted when the
        queue is empty (``None`` return falls through to ``default_reply``).
        Called concurrently from handler threads. Returns ``fn`` (decorator use).
        ``respond_with(None)`` removes it."""
        with self._lock:
            self._responder = fn
        return fn

    @property
    def default_reply(self) -> Reply | None:
        """Reply used when the queue is empty and no responder answered."""
        return self._default_reply

    @default_reply.setter
    def default_reply(self, spec: ReplyLike | None) -> None:
        self._default_reply = coerce_reply(spec) if spec is not None else None

    @property
    def pending(self) -> int:
        """Number of scripted replies not yet consumed."""
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Clear queue, responder, default reply, recorded requests and counters."""
        with self._lock:
            self._queue.clear()
            self._responder = None
            self._default_reply = None
            self._requests.clear()
            self._all_requests.clear()
            self._max_in_flight = self._in_flight

    # -- inspection -------------------------------------------------------- #

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of model calls (chat completions + responses) in arrival order,
        including ones rejected with 4xx."""
        with self._lock:
            return list(self._requests)

    @property
    def all_requests(self) -> list[RecordedRequest]:
        """Snapshot of every request received, including ``/v1/models`` and 404s."""
        with self._lock:
            return list(self._all_requests)

    @property
    def request_count(self) -> int:
        """Number of model calls received (= attempts)."""
        with self._lock:
            return len(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            if not self._requests:
                raise AssertionError("no model request was received")
            return self._requests[-1]

    @property
    def in_flight(self) -> int:
        """Model calls currently being handled."""
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """Highest number of simultaneously handled model calls seen (concurrency check)."""
        with self._lock:
            return self._max_in_flight

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``n`` model calls arrived; raises ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._requests) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"only {len(self._requests)} of {n} requests arrived within {timeout}s")
                self._cond.wait(remaining)
            return list(self._requests)

    # -- internals used by the handler ------------------------------------- #

    def _record(self, req: RecordedRequest, model_call: bool) -> None:
        with self._cond:
            if model_call:
                req.index = len(self._requests)
                self._requests.append(req)
            self._all_requests.append(req)
            self._cond.notify_all()

    def _enter_flight(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _leave_flight(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def _choose_reply(self, req: RecordedRequest) -> Reply:
        with self._lock:
            if self._queue:
                reply = self._queue.popleft()
                if reply.kind != "fallback":
                    return reply
                delay = reply.delay
            else:
                delay = 0.0
            responder = self._responder
            default = self._default_reply
        chosen: Reply | None = None
        if responder is not None:
            try:
                result = responder(req)
            except Exception as e:  # surface responder bugs to the test
                chosen = error_reply(500, f"test responder raised {type(e).__name__}: {e}", code="responder_error")
            else:
                if result is not None:
                    chosen = coerce_reply(result)
        if chosen is None:
            chosen = default
        if chosen is None:
            chosen = error_reply(
                500,
                f"no scripted reply: OpenAITestServer received request #{req.index} "
                f"({req.method} {req.path}) but the reply queue is empty and no "
                "responder/default_reply is set",
                type="server_error",
                code="no_scripted_reply",
            )
        return chosen.with_delay(delay) if delay else chosen

    def _count_prompt_tokens(self, req: RecordedRequest, reply: Reply) -> int:
        if reply.prompt_tokens is not None:
            return reply.prompt_tokens
        pt = self.prompt_tokens
        if callable(pt):
            return int(pt(req))
        if pt is not None:
            return int(pt)
        if req.endpoint == "responses":
            payload: Any = [req.get("instructions"), req.get("input")]
        else:
            payload = req.get("messages")
        return len(json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)) // 4

    def _validate(self, req: RecordedRequest) -> Reply | None:
        """Capability / shape checks; returns an error reply or None."""
        if self.api_key is not None:
            auth = req.headers.get("authorization", "")
            if auth != f"Bearer {self.api_key}":
                return error_reply(401, "Incorrect API key provided.", code="invalid_api_key")
        if not req.get("model"):
            return error_reply(400, "you must provide a model parameter", param="model")
        if req.endpoint == "chat.completions":
            if not isinstance(req.get("messages"), list) or not req["messages"]:
                return error_reply(400, "'messages' must be a non-empty array", param="messages")
        else:
            if req.get("input") is None and not req.get("previous_response_id"):
                return error_reply(400, "Missing required parameter: 'input'.", param="input")
        rft = req.response_format_type
        param = "text.format" if req.endpoint == "responses" else "response_format"
        fname = param.split(".")[0]
        if rft == "json_schema" and not self.supports_json_schema:
            return error_reply(
                400,
                f"Invalid parameter: '{fname}' of type 'json_schema' is not supported with this model. "
                "Learn more about supported models at the Structured Outputs guide: "
                "https://platform.openai.com/docs/guides/structured-outputs",
                param=param,
            )
        if rft == "json_object" and not self.supports_json_object:
            return error_reply(
                400,
                f"Invalid parameter: '{fname}' of type 'json_object' is not supported with this model.",
                param=param,
            )
        if not self.supports_tools and (req.get("tools") or req.get("functions")):
            which = "tools" if req.get("tools") else "functions"
            return error_reply(
                400,
                f"'{which}' (function calling) is not supported by this model/server.",
                param=which,
                code="unsupported_parameter",
            )
        return None

    def _sleep(self, seconds: float) -> bool:
        """Interruptible sleep; returns False if the server is stopping."""
        if seconds <= 0:
            return not self._stopping.is_set()
        return not self._stopping.wait(seconds)


# --------------------------------------------------------------------------- #
# Rendering replies
# --------------------------------------------------------------------------- #


@dataclass
class _Assistant:
    content: str | None
    refusal: str | None
    tool_calls: list[tuple[str, str, str]]  # (id, name, arguments_json)
    finish_reason: str


def _assistant_for(reply: Reply, req: RecordedRequest, rid: int) -> _Assistant:
    if reply.kind == "json":
        payload = json.dumps(reply.value, ensure_ascii=False)
        delivery = reply.delivery
        target = req.forced_function
        if delivery == "tool_call" and target is None:
            names = req.tool_names
            if not names:
                raise _RenderError("json_reply(delivery='tool_call') but the request offered no tools")
            target = names[0]
        if delivery != "content" and target is not None:
            return _Assistant(None, None, [(f"call_{rid}_0", target, payload)], reply.finish_reason or "stop")
        return _Assistant(payload, None, [], reply.finish_reason or "stop")
    if reply.kind == "text":
        return _Assistant(str(reply.value), None, [], reply.finish_reason or "stop")
    if reply.kind == "refusal":
        return _Assistant(None, str(reply.value), [], reply.finish_reason or "stop")
    if reply.kind == "tool_calls":
        calls = [(tc.id or f"call_{rid}_{i}", tc.name, tc.arguments_json) for i, tc in enumerate(reply.tool_calls)]
        return _Assistant(reply.content, None, calls, reply.finish_reason or "tool_calls")
    raise _RenderError(f"cannot render reply kind {reply.kind!r} as an assistant message")


class _RenderError(Exception):
    pass


def _completion_tokens(a: _Assistant, reply: Reply) -> int:
    if reply.completion_tokens is not None:
        return reply.completion_tokens
    n = len(a.content or "") + len(a.refusal or "")
    n += sum(len(name) + len(args) for _, name, args in a.tool_calls)
    return n // 4 + 1


def _chat_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _responses_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def _pieces(s: str, size: int) -> list[str]:
    return [s[i : i + size] for i in range(0, len(s), size)] or [""]


def _chat_completion(req: RecordedRequest, a: _Assistant, usage: dict[str, Any], rid: int) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": a.content,
        "refusal": a.refusal,
        "annotations": [],
    }
    if a.tool_calls:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            for cid, name, args in a.tool_calls
        ]
    return {
        "id": f"chatcmpl-test{rid}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": req.get("model"),
        "system_fingerprint": "fp_openai_test_server",
        "service_tier": "default",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": a.finish_reason}],
        "usage": usage,
    }


def _chat_chunks(
    req: RecordedRequest, a: _Assistant, usage: dict[str, Any], rid: int, size: int
) -> Iterator[dict[str, Any]]:
    include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
    base = {
        "id": f"chatcmpl-test{rid}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": req.get("model"),
        "system_fingerprint": "fp_openai_test_server",
        "service_tier": "default",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        c = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            c["usage"] = None
        return c

    yield chunk(
        {
            "role": "assistant",
            "content": "" if a.content is not None or not a.tool_calls else None,
            "refusal": None,
        }
    )
    if a.content:
        for piece in _pieces(a.content, size):
            yield chunk({"content": piece})
    if a.refusal:
        for piece in _pieces(a.refusal, size):
            yield chunk({"refusal": piece})
    for i, (cid, name, args) in enumerate(a.tool_calls):
        yield chunk(
            {"tool_calls": [{"index": i, "id": cid, "type": "function", "function": {"name": name, "arguments": ""}}]}
        )
        if args:
            for piece in _pieces(args, size):
                yield chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
    yield chunk({}, a.finish_reason)
    if include_usage:
        yield {**base, "choices": [], "usage": usage}


def _responses_output(a: _Assistant, rid: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if a.content is not None or a.refusal is not None:
        parts: list[dict[str, Any]] = []
        if a.content is not None:
            parts.append({"type": "output_text", "text": a.content, "annotations": [], "logprobs": []})
        if a.refusal is not None:
            parts.append({"type": "refusal", "refusal": a.refusal})
        out.append(
            {
                "type": "message",
                "id": f"msg_test{rid}",
                "status": "completed",
                "role": "assistant",
                "content": parts,
            }
        )
    for i, (cid, name, args) in enumerate(a.tool_calls):
        out.append(
            {
                "type": "function_call",
                "id": f"fc_test{rid}_{i}",
                "call_id": cid,
                "name": name,
                "arguments": args,
                "status": "completed",
            }
        )
    return out


def _response_object(
    req: RecordedRequest, a: _Assistant | None, usage: dict[str, Any] | None, rid: int, status: str
) -> dict[str, Any]:
    text_cfg = req.get("text") if isinstance(req.get("text"), dict) else {}
    incomplete = a is not None and a.finish_reason == "length"
    return {
        "id": f"resp_test{rid}",
        "object": "response",
        "created_at": int(time.time()),
        "status": ("incomplete" if incomplete else status) if a is not None else status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": req.get("instructions"),
        "max_output_tokens": req.get("max_output_tokens"),
        "model": req.get("model"),
        "output": _responses_output(a, rid) if a is not None else [],
        "parallel_tool_calls": req.get("parallel_tool_calls", True),
        "previous_response_id": req.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": req.get("store", True),
        "temperature": req.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, **text_cfg},
        "tool_choice": req.get("tool_choice", "auto"),
        "tools": req.get("tools", []),
        "top_p": req.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": req.get("metadata") or {},
    }


def _responses_events(
    req: RecordedRequest, a: _Assistant, usage: dict[str, Any], rid: int, size: int
) -> Iterator[dict[str, Any]]:
    seq = itertools.count()
    start = _response_object(req, None, None, rid, "in_progress")
    yield {"type": "response.created", "sequence_number": next(seq), "response": start}
    yield {"type": "response.in_progress", "sequence_number": next(seq), "response": start}
    final_items = _responses_output(a, rid)
    for oi, item in enumerate(final_items):
        if item["type"] == "message":
            yield {
                "type": "response.output_item.added",
                "sequence_number": next(seq),
                "output_index": oi,
                "item": {**item, "status": "in_progress", "content": []},
            }
            for ci, part in enumerate(item["content"]):
                if part["type"] == "output_text":
                    empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                    yield {
                        "type": "response.content_part.added",
                        "sequence_number": next(seq),
                        "item_id": item["id"],
                        "output_index": oi,
                        "content_index": ci,
                        "part": empty,
                    }
                    for piece in _pieces(part["text"], size) if part["text"] else []:
                        yield {
                            "type": "response.output_text.delta",
                            "sequence_number": next(seq),
                            "item_id": item["id"],
                            "output_index": oi,
                            "content_index": ci,
                            "delta": piece,
                            "logprobs": [],
                        }
                    yield {
                        "type": "response.output_text.done",
                        "sequence_number": next(seq),
                        "item_id": item["id"],
                        "output_index": oi,
                        "content_index": ci,
                        "text": part["text"],
                        "logprobs": [],
                    }
                else:  # refusal
                    yield {
                        "type": "response.content_part.added",
                        "sequence_number": next(seq),
                        "item_id": item["id"],
                        "output_index": oi,
                        "content_index": ci,
                        "part": {"type": "refusal", "refusal": ""},
                    }
                    yield {
                        "type": "response.refusal.delta",
                        "sequence_number": next(seq),
                        "item_id": item["id"],
                        "output_index": oi,
                        "content_index": ci,
                        "delta": part["refusal"],
                    }
                    yield {
                        "type": "response.refusal.done",
                        "sequence_number": next(seq),
                        "item_id": item["id"],
                        "output_index": oi,
                        "content_index": ci,
                        "refusal": part["refusal"],
                    }
                yield {
                    "type": "response.content_part.done",
                    "sequence_number": next(seq),
                    "item_id": item["id"],
                    "output_index": oi,
                    "content_index": ci,
                    "part": part,
                }
        else:  # function_call
            yield {
                "type": "response.output_item.added",
                "sequence_number": next(seq),
                "output_index": oi,
                "item": {**item, "status": "in_progress", "arguments": ""},
            }
            for piece in _pieces(item["arguments"], size) if item["arguments"] else []:
                yield {
                    "type": "response.function_call_arguments.delta",
                    "sequence_number": next(seq),
                    "item_id": item["id"],
                    "output_index": oi,
                    "delta": piece,
                }
            yield {
                "type": "response.function_call_arguments.done",
                "sequence_number": next(seq),
                "item_id": item["id"],
                "output_index": oi,
                "name": item["name"],
                "arguments": item["arguments"],
            }
        yield {
            "type": "response.output_item.done",
            "sequence_number": next(seq),
            "output_index": oi,
            "item": item,
        }
    final = _response_object(req, a, usage, rid, "completed")
    kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    yield {"type": kind, "sequence_number": next(seq), "response": final}


def _error_body(reply: Reply) -> dict[str, Any]:
    return {
        "error": {
            "message": reply.value,
            "type": reply.error_type,
            "param": reply.error_param,
            "code": reply.error_code,
        }
    }


def _fmt_seconds(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


# --------------------------------------------------------------------------- #
# HTTP handler
# --------------------------------------------------------------------------- #


class _ClientGone(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "OpenAITestServer/1.0"
    timeout = 60  # idle keep-alive connections are dropped after this
    server: _HTTPServer

    # silence default stderr logging
    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def owner(self) -> OpenAITestServer:
        return self.server.owner

    # -- low-level writers ------------------------------------------------- #

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (TimeoutError, OSError) as e:
            self.close_connection = True
            raise _ClientGone from e

    def _send(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            hdrs = {"Content-Type": content_type, **(headers or {})}
            for k, v in hdrs.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
        except OSError as e:
            self.close_connection = True
            raise _ClientGone from e
        self._write(body)

    def _send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json", headers)

    def _send_error_reply(self, reply: Reply, extra: Mapping[str, str] | None = None) -> None:
        headers: dict[str, str] = dict(extra or {})
        if reply.retry_after is not None:
            headers["Retry-After"] = _fmt_seconds(reply.retry_after)
        if reply.retry_after_ms is not None:
            headers["retry-after-ms"] = _fmt_seconds(reply.retry_after_ms)
        headers.update(reply.headers)
        self._send_json(reply.status, _error_body(reply), headers)

    def _start_sse(self, headers: Mapping[str, str]) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
        except OSError as e:
            self.close_connection = True
            raise _ClientGone from e

    def _sse(self, data: str, event: str | None = None) -> None:
        payload = (f"event: {event}\n" if event else "") + f"data: {data}\n\n"
        raw = payload.encode("utf-8")
        self._write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")

    def _end_sse(self) -> None:
        self._write(b"0\r\n\r\n")

    # -- request parsing --------------------------------------------------- #

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0] or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(length) if length > 0 else b""

    def _route(self) -> tuple[str, str]:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        p = path[3:] if path.startswith("/v1/") or path == "/v1" else path
        if p == "/chat/completions":
            return "chat.completions", path
        if p == "/responses":
            return "responses", path
        if p == "/models" or p.startswith("/models/"):
            return "models", path
        return "unknown", path

    # -- verbs ------------------------------------------------------------- #

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        try:
            self._dispatch(method)
        except _ClientGone:
            self.close_connection = True

    def _dispatch(self, method: str) -> None:
        owner = self.owner
        raw = self._read_body()
        endpoint, path = self._route()
        headers = {k: v for k, v in self.headers.items()}
        body: Any = {}
        bad_json = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        if not isinstance(body, dict):
            bad_json, body = True, {}

        is_model_call = method == "POST" and endpoint in ("chat.completions", "responses")
        req = RecordedRequest(body, method=method, path=path, endpoint=endpoint, headers=headers, raw_body=raw)
        owner._record(req, is_model_call)
        rid = owner._next_id()
        base_headers = {"x-request-id": f"req_test{rid}", "openai-processing-ms": "1"}

        if endpoint == "models" and method == "GET":
            req.status = 200
            self._serve_models(path, base_headers, req)
            return
        if not is_model_call:
            req.status = 404
            self._send_error_reply(
                error_reply(404, f"Invalid URL ({method} {path})", type="invalid_request_error", code=None),
                base_headers,
            )
            return

        owner._enter_flight()
        try:
            self._serve_model_call(req, rid, bad_json, base_headers)
        finally:
            owner._leave_flight()

    def _serve_models(self, path: str, headers: dict[str, str], req: RecordedRequest) -> None:
        owner = self.owner
        created = 1700000000

        def model_obj(mid: str) -> dict[str, Any]:
            return {"id": mid, "object": "model", "created": created, "owned_by": "openai-test-server"}

        tail = path.split("/models", 1)[1].lstrip("/")
        if not tail:
            self._send_json(200, {"object": "list", "data": [model_obj(m) for m in owner.models]}, headers)
            return
        if tail in owner.models:
            self._send_json(200, model_obj(tail), headers)
            return
        req.status = 404
        self._send_error_reply(error_reply(404, f"The model '{tail}' does not exist", code="model_not_found"), headers)

    def _serve_model_call(self, req: RecordedRequest, rid: int, bad_json: bool, headers: dict[str, str]) -> None:
        owner = self.owner
        if bad_json:
            reply: Reply = error_reply(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                "using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
            )
            req.status = 400
            self._send_error_reply(reply, headers)
            return

        rejection = owner._validate(req)
        if rejection is not None:
            req.status = rejection.status
            if not owner._sleep(owner.fixed_latency):
                self.close_connection = True
                return
            self._send_error_reply(rejection, headers)
            return

        reply = owner._choose_reply(req)
        req.reply = reply
        req.status = reply.status
        if not owner._sleep(owner.fixed_latency + reply.delay):
            self.close_connection = True
            return

        if reply.kind == "error":
            self._send_error_reply(reply, headers)
            return
        if reply.kind == "raw":
            value = reply.value
            if isinstance(value, bytes):
                data, ctype = value, "application/octet-stream"
            elif isinstance(value, str):
                data, ctype = value.encode("utf-8"), "text/plain; charset=utf-8"
            else:
                data, ctype = json.dumps(value).encode("utf-8"), "application/json"
            hdrs = {**headers, **reply.headers}
            ctype = hdrs.pop("Content-Type", hdrs.pop("content-type", ctype))
            self._send(reply.status, data, ctype, hdrs)
            return

        try:
            a = _assistant_for(reply, req, rid)
        except _RenderError as e:
            req.status = 500
            self._send_error_reply(error_reply(500, f"OpenAITestServer: {e}", code="bad_scripted_reply"), headers)
            return

        prompt = owner._count_prompt_tokens(req, reply)
        completion = _completion_tokens(a, reply)
        hdrs = {**headers, **reply.headers}
        size = owner.stream_chunk_chars

        if req.endpoint == "chat.completions":
            usage = _chat_usage(prompt, completion)
            if req.stream:
                self._start_sse(hdrs)
                for c in _chat_chunks(req, a, usage, rid, size):
                    self._sse(json.dumps(c, ensure_ascii=False))
                self._sse("[DONE]")
                self._end_sse()
            else:
                self._send_json(200, _chat_completion(req, a, usage, rid), hdrs)
        else:
            usage = _responses_usage(prompt, completion)
            if req.stream:
                self._start_sse(hdrs)
                for ev in _responses_events(req, a, usage, rid, size):
                    self._sse(json.dumps(ev, ensure_ascii=False), event=ev["type"])
                self._end_sse()
            else:
                self._send_json(200, _response_object(req, a, usage, rid, "completed"), hdrs)


if __name__ == "__main__":  # manual smoke run: python tests/openai_test_server.py
    with OpenAITestServer(default_reply={"hello": "world"}) as _srv:
        print(f"serving on {_srv.base_url} (Ctrl-C to stop)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
