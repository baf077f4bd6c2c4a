"""Export: one object per current record, in the shape DESIGN.md promises, as JSONL, CSV or Parquet."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sqlmodel import col, select

from visextract.errors import UsageError
from visextract.store.store import Store
from visextract.store.tables import ImageRow, RecordRow, RecordSchemaRow, ToolResultRow

EXPORT_FORMATS = ("jsonl", "csv", "parquet")
_BATCH = 500


def export_dicts(
    store: Store,
    schema_name: str | None = None,
    all_versions: bool = False,
    with_ids: bool = False,
    record_ids: list[int] | None = None,
) -> Iterator[dict[str, Any]]:
    """Records as export objects: path, sha256, size, status, error, schema, data, provenance, tools, llm.

    `all_versions` includes superseded records; it and `with_ids` add record_id, is_current and created_at.
    `record_ids` limits the export to those records.
    """
    statement = (
        select(RecordRow, ImageRow)
        .join(ImageRow, col(ImageRow.id) == col(RecordRow.image_id), isouter=True)
        .order_by(col(RecordRow.path), col(RecordRow.id))
    )
    if not all_versions:
        statement = statement.where(col(RecordRow.is_current))
    if schema_name:
        statement = statement.where(RecordRow.schema_name == schema_name)
    if record_ids is not None:
        statement = statement.where(col(RecordRow.id).in_(record_ids))
    with store.read() as session:
        rows = session.exec(statement.execution_options(yield_per=_BATCH))
        while batch := rows.fetchmany(_BATCH):
            image_ids = {record.image_id for record, _ in batch if record.image_id is not None}
            results: dict[tuple[int, str, str], list[dict[str, Any]]] = {}
            if image_ids:
                for image_id, tool, key, items in session.exec(
                    select(
                        ToolResultRow.image_id,
                        ToolResultRow.tool,
                        ToolResultRow.cache_key,
                        ToolResultRow.results,
                    ).where(col(ToolResultRow.image_id).in_(image_ids))
                ):
                    results[(image_id, tool, key)] = items
            for record, image in batch:
                yield _export_dict(record, image, results, all_versions or with_ids)


def records_for(store: Store, path_or_sha: str, schema: str | None = None) -> list[dict[str, Any]]:
    """An image's current records in the export shape, each plus `"paths"`: every path holding its content.

    `path_or_sha` is a path (as given or absolute), a sha256 or a unique sha256 prefix of 6+ characters.
    An empty list when nothing matches.

        for record in records_for(store, "photos/cat.jpg"):
            print(record["schema"], record["data"], record["paths"])
    """
    subjects = {row.id: row.subject for row in store.find_records(path_or_sha) if schema in (None, row.schema_name)}
    if not subjects:
        return []
    records = []
    for record in export_dicts(store, with_ids=True, record_ids=list(subjects)):
        subject = subjects[record.pop("record_id")]
        del record["is_current"], record["created_at"]
        record["paths"] = [record["path"]] if subject.startswith("path:") else store.paths_of(subject)
        records.append(record)
    return records


def _export_dict(
    record: RecordRow,
    image: ImageRow | None,
    results: dict[tuple[int, str, str], list[dict[str, Any]]],
    with_history: bool,
) -> dict[str, Any]:
    tools = {
        tool: results[(record.image_id, tool, key)]
        for tool, key in record.tools.items()
        if record.image_id is not None and (record.image_id, tool, key) in results
    }
    out = {
        "path": record.path,
        "sha256": image.sha256 if image else None,
        "width": image.width if image else None,
        "height": image.height if image else None,
        "status": record.status,
        "error": record.error,
        "schema": record.schema_name,
        "schema_version": record.schema_version,
        "data": record.data,
        "provenance": record.provenance,
        "tools": tools,
        "llm": record.llm,
    }
    if with_history:
        out |= {"record_id": record.id, "is_current": record.is_current, "created_at": record.created_at}
    return out


def write_export(
    store: Store,
    fmt: str,
    output: str | Path | None = None,
    schema_name: str | None = None,
    all_versions: bool = False,
    stdout: IO[str] | None = None,
) -> int:
    """Write the export to `output` (or `stdout` for jsonl/csv); returns the number of records written."""
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"unknown export format {fmt!r}: use {', '.join(EXPORT_FORMATS)}")
    records = export_dicts(store, schema_name, all_versions)
    if fmt == "parquet":
        if output is None:
            raise UsageError("parquet export needs -o FILE")
        return _write_parquet(records, Path(output))
    if output is None:
        if stdout is None:
            raise UsageError("no output: pass -o FILE")
        return _write_text(fmt, records, stdout, _data_fields(store, schema_name))
    with open(output, "w", encoding="utf-8", newline="") as handle:
        return _write_text(fmt, records, handle, _data_fields(store, schema_name))


def _write_text(fmt: str, records: Iterator[dict[str, Any]], handle: IO[str], fields: list[str]) -> int:
    count = 0
    if fmt == "jsonl":
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            count += 1
        return count
    writer = csv.writer(handle)
    header = ["path", "sha256", "width", "height", "status", "error", "schema", "schema_version"]
    writer.writerow(header + [f"data.{name}" for name in fields] + ["llm_cost_usd", "provenance", "tools"])
    for record in records:
        data = record["data"] or {}
        writer.writerow(
            [record[key] for key in header]
            + [_csv_cell(data.get(name)) for name in fields]
            + [
                (record["llm"] or {}).get("cost_usd"),
                json.dumps(record["provenance"], ensure_ascii=False),
                json.dumps(record["tools"], ensure_ascii=False),
            ]
        )
        count += 1
    return count


def _csv_cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value


def _data_fields(store: Store, schema_name: str | None) -> list[str]:
    """Top-level data fields of the stored schema versions (in first-seen order)."""
    statement = select(RecordSchemaRow).order_by(col(RecordSchemaRow.created_at))
    if schema_name:
        statement = statement.where(RecordSchemaRow.name == schema_name)
    with store.read() as session:
        versions = session.exec(statement).all()
    return list(dict.fromkeys(name for v in versions for name in v.json_schema.get("properties", {})))


def _write_parquet(records: Iterator[dict[str, Any]], output: Path) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise UsageError("parquet export needs pyarrow: pip install 'visextract[parquet]'") from None
    schema = pa.schema(
        [(name, pa.string()) for name in ("path", "sha256")]
        + [("width", pa.int64()), ("height", pa.int64())]
        + [(name, pa.string()) for name in ("status", "error", "schema", "schema_version")]
        + [(name, pa.string()) for name in ("data", "provenance", "tools", "llm")]  # JSON text
    )
    count = 0
    with pq.ParquetWriter(str(output), schema) as writer:
        for chunk in _chunks(records, _BATCH):
            rows = [
                {
                    name: json.dumps(record[name], ensure_ascii=False)
                    if name in ("data", "provenance", "tools", "llm")
                    else record[name]
                    for name in schema.names
                }
                for record in chunk
            ]
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
            count += len(rows)
    return count


def _chunks(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
