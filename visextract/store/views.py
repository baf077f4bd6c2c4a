"""Typed SQL views: one per schema, its top-level fields as typed columns, current records only.

    SELECT path, color, license FROM vehicle WHERE color = 'red';

A view is named after its schema; a schema whose name is not a plain identifier, or clashes with a
visextract table, gets `records_<name>`. Fixed columns come first (record_id, path, sha256, status,
error, schema_version, created_at); a field with the same name as one of them is called `data_<field>`.

Each scalar field is indexed so that filters stay fast at a million records, partial on the view's own
filter (its schema, current, not missing), for built-in and user schemas alike:
- SQLite: an index on the very expression the view computes (`CAST(json_extract(data, '$."f"') AS
  INTEGER)`); counting through it never reads the table.
- PostgreSQL: numbers and booleans live in a stored generated column of `record` that the view selects,
  indexed, so `count(*) ... WHERE face_count > 0` is an index-only scan (an index on an expression over
  `data` would still visit each matching row in the table); text gets a hash index on `(data->>'f')`
  for equality (a btree entry cannot hold a long text). Values of the wrong JSON type read as NULL.
They are made and dropped with the view and named `vx_<hash of the schema name>_<column>_...`.
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
    """(Re)create the schema's view, its generated columns (PostgreSQL) and its field indexes, inside the
    caller's transaction."""
    view = typed_view(schema)
    quote = connection.dialect.identifier_preparer.quote
    fields = field_plan(schema, connection.dialect.name)
    name = quote(view.view_name)
    connection.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
    stored = _sync_generated_columns(connection, schema, fields)
    expressions = [
        "r.id AS record_id",
        "r.path AS path",
        # a scalar subquery, not a LEFT JOIN: SQLite would otherwise look up the image of every row even
        # for `SELECT count(*) ... WHERE field > 0`, which the field's index alone can answer
        "(SELECT i.sha256 FROM image i WHERE i.id = r.image_id) AS sha256",
        "r.status AS status",
        "r.error AS error",
        "r.schema_version AS schema_version",
        "r.created_at AS created_at",
        *(f"{f.view_sql(f.generated_name in stored)} AS {quote(f.column)}" for f in fields),
    ]
    connection.exec_driver_sql(
        f"CREATE VIEW {name} AS SELECT {', '.join(expressions)} FROM record r WHERE {_view_filter(schema.name, 'r.')}"
    )
    _sync_field_indexes(connection, schema, [f for f in fields if f.indexed], stored)
    return view


@dataclass(frozen=True)
class ViewField:
    """One field of a typed view: how the view computes it and how it is indexed."""

    field: str  # the key in `data`
    column: str  # the view's column name
    kind: str  # integer | real | boolean | text | json
    postgres: bool
    schema_name: str

    @property
    def expression(self) -> str:
        """Its value from `data` (no table prefix), as indexes and generated columns repeat it."""
        return _field_sql(self.field, self.kind, self.postgres)

    @property
    def generated_name(self) -> str | None:
        """PostgreSQL numbers and booleans: the stored generated column that holds the value."""
        if self.postgres and self.kind in _PG_TYPES:
            return f"{_owner_prefix(self.schema_name)}{_identifier(self.column)}_{self.kind}"
        return None

    @property
    def indexed(self) -> bool:
        return self.kind in INDEXED_KINDS

    def view_sql(self, stored: bool) -> str:
        return f'r."{self.generated_name}"' if stored else _field_sql(self.field, self.kind, self.postgres, "r.")

    def index_sql(self, stored: bool, postgres: bool) -> tuple[str, str]:
        """(index name, CREATE INDEX statement), the index keyed on exactly what the view selects."""
        where = _view_filter(self.schema_name, "")
        if stored:
            definition = f'ON record ("{self.generated_name}") WHERE {where}'
        elif postgres and self.kind == "text":
            # a hash index: equality is what text filters use, and a btree entry cannot hold a long text
            definition = f"ON record USING hash (({self.expression})) WHERE {where}"
        elif postgres:  # the generated column could not be added
            definition = f"ON record (({self.expression})) WHERE {where}"
        else:
            # SQLite: schema_name first although the index holds one schema: without statistics SQLite
            # prefers the index matching more of the view's terms, and would otherwise pick
            # `record_by_status`. (PostgreSQL drops terms its partial index implies, and would then
            # see an index whose first column it cannot use.)
            definition = f"ON record (schema_name, ({self.expression})) WHERE {where}"
        name = f"{_owner_prefix(self.schema_name)}{_identifier(self.column)}_{_short_hash(definition)}"
        return name, f'CREATE INDEX "{name}" {definition}'


def field_plan(schema: RecordSchema, dialect: str) -> list[ViewField]:
    """The schema's fields as its view computes them on `dialect`."""
    view = typed_view(schema)
    columns = [(field, f"data_{field}" if field in FIXED_COLUMNS else field) for field in schema.field_names]
    return [
        ViewField(field, column, view.columns[column], dialect == "postgresql", schema.name)
        for field, column in columns
    ]


