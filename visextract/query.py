"""The Python API for querying results: search, read-only SQL, and the ask/chat agent.

import visextract as vx
vx.search("a dog on a beach", db="sqlite:///photos.db")       # offline, MiniLM embeddings
vx.sql("SELECT path, color FROM vehicle", db="sqlite:///photos.db")
vx.ask("how many photos contain text?", db="sqlite:///photos.db")   # needs an OpenAI-compatible LLM
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from visextract.config import Settings
from visextract.errors import UsageError, VisextractError, option_name
from visextract.store import Store
from visextract.store.readonly_sql import QueryResult
from visextract.store.search import SearchHit


def no_llm_message(what: str) -> str:
    """Why `what` (ask, chat, the chat page...) cannot run, and what works without an LLM."""
    return (
        f"{what} needs an LLM: set OPENAI_API_KEY (and OPENAI_BASE_URL for a non-OpenAI server); "
        'without one, use search (`visextract search "..."`) or read-only SQL (`visextract sql "SELECT ..."`)'
    )


@cache
def open_store(url: str) -> Store:
    """One Store per database URL per process (its engine is a connection pool). Read surfaces use it:
    a URL with no visextract database behind it is an error, never a new empty database."""
    return Store(url, create=False)


def _db(db: str | None) -> str:
    return db or Settings().db


def search(
    query: str, db: str | None = None, k: int = 10, schema: str | None = None, include_missing: bool = False
) -> list[SearchHit]:
    """The `k` records most similar in meaning to `query`, best first (offline). Records whose every path
    is missing are left out unless `include_missing`."""
    from visextract.store.search import search_records

    if k < 1:
        raise UsageError(f"{option_name('k')} must be 1 or more")
    if not query.strip():
        raise UsageError("search needs a query: say what to look for, e.g. 'a red car'")
    store = open_store(_db(db))
    store.check_schema_name(schema)
    return search_records(store, query, k=k, schema_name=schema, include_missing=include_missing)


def sql(query: str, db: str | None = None, max_rows: int = 1000, timeout_s: float = 10.0) -> QueryResult:
    """Run one read-only SELECT; writes of any kind raise QueryRefusedError and change nothing."""
    from visextract.store.readonly_sql import run_readonly_sql, warn_about_privileges

    url = _db(db)
    warn_about_privileges(url)
    return run_readonly_sql(url, query, max_rows=max_rows, timeout_s=timeout_s)


class Answer(BaseModel):
    """The agent's answer, the image paths it rests on, and the SQL it ran."""

    text: str
    paths: list[str]
    sql: list[str]

    @property
    def event(self) -> str:
        return "answer"


_STEP_KINDS = {"run_sql": "sql", "search_images": "search", "look_again": "look", "list_schemas": "schemas"}


class AgentStep(BaseModel):
    """The agent called a tool: ran SQL (`kind` "sql"), searched ("search"), looked at an image again
    ("look") or listed the schemas ("schemas"). `args` are the call's arguments (the SQL, the query...)."""

    tool: str
    args: dict[str, Any]

    @property
    def kind(self) -> str:
        return _STEP_KINDS.get(self.tool, "tool")

    @property
    def event(self) -> str:
        return self.kind


class StepResult(BaseModel):
    """What a tool call returned, in short (`summary`), and the images it found (`paths`)."""

    tool: str
    summary: str
    paths: list[str]

    @property
    def event(self) -> str:
        return "result"

    @classmethod
    def of(cls, tool: str, content: Any) -> StepResult:
        """Summarise a tool's JSON output (see `agents.query_tools`) for people watching the agent work."""
        try:
            value = json.loads(content) if isinstance(content, str) else content
        except ValueError:
            return cls(tool=tool, summary=str(content)[:300], paths=[])
        if isinstance(value, dict) and ("refused" in value or "error" in value):
            return cls(tool=tool, summary=str(value.get("refused") or value.get("error")), paths=[])
        if isinstance(value, dict) and isinstance(value.get("rows"), list):
            rows = value["rows"]
            more = " (more not shown)" if value.get("truncated") else ""
            return cls(tool=tool, summary=f"{len(rows)} row{'s' * (len(rows) != 1)}{more}", paths=_paths_in(rows))
        if isinstance(value, list):
            return cls(tool=tool, summary=f"{len(value)} image{'s' * (len(value) != 1)}", paths=_paths_in(value))
        if isinstance(value, dict) and "answer" in value:
            return cls(tool=tool, summary=str(value["answer"])[:300], paths=_paths_in([value]))
        if isinstance(value, dict) and isinstance(value.get("typed_views"), list):
            return cls(tool=tool, summary=f"{len(value['typed_views'])} schemas", paths=[])
        return cls(tool=tool, summary=str(content)[:300], paths=[])


