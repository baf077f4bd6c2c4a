"""Typed SQL views: one per schema, its top-level fields as typed columns, current records only.

    SELECT path, color, license FROM vehicle WHERE color = 'red';

A view is named after its schema; a schema whose name is not a plain identifier, or clashes with a
visextract table, gets `records_<name>`. Fixed columns come first (record_id, path, sha256, status,
error, schema_version, created_at); a field with the same name as one of them is called `data_<field>`.

Each scalar field (integer, number, boolean, string) also gets an expression index on `record`: the
very expression the view computes (`CAST(json_extract(data, '$."f"') AS INTEGER)` on SQLite,
`((data->>'f')::bigint)` on PostgreSQL), partial on the view's own filter, so `WHERE face_count > 0`
on a million records is an index range scan, not a million JSON parses. They are made and dropped with
the view, for built-in and user schemas alike, and named `vx_<hash of the schema name>_<field>_<hash>`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from visextract.schemas.base import RecordSchema

TABLE_NAMES = frozenset(
    {"image", "image_path", "run", "tool_result", "record", "llm_call", "record_schema", "schema_migration"}
)
FIXED_COLUMNS = ("record_id", "path", "sha256", "status", "error", "schema_version", "created_at")
INDEXED_KINDS = frozenset({"integer", "real", "boolean", "text"})

log = logging.getLogger(__name__)


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
    """(Re)create the schema's view and its field indexes inside the caller's transaction."""
    view = typed_view(schema)
    quote = connection.dialect.identifier_preparer.quote
    postgres = connection.dialect.name == "postgresql"
    expressions = [
        "r.id AS record_id",
        "r.path AS path",
        "(SELECT i.sha256 FROM image i WHERE i.id = r.image_id) AS sha256",
        "r.status AS status",
        "r.error AS error",
        "r.schema_version AS schema_version",
        "r.created_at AS created_at",
    ]
    for field in schema.field_names:
        column = f"data_{field}" if field in FIXED_COLUMNS else field
        expressions.append(f"{_field_sql(field, view.columns[column], postgres, 'r.')} AS {quote(column)}")
    name = quote(view.view_name)
    connection.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
    connection.exec_driver_sql(
        # sha256 as a scalar subquery, not a LEFT JOIN: SQLite would otherwise look up the image of every
        # row even for `SELECT count(*) ... WHERE field > 0`, which the field index alone can answer
        f"CREATE VIEW {name} AS SELECT {', '.join(expressions)} FROM record r WHERE {_view_filter(schema.name, 'r.')}"
    )
    _create_field_indexes(connection, schema, view)
    return view


def _view_filter(schema_name: str, prefix: str) -> str:
    literal = schema_name.replace("'", "''")
    return f"{prefix}schema_name = '{literal}' AND {prefix}is_current AND NOT {prefix}missing"


def field_indexes(schema: RecordSchema, dialect: str) -> dict[str, str]:
    """{index name: CREATE INDEX statement} for the schema's scalar fields, matching its view exactly."""
    view = typed_view(schema)
    postgres = dialect == "postgresql"
    owner = _index_prefix(schema.name)
    indexes = {}
    for field in schema.field_names:
        column = f"data_{field}" if field in FIXED_COLUMNS else field
        if view.columns[column] not in INDEXED_KINDS:
            continue
        expression = _field_sql(field, view.columns[column], postgres)
        # schema_name first although the index holds one schema: without statistics SQLite prefers an index
        # that matches more of the view's terms, and would otherwise pick `record_by_status (schema_name=?)`
        definition = f"ON record (schema_name, ({expression})) WHERE {_view_filter(schema.name, '')}"
        name = f"{owner}{re.sub(r'[^a-z0-9_]', '_', column.lower())[:30]}_{_short_hash(definition)}"
        indexes[name] = f'CREATE INDEX "{name}" {definition}'
    return indexes


def _create_field_indexes(connection: Connection, schema: RecordSchema, view: TypedView) -> None:
    """Make the indexes the view's current fields need and drop this schema's indexes it no longer has.

    An index that cannot be built (PostgreSQL: a stored value that does not cast to the field's current
    type, left by an older schema version) is skipped with a warning: the view still works, unindexed.
    """
    wanted = field_indexes(schema, connection.dialect.name)
    owner = _index_prefix(schema.name)
    if connection.dialect.name == "postgresql":
        existing_sql = "SELECT indexname FROM pg_indexes WHERE tablename = 'record' AND schemaname = current_schema()"
    else:
        existing_sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'record'"
    existing = {row[0] for row in connection.exec_driver_sql(existing_sql) if row[0].startswith(owner)}
    for name in sorted(existing - wanted.keys()):
        connection.exec_driver_sql(f'DROP INDEX IF EXISTS "{name}"')
    for name in sorted(wanted.keys() - existing):
        connection.exec_driver_sql("SAVEPOINT vx_field_index")
        try:
            connection.exec_driver_sql(wanted[name])
        except DBAPIError as exc:
            connection.exec_driver_sql("ROLLBACK TO SAVEPOINT vx_field_index")
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            log.warning(
                "view %s: no index on %s (%s); queries on it still work, unindexed", view.view_name, name, reason
            )
        connection.exec_driver_sql("RELEASE SAVEPOINT vx_field_index")


def _index_prefix(schema_name: str) -> str:
    return f"vx_{_short_hash(schema_name)}_"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _field_sql(field: str, kind: str, postgres: bool, prefix: str = "") -> str:
    """The typed value of a JSON field, as the view computes it (and its index must repeat exactly)."""
    key = field.replace("'", "''")
    if postgres:
        text = f"({prefix}data->>'{key}')"
        return {
            "integer": f"{text}::bigint",
            "real": f"{text}::double precision",
            "boolean": f"{text}::boolean",
            "text": text,
        }.get(kind, f"({prefix}data->'{key}')")
    value = f"json_extract({prefix}data, '$.\"{key}\"')"
    return {"integer": f"CAST({value} AS INTEGER)", "real": f"CAST({value} AS REAL)"}.get(kind, value)
