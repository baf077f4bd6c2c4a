"""What a database holds, described for whoever writes queries against it: the chat agent, an MCP client.

catalog = schema_catalog(store)
catalog["dialect"], [view["view"] for view in catalog["typed_views"]]     # 'sqlite', ['scene', 'vehicle']
schema_document(store, "scene")["json_schema"]["properties"]["face_count"]
"""

from __future__ import annotations

from typing import Any

from visextract.schemas.base import RecordSchema
from visextract.store.store import Store
from visextract.store.views import typed_view

TABLES = {
    "record": "every record version: id, path, schema_name, status, error, data (JSON), provenance (JSON), "
    "is_current, missing; the records users see are `is_current AND NOT missing` (as in the typed views)",
    "tool_result": "raw tool outputs per image: image_id, tool, results (JSON list)",
    "image": "id, sha256, width, height, format; image_path maps path -> image_id (missing_at set when gone)",
}


def schema_catalog(store: Store) -> dict[str, Any]:
    """The SQL dialect, each schema's typed view (columns, field descriptions, record counts) and the tables."""
    counts = store.status_counts()
    views = [
        _view_entry(schema) | {"records_by_status": counts.get(schema.name, {})} for schema in store.latest_schemas()
    ]
    return {"dialect": store.dialect, "typed_views": views, "tables": TABLES}


def schema_document(store: Store, name: str) -> dict[str, Any] | None:
    """One schema's latest version: its typed view and its JSON Schema (what `record.data` follows); None if
    the database has no records of that schema."""
    for schema in store.latest_schemas():
        if schema.name == name:
            return _view_entry(schema) | {"version": schema.version, "json_schema": schema.json_schema}
    return None


def _view_entry(schema: RecordSchema) -> dict[str, Any]:
    view = typed_view(schema)
    properties = schema.json_schema.get("properties", {})
    return {
        "schema": schema.name,
        "description": schema.description,
        "view": view.view_name,
        "columns": view.columns,
        "fields": {name: properties.get(name, {}).get("description", "") for name in schema.field_names},
    }
