"""The extraction graph's node bodies. Each takes the image state and the run context, returns an update."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

from langgraph.graph import END
from langgraph.runtime import Runtime
from pydantic import ValidationError

from visextract.agents.extraction_prompts import extraction_turns, reask_turns
from visextract.agents.extraction_state import ExtractionContext, ImageState, call_row
from visextract.agents.llm.base import LlmFatalError, LlmUnavailableError, StructuredRequest
from visextract.agents.llm.gate import BudgetSpentError
from visextract.agents.llm.image_input import encode_for_llm
from visextract.agents.llm.pricing import cost_usd
from visextract.errors import VisextractError
from visextract.images import ImageLoadError, decode_image, read_image_file
from visextract.schemas.cross_checks import conflicts, cross_check
from visextract.schemas.evidence import ToolEvidence
from visextract.schemas.json_schema import strict_json_schema
from visextract.schemas.record import FieldProvenance
from visextract.schemas.search_text import search_segments
from visextract.store import ImageFacts, RecordDraft
from visextract.store.store import SaveResult
from visextract.tools.batcher import Batcher
from visextract.tools.registry import result_type_of

Ctx = Runtime[ExtractionContext]
log = logging.getLogger("visextract")


# ---- load, plan, tools ----------------------------------------------------------------------------


async def load(state: ImageState, runtime: Ctx) -> dict[str, Any]:
    """Read and hash the file; skip it if already done; decode, orient and convert it."""
    ctx = runtime.context
    path = Path(state["path"])
    if ctx.stop.is_set():  # stopping: leave it for the next run
        return {"status": "cancelled"}
    try:
        file = await asyncio.to_thread(read_image_file, path)
    except ImageLoadError as exc:  # unreadable: retried on the next run, it may be fixed by then
        return {"file": None, "status": "failed", "error": str(exc), "complete": False}
    await ctx.claim(str(path), file.sha256)  # a copy of this file in flight finishes first
    done = partial(
        ctx.store.is_done, file.sha256, ctx.schema, ctx.producer_key,
        run_id=ctx.run_id, force=ctx.force, redo_reviewed=ctx.discard_reviews,
    )  # fmt: skip
    if await asyncio.to_thread(done):
        await asyncio.to_thread(ctx.store.remember_path, str(path), file.sha256, ctx.run_id)
        return {"file": file, "status": "skipped"}
    try:
        image = await asyncio.to_thread(
            decode_image, file, max_side=ctx.settings.max_side, max_pixels=ctx.settings.max_image_pixels
        )
    except ImageLoadError as exc:
        return {"file": file, "status": "failed", "error": str(exc), "complete": True}
    facts = ImageFacts(
        sha256=file.sha256,
        size_bytes=file.size_bytes,
        width=image.width,
        height=image.height,
        format=image.format,
        exif=image.metadata,
    )
    return {"file": file, "image": image, "facts": facts}


def after_load(state: ImageState) -> str:
    if state.get("status") in ("skipped", "cancelled"):
        return END
    if state.get("status") == "failed":
        return "persist"
    return "plan"


async def plan(state: ImageState, runtime: Ctx) -> dict[str, Any]:
    """Reuse stored tool results for this image; run only the tools whose results are missing."""
    ctx = runtime.context
    if ctx.stop.is_set():  # stopping before any model work: leave it for the next run
        return {"status": "cancelled", "image": None}
    ctx.start_warm_up()
    cached = (
        {} if ctx.force else await asyncio.to_thread(ctx.store.cached_tool_results, state["file"].sha256, ctx.tool_keys)
    )
    results = {
        name: [result_type_of(name).model_validate(item) for item in cached[name]]
        for name in ctx.tools
        if name in cached
    }
    return {"tool_results": results, "tools_to_run": [name for name in ctx.tools if name not in results]}


def after_plan(state: ImageState) -> str:
    return END if state.get("status") == "cancelled" else "tools"


async def run_tools(state: ImageState, runtime: Ctx) -> dict[str, Any]:
    """Send the image to each planned tool's batcher and wait for all of them.

    When the run is stopping (Ctrl-C), an image none of whose tools has started is dropped (left for the
    next run); one whose tool work has started is finished. A tool that cannot run at all (its model does
    not load) stops the run: that is a setup problem, not this image's, and it must not fail good records.
    """
    ctx = runtime.context
    names = state["tools_to_run"]
    submitted = [ctx.batchers[name].submit(state["image"]) for name in names]
    futures = [asyncio.wrap_future(future) for future in submitted]
    while not all(future.done() for future in futures):
        await asyncio.wait(futures, timeout=0.1)
        requests = list(zip([ctx.batchers[name] for name in names], submitted, strict=True))
        if ctx.stop.is_set() and _drop_unfinishable(requests):
            await asyncio.gather(*futures, return_exceptions=True)
            return {"status": "cancelled", "image": None}  # left for the next run
    outputs = await asyncio.gather(*futures, return_exceptions=True)
    for output in outputs:
        if isinstance(output, VisextractError):
            raise output
    results = dict(state["tool_results"])
    seconds = {}
    errors = []
    for name, output in zip(names, outputs, strict=True):
        if isinstance(output, BaseException):
            errors.append(f"tool {name} failed: {type(output).__name__}: {output}".splitlines()[0])
        else:
            results[name], seconds[name] = output.value, output.seconds
    ordered = {name: results[name] for name in ctx.tools if name in results}  # same tool order every time
    update: dict[str, Any] = {"tool_results": ordered, "new_tools": list(seconds), "tool_seconds": seconds}
    if errors:
        update |= {"status": "failed", "error": "; ".join(errors), "complete": False}
    if ctx.llm is None or errors:
        update["image"] = None  # nothing needs the pixels any more
    return update


def _drop_unfinishable(requests: list[tuple[Batcher[Any, Any], Future[Any]]]) -> bool:
    """On stop: an image whose tool work has not started, or that still waits for a model that is loading,
    is dropped (its queued requests cancelled); one being computed on loaded models is finished."""
    waiting = [(batcher, future) for batcher, future in requests if not (future.running() or future.done())]
    started = len(waiting) < len(requests)
    if started and all(batcher.warmed.is_set() for batcher, _ in waiting):
        return False
    cancelled = [future.cancel() for _, future in waiting]  # every one: no short-circuit
    return any(cancelled)  # a request that started meanwhile cannot be completed now: the image is dropped


def after_tools(state: ImageState, runtime: Ctx) -> str:
    if state.get("status") == "cancelled":
        return END
    if state.get("status") == "failed":
        return "persist"
    return "llm" if runtime.context.llm is not None else "assemble"


# ---- the LLM, or the tools alone ----------------------------------------------------------------------


async def ask_llm(state: ImageState, runtime: Ctx) -> dict[str, Any]:
    """Ask the multimodal LLM to fill the schema from the image and the tools' evidence."""
    ctx = runtime.context
    llm = ctx.llm
    assert llm is not None
    turns = state.get("turns") or extraction_turns(ctx.schema, _evidence(state))
    image_input = state.get("llm_image") or await asyncio.to_thread(
        encode_for_llm, state["image"], llm.image_max_side, llm.image_detail
    )
    update: dict[str, Any] = {"turns": turns, "llm_image": image_input, "image": None, "reask": False}
    request = StructuredRequest(
        turns=turns,
        image=image_input,
        schema_name=ctx.schema.name,
        json_schema=ctx.schema.json_schema,
        strict_json_schema=strict_json_schema(ctx.schema.model),
    )
    attempt = state.get("attempts", 0) + 1
    logged_request = [{"role": t.role, "content": t.text} for t in turns]
    calls = list(state.get("llm_calls", []))
    try:
        async with llm.gate.slot():
            reply = await llm.backend.complete(request)
    except BudgetSpentError:
        return update | {"llm_problem": f"LLM budget of ${llm.gate.budget_usd:g} spent; tools-only record"}
    except LlmUnavailableError as exc:
        llm.gate.note_problem(str(exc))
        calls += [call_row(call, attempt, None, logged_request) for call in exc.calls]
        return update | {"llm_problem": str(exc), "llm_calls": calls}
    except LlmFatalError as exc:
        llm.gate.refuse_all(exc)  # the other images stop asking too
        raise
    cost = cost_usd(reply.model, reply.prompt_tokens, reply.completion_tokens, llm.prices)
    llm.gate.add_cost(cost)
    calls += [call_row(call, attempt, cost if call.status == "ok" else None, logged_request) for call in reply.calls]
    usage = _add_usage(state.get("llm_usage"), reply.model, attempt, reply.prompt_tokens, reply.completion_tokens, cost)
    return update | {"raw_answer": reply.text, "attempts": attempt, "llm_calls": calls, "llm_usage": usage}


