"""The extraction graph's node bodies. Each takes the image state and the run context, returns an update."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.graph import END
from langgraph.runtime import Runtime
from pydantic import ValidationError

from visextract.agents.extraction_state import ExtractionContext, ImageState
from visextract.images import ImageLoadError, decode_image, read_image_file
from visextract.schemas.evidence import ToolEvidence
from visextract.schemas.record import FieldProvenance
from visextract.store import ImageFacts, RecordDraft
from visextract.store.store import tools_key
from visextract.tools.registry import result_type_of

Ctx = Runtime[ExtractionContext]


async def load(state: ImageState, runtime: Ctx) -> dict[str, Any]:
    """Read and hash the file; skip it if already done; decode, orient and convert it."""
    ctx = runtime.context
    from pathlib import Path

    path = Path(state["path"])
    try:
        file = await asyncio.to_thread(read_image_file, path)
    except ImageLoadError as exc:  # unreadable: retried on the next run, it may be fixed by then
        return {"file": None, "image": None, "status": "failed", "error": str(exc), "complete": False}
    if not ctx.force and await asyncio.to_thread(ctx.store.is_done, file.sha256, ctx.schema, ctx.tool_keys):
        await asyncio.to_thread(ctx.store.remember_path, str(path), file.sha256)
        return {"file": file, "image": None, "status": "skipped"}
    try:
        image = await asyncio.to_thread(
            decode_image, file, max_side=ctx.settings.max_side, max_pixels=ctx.settings.max_image_pixels
        )
    except ImageLoadError as exc:
        return {"file": file, "image": None, "status": "failed", "error": str(exc), "complete": True}
    return {"file": file, "image": image}


def after_load(state: ImageState) -> str:
    if state.get("status") == "skipped":
        return END
    if state.get("status") == "failed":
        return "persist"
    return "plan"


async def plan(state: ImageState, runtime: Ctx) -> dict[str, Any]:
    """Reuse stored tool results for this image; run only the tools whose results are missing."""
    ctx = runtime.context
    cached = await asyncio.to_thread(ctx.store.cached_tool_results, state["file"].sha256, ctx.tool_keys)
    results = {
        name: [result_type_of(name).model_validate(item) for item in cached[name]]
        for name in ctx.tools
        if name in cached and not ctx.force
    }
    return {"tool_results": results, "tools_to_run": [name for name in ctx.tools if name not in results]}


async def run_tools(state: ImageState, runtime: Ctx) -> dict[str, Any]:
    """Send the image to each planned tool's batcher and wait for all of them."""
    ctx = runtime.context
    image = state["image"]
    names = state["tools_to_run"]
    futures = [asyncio.wrap_future(ctx.batchers[name].submit(image)) for name in names]
    outputs = await asyncio.gather(*futures, return_exceptions=True)
    results = dict(state["tool_results"])
    seconds = {}
    errors = []
    for name, output in zip(names, outputs, strict=True):
        if isinstance(output, BaseException):
            errors.append(f"tool {name} failed: {type(output).__name__}: {output}".splitlines()[0])
        else:
            results[name], seconds[name] = output.results, output.seconds
    # keep the planned order so records and exports list tools the same way every time
    ordered = {name: results[name] for name in ctx.tools if name in results}
    update: dict[str, Any] = {"tool_results": ordered, "new_tools": list(seconds), "tool_seconds": seconds}
    if errors:
        update |= {"status": "failed", "error": "; ".join(errors), "complete": False}
    return update


def after_tools(state: ImageState) -> str:
    return "persist" if state.get("status") == "failed" else "extract"


async def extract(state: ImageState, runtime: Ctx) -> dict[str, Any]:
    """Fill the schema's fields from the tools' outputs."""
    schema = runtime.context.schema
    evidence = ToolEvidence(state["tool_results"])
    if schema.fill_from_tools is None:
        provenance = {
            name: FieldProvenance(source=None, note="no LLM configured") for name in schema.field_names
        }
        return {"data": {}, "provenance": provenance}
    filled = schema.fill_from_tools(evidence)
    return {"data": filled.values, "provenance": filled.provenance}


async def validate(state: ImageState, runtime: Ctx) -> dict[str, Any]:
    """Validate the data against the schema's Pydantic model; store it in its validated form."""
    schema = runtime.context.schema
    try:
        data = schema.model.model_validate(state["data"]).model_dump(mode="json")
    except ValidationError as exc:
        return {
            "status": "failed",
            "error": f"invalid {schema.name} record: {_first_error(exc)}",
            "complete": True,
        }
    return {"data": data, "status": "ok", "complete": True}


async def persist(state: ImageState, runtime: Ctx) -> dict[str, Any]:
    """Write the image, its new tool results and its record in one transaction."""
    record_id = await save_record(state, runtime.context)
    return {"record_id": record_id, "image": None}  # drop pixels as soon as the record is safe


async def save_record(state: ImageState, ctx: ExtractionContext) -> int:
    """Store what `state` holds as the image's current record (on the context's single writer thread)."""
    draft = _draft(state, ctx)
    return await asyncio.get_running_loop().run_in_executor(ctx.writer, ctx.store.save, draft)


def _draft(state: ImageState, ctx: ExtractionContext) -> RecordDraft:
    file, image = state.get("file"), state.get("image")
    results = state.get("tool_results", {})
    provenance = state.get("provenance") or {
        name: FieldProvenance(source=None, note=state.get("error")) for name in ctx.schema.field_names
    }
    status = state.get("status", "failed")
    return RecordDraft(
        path=state["path"],
        schema_name=ctx.schema.name,
        schema_version=ctx.schema.version,
        status=status,
        image=ImageFacts(
            sha256=file.sha256,
            size_bytes=file.size_bytes,
            width=image.width,
            height=image.height,
            format=image.format,
            exif=image.metadata,
        )
        if file is not None and image is not None
        else None,
        subject=file.sha256 if file is not None else None,
        tools={name: ctx.tool_keys[name] for name in results},
        tools_key=tools_key(ctx.tool_keys),
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
        run_id=ctx.run_id,
    )


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "record"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {error['msg']}{more}"
