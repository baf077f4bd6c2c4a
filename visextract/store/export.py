"""Export: one object per current record, in the shape DESIGN.md promises, as JSONL, CSV or Parquet."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlmodel import col, select

from visextract.errors import UsageError
from visextract.store.parquet import write_parquet
from visextract.store.tables import ImageRow, RecordRow, RecordSchemaRow, ToolResultRow, listed

if TYPE_CHECKING:
    from visextract.store.store import Store

EXPORT_FORMATS = ("jsonl", "csv", "parquet", "gold")
_BATCH = 500


def export_dicts(
    store: Store,
    schema_name: str | None = None,
    all_versions: bool = False,
    with_ids: bool = False,
    record_ids: list[int] | None = None,
    include_missing: bool = False,
) -> Iterator[dict[str, Any]]:
    """Records as export objects: path, sha256, size, status, error, schema, data, provenance, tools, llm,
    version, review.

    By default the records users see: current, of content some path holds now; `include_missing` adds
    those whose every path is missing, `all_versions` every record ever made (history). `all_versions` and
    `with_ids` add record_id, is_current, missing and created_at. `record_ids` limits the export to those.
    """
    statement = (
        select(RecordRow, ImageRow)
        .join(ImageRow, col(ImageRow.id) == col(RecordRow.image_id), isouter=True)
        .where(*_exported(schema_name, all_versions, include_missing or record_ids is not None))
        .order_by(col(RecordRow.path), col(RecordRow.id))
    )
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


def _exported(schema_name: str | None, all_versions: bool, include_missing: bool) -> list[Any]:
    """The conditions on `record` for the records an export holds."""
    conditions = [] if all_versions else list(listed(include_missing))
    if schema_name:
        conditions.append(col(RecordRow.schema_name) == schema_name)
    return conditions


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
        "version": record.version,
        "review": record.review,
    }
    if with_history:
        out |= {
            "record_id": record.id,
            "is_current": record.is_current,
            "missing": record.missing,
            "created_at": record.created_at,
        }
    return out


def records_for(store: Store, path_or_sha: str, schema_name: str | None = None) -> list[dict[str, Any]]:
    """The current records of the content at a path (or of a sha256 / unique prefix), in the export shape
    plus `"paths"`: every path holding that content now (and `"missing_paths"` when some went missing).
    A record whose every path is missing is included: it was asked for by name."""
    rows = store.find_records(path_or_sha, schema_name)
    if not rows:
        return []
    subjects = {row.id: row.subject for row in rows}
    found = []
    for record in export_dicts(store, record_ids=list(subjects), with_ids=True):
        subject = subjects[record.pop("record_id")]
        missing = record.pop("missing")
        record.pop("is_current"), record.pop("created_at")
        if record["sha256"] is None:  # an unreadable file: known only by its path
            record["paths"] = [] if missing else [record["path"]]
            missing_paths = [record["path"]] if missing else []
        else:
            record["paths"] = store.paths_of(subject)
            missing_paths = store.paths_of(subject, missing=True)
        if missing_paths:
            record["missing_paths"] = missing_paths
        found.append(record)
    return found


def write_export(
    store: Store,
    fmt: str,
    output: str | Path | None = None,
    schema_name: str | None = None,
    all_versions: bool = False,
    stdout: IO[str] | None = None,
    include_missing: bool = False,
) -> int:
    """Write the export to `output` (or `stdout` for jsonl/csv); returns the number of records written.
    A file that cannot be written is a UsageError naming it, raised before any record is read."""
    check_export_format(fmt)
    store.check_schema_name(schema_name)
    if output is not None:
        _check_writable(Path(output))
    if fmt == "parquet":
        if output is None:
            raise UsageError("parquet export needs -o FILE")
        return write_parquet(
            lambda: export_dicts(store, schema_name, all_versions, include_missing=include_missing),
            Path(output),
            [version.json_schema for version in _schema_versions(store, schema_name, all_versions, include_missing)],
            with_history=all_versions,
            extra_tools=_stored_tool_names(store),
        )
    if fmt == "gold":
        records = gold_lines(store, schema_name, all_versions, include_missing)
    else:
        records = export_dicts(store, schema_name, all_versions, include_missing=include_missing)
    if output is None:
        if stdout is None:
            raise UsageError("no output: pass -o FILE")
        return _write_text(fmt, records, stdout, _data_fields(store, schema_name))
    with open(output, "w", encoding="utf-8", newline="") as handle:
        return _write_text(fmt, records, handle, _data_fields(store, schema_name))


def gold_lines(
    store: Store, schema_name: str | None = None, all_versions: bool = False, include_missing: bool = False
) -> Iterator[dict[str, Any]]:
    """The records a person reviewed, as gold lines for `visextract eval`: `{"path", "sha256", "data"}`.

    A reviewed record's fields were all checked by its reviewer (edited, or accepted as they were), so its
    whole `data` is gold. A gold file is for one schema: `schema_name` may be left out only when the
    database has one.
    """
    if all_versions:
        raise UsageError("--format gold writes the current reviewed records: leave out --all-versions")
    if schema_name is None:
        names = store.schema_names()
        if len(names) > 1:
            raise UsageError(f"a gold file holds one schema's records: pass --schema ({', '.join(names)})")
    review = col(RecordRow.review)
    statement = (
        select(RecordRow.path, ImageRow.sha256, RecordRow.data)
        .join(ImageRow, col(ImageRow.id) == col(RecordRow.image_id), isouter=True)
        .where(*listed(include_missing), review.isnot(None))
        .order_by(col(RecordRow.path))
    )
    if schema_name:
        statement = statement.where(RecordRow.schema_name == schema_name)

    def lines() -> Iterator[dict[str, Any]]:  # the checks above run at the call, before any output
        with store.read() as session:
            for path, sha256, data in session.exec(statement.execution_options(yield_per=_BATCH)):
                yield {"path": path, "sha256": sha256, "data": data or {}}

    return lines()


def check_export_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"unknown export format {fmt!r}: use {', '.join(EXPORT_FORMATS)}")


def _check_writable(output: Path) -> None:
    if output.is_dir():
        raise UsageError(f"cannot write {output}: it is a folder; pass a file name, e.g. {output / 'records.jsonl'}")
    if not output.parent.is_dir():
        raise UsageError(f"cannot write {output}: folder {output.parent} does not exist")
    if not os.access(output if output.exists() else output.parent, os.W_OK):
        raise UsageError(f"cannot write {output}: permission denied")


def _write_text(fmt: str, records: Iterator[dict[str, Any]], handle: IO[str], fields: list[str]) -> int:
    count = 0
    if fmt in ("jsonl", "gold"):
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            count += 1
        return count
    writer = csv.writer(handle)
    header = ["path", "sha256", "width", "height", "status", "error", "schema", "schema_version"]
    writer.writerow(
        header + [f"data.{name}" for name in fields] + ["llm_cost_usd", "provenance", "tools", "version", "review"]
    )
    for record in records:
        data = record["data"] or {}
        writer.writerow(
            [record[key] for key in header]
            + [_csv_cell(data.get(name)) for name in fields]
            + [
                (record["llm"] or {}).get("cost_usd"),
                json.dumps(record["provenance"], ensure_ascii=False),
                json.dumps(record["tools"], ensure_ascii=False),
                record["version"],
                None if record["review"] is None else json.dumps(record["review"], ensure_ascii=False),
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


def _schema_versions(
    store: Store, schema_name: str | None, all_versions: bool, include_missing: bool
) -> list[RecordSchemaRow]:
    """The schema versions of the records an export holds, oldest first."""
    with store.read() as session:
        used = set(
            session.exec(
                select(RecordRow.schema_name, RecordRow.schema_version)
                .where(*_exported(schema_name, all_versions, include_missing))
                .distinct()
            )
        )
        versions = session.exec(select(RecordSchemaRow).order_by(col(RecordSchemaRow.created_at))).all()
    return [version for version in versions if (version.name, version.version) in used]


def _stored_tool_names(store: Store) -> list[str]:
    with store.read() as session:
        return sorted(session.exec(select(ToolResultRow.tool).distinct()))