def after_llm(state: ImageState) -> str:
    return "assemble" if state.get("llm_problem") else "validate"


async def assemble(state: ImageState, runtime: Ctx) -> dict[str, Any]:
    """Fill the schema's fields straight from the tools' outputs (no LLM, or no LLM answer)."""
    schema = runtime.context.schema
    problem = state.get("llm_problem")
    if schema.fill_from_tools is None:
        note = problem or "no LLM configured"
        provenance = {name: FieldProvenance(source=None, note=note) for name in schema.field_names}
        return {"data": {}, "provenance": provenance}
    filled = schema.fill_from_tools(_evidence(state))
    return {"data": filled.values, "provenance": filled.provenance}


# ---- validate (with bounded re-asks) -------------------------------------------------------------------


async def validate(state: ImageState, runtime: Ctx) -> dict[str, Any]:
    """Validate the record with the schema's Pydantic model; re-ask the LLM with the errors, bounded."""
    ctx = runtime.context
    schema = ctx.schema
    from_llm = state.get("raw_answer") is not None and not state.get("llm_problem")
    try:
        if from_llm:
            model = schema.model.model_validate_json(_json_text(state["raw_answer"]))
        else:
            model = schema.model.model_validate(state.get("data") or {})
    except ValidationError as exc:
        errors = _validation_errors(exc)
        if from_llm and ctx.llm is not None and state.get("attempts", 0) <= ctx.llm.max_reasks:
            return {"reask": True, "turns": state["turns"] + reask_turns(schema, state["raw_answer"], errors)}
        tries = f" after {state.get('attempts', 0)} attempts" if from_llm else ""
        return {
            "reask": False,
            "status": "failed",
            "error": f"invalid {schema.name} record{tries}: {_first_line(errors)}",
            "complete": True,
        }
    data = model.model_dump(mode="json")
    if from_llm:
        return {"reask": False, "data": data, "status": "ok", "complete": True}
    if state.get("llm_problem"):
        return {"data": data, "status": "needs_review", "error": state["llm_problem"], "complete": False}
    return {"data": data, "status": "ok", "complete": True}