class AnswerDelta(BaseModel):
    """A piece of the answer's text, as the model writes it."""

    text: str

    @property
    def event(self) -> str:
        return "delta"


ChatEvent = AgentStep | StepResult | AnswerDelta | Answer


def _paths_in(rows: list[Any]) -> list[str]:
    return list(dict.fromkeys(str(row["path"]) for row in rows if isinstance(row, dict) and row.get("path")))


def llm_configured() -> bool:
    return bool(os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"))


class ChatSession:
    """A conversation with the query agent. History is kept per `thread_id` in the same database
    (SQLite or PostgreSQL checkpointer); `thread_id=None` keeps it in memory only.

        async with ChatSession(db="sqlite:///photos.db", thread_id="me") as chat:
            answer = await chat.ask("which cars are red?")
    """

    def __init__(
        self,
        db: str | None = None,
        *,
        llm_model: str | None = None,
        thread_id: str | None = None,
        settings: Settings | None = None,
        purpose: str = "chat",
    ) -> None:
        if not llm_configured():
            raise UsageError(no_llm_message(purpose))
        self.settings = (settings or Settings()).model_copy(update={"db": db} if db else {})
        self.llm_model = llm_model or self.settings.llm_model
        self.thread_id = thread_id
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> ChatSession:
        import openai
        from langchain_core.tools import StructuredTool
        from langchain_openai import ChatOpenAI

        from visextract.agents.query_graph import QueryContext, build_query_graph
        from visextract.agents.query_tools import QueryTools
        from visextract.store.readonly_sql import warn_about_privileges

        self.store = open_store(self.settings.db)
        warn_about_privileges(self.settings.db)
        http = openai.DefaultAsyncHttpxClient(timeout=self.settings.llm_timeout)
        self._stack.push_async_callback(http.aclose)
        self.chat_model = ChatOpenAI(
            model=self.llm_model,
            api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
            base_url=os.environ.get("OPENAI_BASE_URL") or None,
            timeout=self.settings.llm_timeout,
            max_retries=0,
            http_async_client=http,
        )
        self.tools = QueryTools(self.store, look=self._look_again)
        tools = [
            StructuredTool.from_function(func=self.tools.list_schemas),
            StructuredTool.from_function(func=self.tools.run_sql),
            StructuredTool.from_function(func=self.tools.search_images),
            StructuredTool.from_function(
                coroutine=self.tools.look_again, name="look_again", description=self.tools.look_again.__doc__
            ),
        ]
        checkpointer = await self._checkpointer() if self.thread_id else None
        self.graph = build_query_graph(tools, checkpointer)
        self.context = QueryContext(model=self.chat_model.bind_tools(tools), call=self._call_model)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def ask(self, question: str) -> Answer:
        """The agent's answer to `question` (the last event of `stream`)."""
        answer = None
        async for event in self.stream(question):
            if isinstance(event, Answer):
                answer = event
        assert answer is not None
        return answer

    async def stream(self, question: str) -> AsyncIterator[ChatEvent]:
        """The agent at work, as it happens: each tool call (`AgentStep`), what it returned (`StepResult`),
        the answer's text as the model writes it (`AnswerDelta`), and last the `Answer`.

            async for event in chat.stream("which photos show text?"):
                print(event.event, event)
        """
        from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

        from visextract.agents.query_tools import cite_sources

        self.tools.new_turn()
        queries_before = len(self.tools.sql_queries)
        config = {"recursion_limit": 30, "configurable": {"thread_id": self.thread_id or "one-shot"}}
        final: Any = None
        async for mode, chunk in self.graph.astream(
            {"messages": [HumanMessage(content=question)]},
            config=config,
            context=self.context,
            stream_mode=["updates", "messages"],
        ):
            if mode == "messages":
                message, metadata = chunk
                if metadata.get("langgraph_node") == "agent" and isinstance(message.content, str) and message.content:
                    yield AnswerDelta(text=message.content)
                continue
            for update in chunk.values():
                for message in (update or {}).get("messages", []):
                    if isinstance(message, AIMessage):
                        final = message
                        for call in message.tool_calls:
                            yield AgentStep(tool=call["name"], args=call["args"])
                    elif isinstance(message, ToolMessage):
                        yield StepResult.of(str(message.name), message.content)
        text = "" if final is None else final.content if isinstance(final.content, str) else str(final.content)
        paths = list(self.tools.seen_paths)
        yield Answer(text=cite_sources(text, paths), paths=paths, sql=self.tools.sql_queries[queries_before:])

    @property
    def last_sql(self) -> str | None:
        return self.tools.sql_queries[-1] if self.tools.sql_queries else None

    async def reset(self) -> None:
        """Forget this thread's conversation."""
        checkpointer = self.graph.checkpointer
        if checkpointer is not None and self.thread_id:
            await checkpointer.adelete_thread(self.thread_id)

    async def _checkpointer(self) -> Any:
        url = self.store.engine.url
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

            saver = await self._stack.enter_async_context(AsyncSqliteSaver.from_conn_string(url.database))
        elif url.get_backend_name() == "postgresql":
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

            plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
            saver = await self._stack.enter_async_context(AsyncPostgresSaver.from_conn_string(plain))
        else:
            from langgraph.checkpoint.memory import InMemorySaver

            return InMemorySaver()
        await saver.setup()
        return saver

    async def _call_model(self, model: Any, messages: Sequence[Any]) -> Any:
        from visextract.agents.llm.retry import with_transient_retries

        try:
            return await with_transient_retries(
                lambda: model.ainvoke(list(messages)),
                max_attempts=self.settings.llm_max_attempts,
                initial_wait=self.settings.llm_retry_initial_wait,
                max_wait=self.settings.llm_retry_max_wait,
            )
        except VisextractError:
            raise
        except Exception as exc:
            raise _llm_error(exc, self.llm_model) from None

    async def _look_again(self, path: str, question: str) -> str:
        from langchain_core.messages import HumanMessage

        from visextract.agents.llm.image_input import encode_for_llm
        from visextract.images import ImageLoadError, decode_image, read_image_file

        def load() -> Any:
            file = read_image_file(Path(path))
            image = decode_image(file, max_side=self.settings.max_side, max_pixels=self.settings.max_image_pixels)
            return encode_for_llm(image, self.settings.llm_image_max_side, "auto")

        try:
            image = await asyncio.to_thread(load)
        except ImageLoadError as exc:
            raise VisextractError(f"cannot look at {path} again: {exc}") from None
        content = [
            {"type": "text", "text": f"Answer briefly from what you see in this image: {question}"},
            {"type": "image_url", "image_url": {"url": image.data_url, "detail": image.detail}},
        ]
        reply = await self._call_model(self.chat_model, [HumanMessage(content=content)])
        return reply.content if isinstance(reply.content, str) else str(reply.content)


def _llm_error(exc: BaseException, model: str) -> VisextractError:
    from visextract.agents.llm.retry import describe_error, is_transient

    if is_transient(exc):
        return VisextractError(f"LLM unavailable: {describe_error(exc)}")
    return VisextractError(
        f"LLM server refused the request ({describe_error(exc)}); check OPENAI_API_KEY and --llm-model {model!r}"
    )


def ask(question: str, db: str | None = None, *, llm_model: str | None = None, thread_id: str | None = None) -> Answer:
    """Answer a question about the records with the query agent (needs an OpenAI-compatible LLM)."""
    from visextract.run_sync import run_sync

    async def one_question() -> Answer:
        async with ChatSession(db, llm_model=llm_model, thread_id=thread_id, purpose="ask") as session:
            return await session.ask(question)

    return run_sync(one_question)