def _sync_generated_columns(connection: Connection, schema: RecordSchema, fields: list[ViewField]) -> set[str]:
    """PostgreSQL: make `record` hold a stored generated column for each numeric or boolean field, so that
    counting and range filters are index-only scans (an index on an expression over `data` would still
    visit every matching row in the table). Columns this schema no longer has are dropped. Returns the
    generated columns in place.

    Adding them rewrites the table once, under an exclusive lock: a new field costs seconds per million
    records, once. If that fails, the view computes the fields from `data` instead."""
    if connection.dialect.name != "postgresql":
        return set()
    owner = _owner_prefix(schema.name)
    wanted = {f.generated_name: f for f in fields if f.generated_name}
    existing = {
        row[0]
        for row in connection.exec_driver_sql(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'record' AND table_schema = current_schema()"
        )
        if row[0].startswith(owner)
    }
    for name in sorted(existing - wanted.keys()):
        connection.exec_driver_sql(f'ALTER TABLE record DROP COLUMN IF EXISTS "{name}"')
    adding = sorted(wanted.keys() - existing)
    if not adding:
        return existing & wanted.keys()
    literal = schema.name.replace("'", "''")
    clauses = [
        f'ADD COLUMN "{name}" {_PG_TYPES[wanted[name].kind]} GENERATED ALWAYS AS '
        f"(CASE WHEN schema_name = '{literal}' THEN {wanted[name].expression} END) STORED"
        for name in adding
    ]
    if _with_savepoint(connection, f"ALTER TABLE record {', '.join(clauses)}", f"view of {schema.name}: no columns"):
        return set(wanted)
    return existing & wanted.keys()


def _sync_field_indexes(
    connection: Connection, schema: RecordSchema, fields: list[ViewField], stored: set[str]
) -> None:
    """Make the indexes the view's fields need; drop this schema's indexes it no longer has."""
    postgres = connection.dialect.name == "postgresql"
    wanted = dict(f.index_sql(f.generated_name in stored, postgres) for f in fields)
    owner = _owner_prefix(schema.name)
    if postgres:
        existing_sql = "SELECT indexname FROM pg_indexes WHERE tablename = 'record' AND schemaname = current_schema()"
    else:
        existing_sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'record'"
    existing = {row[0] for row in connection.exec_driver_sql(existing_sql) if row[0].startswith(owner)}
    for name in sorted(existing - wanted.keys()):
        connection.exec_driver_sql(f'DROP INDEX IF EXISTS "{name}"')
    for name in sorted(wanted.keys() - existing):
        _with_savepoint(connection, wanted[name], f"view of {schema.name}: no index {name}")


def _with_savepoint(connection: Connection, statement: str, what: str) -> bool:
    """Run `statement`; if the database refuses it, undo just that, warn, and carry on (the view still
    works, only slower)."""
    connection.exec_driver_sql("SAVEPOINT vx_view_field")
    try:
        connection.exec_driver_sql(statement)
    except DBAPIError as exc:
        connection.exec_driver_sql("ROLLBACK TO SAVEPOINT vx_view_field")
        log.warning("%s (%s); queries still work, unindexed", what, str(exc.orig).strip().splitlines()[0])
        return False
    finally:
        connection.exec_driver_sql("RELEASE SAVEPOINT vx_view_field")
    return True


def _view_filter(schema_name: str, prefix: str) -> str:
    literal = schema_name.replace("'", "''")
    return f"{prefix}schema_name = '{literal}' AND {prefix}is_current AND NOT {prefix}missing"


def _owner_prefix(schema_name: str) -> str:
    """How this schema's indexes and generated columns are named: `vx_<hash of the schema name>_`."""
    return f"vx_{_short_hash(schema_name)}_"


def _identifier(column: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", column.lower())[:30]


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


_PG_TYPES = {"integer": "bigint", "real": "double precision", "boolean": "boolean"}


def _field_sql(field: str, kind: str, postgres: bool, prefix: str = "") -> str:
    """The typed value of a JSON field of `data`. On PostgreSQL a value of another JSON type (left by an
    older schema version) is NULL rather than an error, so that no stored row can fail an index build
    or an insert."""
    key = field.replace("'", "''")
    if postgres:
        value, text = f"({prefix}data->'{key}')", f"({prefix}data->>'{key}')"
        typed = {
            "integer": f"CASE WHEN json_typeof({value}) = 'number' AND {text} ~ '^-?[0-9]{{1,18}}$' "
            f"THEN {text}::bigint END",
            "real": f"CASE WHEN json_typeof({value}) = 'number' THEN {text}::double precision END",
            "boolean": f"CASE WHEN json_typeof({value}) = 'boolean' THEN {text}::boolean END",
            "text": text,
        }
        return f"({typed[kind]})" if kind in typed else value
    value = f"json_extract({prefix}data, '$.\"{key}\"')"
    return {"integer": f"CAST({value} AS INTEGER)", "real": f"CAST({value} AS REAL)"}.get(kind, value)