def after_validate(state: ImageState) -> str:
    if state.get("reask"):
        return "llm"
    return "verify" if state.get("status") == "ok" and state.get("raw_answer") is not None else "persist"


async def verify(state: ImageState, runtime: Ctx) -> dict[str, Any]:
    """Cross-check the LLM's fields against the tools; a contradiction sends the record to review."""
    schema = runtime.context.schema
    provenance = cross_check(state["data"], schema.checks, _evidence(state))
    problems = conflicts(provenance)
    if problems:
        return {"provenance": provenance, "status": "needs_review", "error": "cross-check: " + "; ".join(problems)}
    return {"provenance": provenance}


# ---- persist ----------------------------------------------------------------------------------------


async def persist(state: ImageState, runtime: Ctx) -> dict[str, Any]:
    """Write the image, its new tool results, its record and its LLM calls in one transaction."""
    saved = await save_record(state, runtime.context)
    update: dict[str, Any] = {"record_id": saved.record_id, "image": None, "llm_image": None}
    if not saved.current:
        update["error"] = f"{state.get('error') or state.get('status')} (the earlier good record was kept)"
    return update


async def save_record(state: ImageState, ctx: ExtractionContext) -> SaveResult:
    """Store what `state` holds as the image's record (on the context's single writer thread), then, in
    the background, its search-text embedding. The record is durable first; an embedding lost to a crash
    is made later by `store.search.index_missing_records`."""
    draft = _draft(state, ctx)
    loop = asyncio.get_running_loop()
    saved = await loop.run_in_executor(ctx.writer, ctx.store.save, draft)
    if ctx.embedder is not None and draft.status != "failed" and saved.current:
        ctx.index_for_search(draft.path, saved.record_id, search_segments(draft.data, _evidence(state)))
    return saved


