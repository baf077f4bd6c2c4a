"""Typed SQL views: one per schema, its top-level fields as typed columns, the records users see only
(current, of content some path holds now).

    SELECT path, color, license FROM vehicle WHERE color = 'red';

A view is named after its schema; a schema whose name is not a plain identifier, or clashes with a
visextract table, gets `records_<name>`. Fixed columns come first (record_id, path, sha256, status,
error, schema_version, created_at); a field with the same name as one of them is called `data_<field>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from visextract.schemas.base import RecordSchema

TABLE_NAMES = frozenset(
    {"image", "image_path", "run", "tool_result", "record", "llm_call", "record_schema", "schema_migration"}
)
FIXED_COLUMNS = ("record_id", "path", "sha256", "status", "error", "schema_version", "created_at")


@dataclass(frozen=True)
class TypedView:
    schema_name: str
    view_name: str
    columns: dict[str, str]  # column -> SQL type as created


def view_name(schema_name: str) -> str:
    plain = re.fullmatch(r"[a-z_][a-z0-9_]*", schema_name) is not None
    return schema_name if plain and schema_name not in TABLE_NAMES else "records_" + re.sub(r"\W", "_", schema_name)


def typed_view(schema: RecordSchema) -> TypedView:
    properties = schema.json_schema.get("properties", {})
    columns = {"record_id": "integer", "path": "text", "sha256": "text", "status": "text", "error": "text",
               "schema_version": "text", "created_at": "timestamp"}  # fmt: skip
    for field in schema.field_names:
        column = f"data_{field}" if field in FIXED_COLUMNS else field
        columns[column] = _json_kind(properties.get(field, {}))
    return TypedView(schema.name, view_name(schema.name), columns)


def _json_kind(prop: dict[str, Any]) -> str:
    kinds = [p.get("type") for p in prop.get("anyOf", [prop]) if p.get("type") not in (None, "null")]
    if len(kinds) != 1:
        return "json" if any(k in ("array", "object") for k in kinds) or "$ref" in str(prop) else "text"
    return {"integer": "integer", "number": "real", "boolean": "boolean", "string": "text"}.get(kinds[0], "json")


def create_typed_view(connection: Connection, schema: RecordSchema) -> TypedView:
    """(Re)create the schema's view inside the caller's transaction."""
    view = typed_view(schema)
    quote = connection.dialect.identifier_preparer.quote
    postgres = connection.dialect.name == "postgresql"
    expressions = [
        "r.id AS record_id",
        "r.path AS path",
        "i.sha256 AS sha256",
        "r.status AS status",
        "r.error AS error",
        "r.schema_version AS schema_version",
        "r.created_at AS created_at",
    ]
    for field in schema.field_names:
        column = f"data_{field}" if field in FIXED_COLUMNS else field
        expressions.append(f"{_field_sql(field, view.columns[column], postgres)} AS {quote(column)}")
    name = quote(view.view_name)
    literal = schema.name.replace("'", "''")
    connection.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
    connection.exec_driver_sql(
        f"CREATE VIEW {name} AS SELECT {', '.join(expressions)} FROM record r "
        f"LEFT JOIN image i ON i.id = r.image_id "
        f"WHERE r.schema_name = '{literal}' AND r.is_current AND NOT r.missing"
    )
    return view


def _field_sql(field: str, kind: str, postgres: bool) -> str:
    key = field.replace("'", "''")
    if postgres:
        text = f"(r.data->>'{key}')"
        return {
            "integer": f"{text}::bigint",
            "real": f"{text}::double precision",
            "boolean": f"{text}::boolean",
            "text": text,
        }.get(kind, f"(r.data->'{key}')")
    value = f"json_extract(r.data, '$.\"{key}\"')"
    return {"integer": f"CAST({value} AS INTEGER)", "real": f"CAST({value} AS REAL)"}.get(kind, value)