def _draft(state: ImageState, ctx: ExtractionContext) -> RecordDraft:
    file = state.get("file")
    results = state.get("tool_results", {})
    status = state.get("status", "failed")
    provenance = state.get("provenance") or {}
    if status == "failed" or not provenance:
        provenance = {name: FieldProvenance(source=None, note=state.get("error")) for name in ctx.schema.field_names}
    return RecordDraft(
        path=state["path"],
        schema_name=ctx.schema.name,
        schema_version=ctx.schema.version,
        status=status,
        image=state.get("facts"),
        subject=file.sha256 if file is not None else None,
        tools={name: ctx.tool_keys[name] for name in results},
        tools_key=ctx.producer_key,
        new_tool_results={
            name: (
                [r.model_dump(mode="json") for r in results[name]],
                state.get("tool_seconds", {}).get(name),
            )
            for name in state.get("new_tools", [])
        },
        error=state.get("error"),
        complete=state.get("complete", True),
        data=state.get("data") if status != "failed" else None,
        provenance={name: p.to_json() for name, p in provenance.items()},
        llm=state.get("llm_usage"),
        raw_answer=state.get("raw_answer"),
        llm_calls=state.get("llm_calls", []),
        run_id=ctx.run_id,
        label=_evidence(state).top_label,
        discard_reviews=ctx.discard_reviews,
    )


# ---- helpers ----------------------------------------------------------------------------------------


def _evidence(state: ImageState) -> ToolEvidence:
    facts = state.get("facts")
    return ToolEvidence(
        state.get("tool_results", {}),
        image_width=facts.width if facts else None,
        image_height=facts.height if facts else None,
    )


def _add_usage(
    usage: dict[str, Any] | None,
    model: str,
    attempts: int,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    cost: float | None,
) -> dict[str, Any]:
    def plus(a: Any, b: Any) -> Any:
        return None if a is None or b is None else round(a + b, 8)

    if usage is None:
        return {
            "model": model,
            "attempts": attempts,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cost_usd": cost,
        }
    return {
        "model": model,
        "attempts": attempts,
        "prompt_tokens": plus(usage["prompt_tokens"], prompt_tokens),
        "completion_tokens": plus(usage["completion_tokens"], completion_tokens),
        "cost_usd": plus(usage["cost_usd"], cost),
    }


def _json_text(answer: str) -> str:
    """The JSON inside an answer, tolerating a ```json fence around it."""
    text = answer.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text.strip() or answer


def _validation_errors(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors()[:10]:
        where = ".".join(str(part) for part in error["loc"]) or "(record)"
        lines.append(f"- {where}: {error['msg']}")
    if exc.error_count() > 10:
        lines.append(f"- ... and {exc.error_count() - 10} more")
    return "\n".join(lines)


def _first_line(errors: str) -> str:
    first = errors.splitlines()[0].removeprefix("- ") if errors else "unknown error"
    more = len(errors.splitlines()) - 1
    return f"{first} (and {more} more)" if more > 0 else first
