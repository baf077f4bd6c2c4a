"""Parquet export with nested types: `data`, `provenance`, `tools`, `llm` and `review` are Arrow structs and
lists, not JSON strings, so pyarrow, DuckDB, Polars or Spark can query inside them.

    visextract export --format parquet -o records.parquet
    duckdb -c "SELECT path, data.face_count, tools.classifier[1].label FROM 'records.parquet'"
    pyarrow.parquet.read_table("records.parquet").column("tools").type   # struct<classifier: list<struct<...>>>

The columns are those of the jsonl export, in its order and row order: path, sha256, width, height, status,
error, schema, schema_version, data, provenance, tools, llm, version, review (plus record_id, is_current,
missing, created_at with `--all-versions`). Their types come from schemas, never from guessing at values:

- `data`: a struct with one field per schema field, built from the JSON Schema of every schema version in
  the export (string, integer, number, boolean, array, object with properties, `additionalProperties`
  maps, `anyOf`/`oneOf` with null, enums, `$ref`). A record of another schema has null in the fields it
  does not have.
- `provenance`: a struct with the same field names, each `{source, evidence: [{tool, index, text, box}],
  verified, note}`.
- `tools`: a struct with one field per tool of the registry (`tools.classifier`, `tools.faces`...), each a
  list of that tool's result model (`{label, score}`, `{box, score}`...); null when the tool did not run.
- `llm`: `{model, attempts, prompt_tokens, completion_tokens, cost_usd}`; `review`: `{by, at, fields,
  accepted}`; `created_at`: a UTC timestamp.

A value whose type Arrow cannot express (an `anyOf` of a string and a number, a free-form object, a recursive
model), or whose types clash between the schemas exported together (a field `size` that is a number in one
schema and a string in another), is stored as JSON text in that place only, with Arrow's `arrow.json` type
(Parquet's JSON logical type; DuckDB reads it as JSON). If a stored value does not fit its schema's type (a
database written by an older version, say), that place becomes JSON text too and the file is written again,
with a warning: the export never drops or changes a value.

Records are read and written in batches (`BATCH_ROWS` per row group), never all at once; the file appears
under its name only once it is complete.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visextract.errors import UsageError

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("visextract")

BATCH_ROWS = 2000
COLUMNS = (
    "path", "sha256", "width", "height", "status", "error", "schema", "schema_version",
    "data", "provenance", "tools", "llm", "version", "review",
)  # fmt: skip
HISTORY_COLUMNS = ("record_id", "is_current", "missing", "created_at")

# A record's review (DESIGN.md, "Human review"): who, when, the fields edited and those accepted unchanged.
REVIEW_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "by": {"type": "string"},
        "at": {"type": "string"},
        "fields": {"type": "array", "items": {"type": "string"}},
        "accepted": {"type": "array", "items": {"type": "string"}},
    },
}

Place = tuple[str, ...]  # where a value sits: ("data", "labels", "[]"); "[]" list items, "{}" map values
_ITEMS, _VALUES = "[]", "{}"
_MAX_REWRITES = 50


def write_parquet(
    records: Callable[[], Iterator[dict[str, Any]]],
    output: Path,
    data_schemas: Sequence[Mapping[str, Any]],
    with_history: bool = False,
    extra_tools: Iterable[str] = (),
) -> int:
    """Write the export records that `records()` yields to `output`; returns how many were written.

    `data_schemas` are the JSON Schemas of the schema versions in the export (oldest first: their field order
    is the column order), `extra_tools` tools without a registry entry (stored as JSON text).
    `records` is called again if a value does not fit its type (see the module docstring).
    """
    pa, pq = _pyarrow()
    as_json: set[Place] = set()
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    for _ in range(_MAX_REWRITES):
        schema = export_arrow_schema(data_schemas, with_history, tuple(extra_tools), frozenset(as_json))
        try:
            count = _write(records(), partial, schema, pa, pq)
        except _Misfit as misfit:
            partial.unlink(missing_ok=True)
            where = _dotted(misfit.path)
            log.warning("parquet: %s of %s does not fit its schema (%s); writing %s as JSON text", where,
                        misfit.record, misfit.reason, where)  # fmt: skip
            as_json.add(misfit.path)
            continue
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, output)
        return count
    raise RuntimeError(f"parquet export: values still do not fit after {_MAX_REWRITES} rewrites")  # a bug


def export_arrow_schema(
    data_schemas: Sequence[Mapping[str, Any]],
    with_history: bool = False,
    extra_tools: Sequence[str] = (),
    as_json: frozenset[Place] = frozenset(),
) -> pa.Schema:
    """The Arrow schema of the export (see the module docstring); places in `as_json` are JSON text."""
    pa, _ = _pyarrow()
    from visextract.schemas.record import FieldProvenance, LlmUsage
    from visextract.tools.registry import TOOL_SPECS

    fields: dict[str, pa.DataType] = {}
    for root in data_schemas:
        for name, node in (root.get("properties") or {}).items():
            found = arrow_type(node, root, ("data", name), as_json)
            fields[name] = merge_types(fields[name], found) if name in fields else found
    data = _struct_or_json(fields, ("data",), as_json)
    field_provenance = FieldProvenance.model_json_schema()
    provenance = _struct_or_json(
        {name: arrow_type(field_provenance, None, ("provenance", name), as_json) for name in fields},
        ("provenance",),
        as_json,
    )
    tools = {
        name: arrow_type(
            {"type": "array", "items": spec.result_type.model_json_schema()}, None, ("tools", name), as_json
        )
        for name, spec in TOOL_SPECS.items()
    } | {name: _json_type() for name in extra_tools if name not in TOOL_SPECS}
    types: dict[str, pa.DataType] = {
        "path": pa.string(),
        "sha256": pa.string(),
        "width": pa.int64(),
        "height": pa.int64(),
        "status": pa.string(),
        "error": pa.string(),
        "schema": pa.string(),
        "schema_version": pa.string(),
        "data": data,
        "provenance": provenance,
        "tools": _struct_or_json(tools, ("tools",), as_json),
        "llm": arrow_type(LlmUsage.model_json_schema(), None, ("llm",), as_json),
        "version": pa.int64(),
        "review": arrow_type(REVIEW_JSON_SCHEMA, None, ("review",), as_json),
    }
    if with_history:
        types |= {
            "record_id": pa.int64(),
            "is_current": pa.bool_(),
            "missing": pa.bool_(),
            "created_at": pa.timestamp("us", tz="UTC"),
        }
    return pa.schema([(name, _at((name,), as_json, kind)) for name, kind in types.items()])


# ---------------------------------------------------------------------------------------------------------------
# JSON Schema -> Arrow types


def arrow_type(
    node: Any, root: Mapping[str, Any] | None, path: Place, as_json: frozenset[Place] = frozenset()
) -> pa.DataType:
    """The Arrow type of values valid for the JSON Schema `node` (`root` resolves `$ref`s; None: `node`)."""
    return _TypeBuilder(root if root is not None else node, as_json).build(node, path, ())


class _TypeBuilder:
    def __init__(self, root: Mapping[str, Any], as_json: frozenset[Place]) -> None:
        self.pa, _ = _pyarrow()
        self.root = root
        self.as_json = as_json

    def build(self, node: Any, path: Place, refs: tuple[str, ...]) -> pa.DataType:
        pa = self.pa
        if path in self.as_json or not isinstance(node, Mapping):
            return _json_type()
        if "$ref" in node:
            ref = str(node["$ref"])
            target = self._resolve(ref)
            if target is None or ref in refs:  # unknown, or a recursive model: no finite Arrow type
                return _json_type()
            return self.build(target, path, (*refs, ref))
        variants = node.get("anyOf") or node.get("oneOf")
        if isinstance(variants, list):
            return self._union(variants, path, refs)
        all_of = node.get("allOf")
        if isinstance(all_of, list):
            return self.build(all_of[0], path, refs) if len(all_of) == 1 else _json_type()
        if "enum" in node or "const" in node:
            return _literal_type([*node.get("enum", []), *([node["const"]] if "const" in node else [])])
        kind = node.get("type")
        if isinstance(kind, list):
            return self._union([{**node, "type": k} for k in kind], path, refs)
        if kind == "string":
            return pa.string()
        if kind == "integer":
            return pa.int64()
        if kind == "number":
            return pa.float64()
        if kind == "boolean":
            return pa.bool_()
        if kind == "array" or "items" in node or "prefixItems" in node:
            items = [*node.get("prefixItems", []), *([node["items"]] if isinstance(node.get("items"), Mapping) else [])]
            if not items:
                return pa.list_(_at((*path, _ITEMS), self.as_json, _json_type()))
            item_type = _merge_all([self.build(item, (*path, _ITEMS), refs) for item in items])
            return pa.list_(item_type)
        if kind == "object" or "properties" in node:
            properties = node.get("properties") or {}
            extra = node.get("additionalProperties")
            if properties and (isinstance(extra, Mapping) or "patternProperties" in node):
                return _json_type()  # named fields and a map at once: no single Arrow type
            if properties:
                return pa.struct([(name, self.build(child, (*path, name), refs)) for name, child in properties.items()])
            if isinstance(extra, Mapping) and extra:
                return pa.map_(pa.string(), self.build(extra, (*path, _VALUES), refs))
        return _json_type()  # a free-form object, `{}` (any value), or only null

    def _union(self, variants: list[Any], path: Place, refs: tuple[str, ...]) -> pa.DataType:
        options = [v for v in variants if not (isinstance(v, Mapping) and v.get("type") == "null")]
        if not options:
            return _json_type()
        return _merge_all([self.build(option, path, refs) for option in options])

    def _resolve(self, ref: str) -> Mapping[str, Any] | None:
        if not ref.startswith("#/"):
            return None
        target: Any = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or part not in target:
                return None
            target = target[part]
        return target if isinstance(target, Mapping) else None


def merge_types(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """One type for values of type `a` or `b`: the same type, structs with the fields of both, lists and maps
    of merged items; anything else clashes and becomes JSON text."""
    pa, _ = _pyarrow()
    if a.equals(b):
        return a
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        merged = {field.name: field.type for field in a}
        for field in b:
            merged[field.name] = merge_types(merged[field.name], field.type) if field.name in merged else field.type
        return pa.struct(list(merged.items()))
    if pa.types.is_list(a) and pa.types.is_list(b):
        return pa.list_(merge_types(a.value_type, b.value_type))
    if pa.types.is_map(a) and pa.types.is_map(b):
        return pa.map_(pa.string(), merge_types(a.item_type, b.item_type))
    return _json_type()


def _merge_all(types: list[pa.DataType]) -> pa.DataType:
    merged = types[0]
    for other in types[1:]:
        merged = merge_types(merged, other)
    return merged


def _literal_type(values: list[Any]) -> pa.DataType:
    pa, _ = _pyarrow()
    values = [v for v in values if v is not None]
    if values and all(isinstance(v, str) for v in values):
        return pa.string()
    if values and all(isinstance(v, bool) for v in values):
        return pa.bool_()
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return pa.int64()
    if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return pa.float64()
    return _json_type()


def _struct_or_json(fields: dict[str, pa.DataType], path: Place, as_json: frozenset[Place]) -> pa.DataType:
    pa, _ = _pyarrow()
    if path in as_json or not fields:  # Parquet has no struct without fields
        return _json_type()
    return pa.struct(list(fields.items()))


def _at(path: Place, as_json: frozenset[Place], kind: pa.DataType) -> pa.DataType:
    return _json_type() if path in as_json else kind


def _json_type() -> pa.DataType:
    pa, _ = _pyarrow()
    return pa.json_()


def _is_json(kind: pa.DataType) -> bool:
    return getattr(kind, "extension_name", None) == "arrow.json"


# ---------------------------------------------------------------------------------------------------------------
# Values -> Arrow


class _Misfit(Exception):
    """A value that does not fit its type: control flow for `write_parquet`, never shown as an error."""

    def __init__(self, path: Place, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason
        self.record = "a record"


def _write(records: Iterator[dict[str, Any]], target: Path, schema: pa.Schema, pa: Any, pq: Any) -> int:
    columns = [(field.name, _converter(field.type, (field.name,)), _storage_type(field.type)) for field in schema]
    count = 0
    with pq.ParquetWriter(str(target), schema) as writer:
        for chunk in _chunks(records, BATCH_ROWS):
            arrays = []
            for (name, convert, stored), kind in zip(columns, schema.types, strict=True):
                try:
                    values = [convert(record.get(name)) for record in chunk]
                except _Misfit as misfit:
                    misfit.record = next(str(r.get("path")) for r in chunk if _misfits(convert, r.get(name)))
                    raise
                array = pa.array(values, type=stored)
                arrays.append(array if stored.equals(kind) else array.cast(kind))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            count += len(chunk)
    return count


def _misfits(convert: Callable[[Any], Any], value: Any) -> bool:
    try:
        convert(value)
    except _Misfit:
        return True
    return False


Converter = Callable[[Any], Any]


def _converter(kind: pa.DataType, path: Place) -> Converter:
    """A function from a JSON value to what pyarrow takes for `kind` (JSON text for JSON places) that raises
    _Misfit for a value that does not fit. Built once per column: one type test per value, not per value and
    type node."""
    import pyarrow as pa

    def misfit(value: Any) -> _Misfit:
        return _Misfit(path, f"{type(value).__name__} {_short(value)} is not {kind}")

    if _is_json(kind):
        return lambda value: None if value is None else json.dumps(value, ensure_ascii=False, default=str)
    if pa.types.is_list(kind):
        item = _converter(kind.value_type, (*path, _ITEMS))

        def convert_list(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, list):
                return [item(element) for element in value]
            raise misfit(value)

        return convert_list
    if pa.types.is_map(kind):
        entry = _converter(kind.item_type, (*path, _VALUES))

        def convert_map(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, dict):
                return [(str(key), entry(element)) for key, element in value.items()]
            raise misfit(value)

        return convert_map
    if pa.types.is_struct(kind):
        fields = [(field.name, _converter(field.type, (*path, field.name))) for field in kind]
        names = frozenset(name for name, _ in fields)

        def convert_struct(value: Any) -> Any:
            if value is None:
                return None
            if not isinstance(value, dict):
                raise misfit(value)
            if not names.issuperset(value):
                unknown = next(key for key in value if key not in names)
                raise _Misfit(path, f"it has {unknown!r}, which its type does not")
            return {name: to_arrow(value.get(name)) for name, to_arrow in fields}

        return convert_struct
    if pa.types.is_timestamp(kind):

        def convert_moment(value: Any) -> Any:
            moment = None if value is None else _datetime(value)
            if value is not None and moment is None:
                raise misfit(value)
            return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)  # the store writes UTC

        return convert_moment
    if pa.types.is_floating(kind):

        def convert_number(value: Any) -> Any:
            if value is None or type(value) is float:
                return value
            if type(value) is int:  # JSON has one number type; bool is not an int here
                return float(value)
            raise misfit(value)

        return convert_number
    exact = {"string": str, "int64": int, "bool": bool}[str(kind)]  # exact types: True is no int64, 1 no bool

    def convert_scalar(value: Any) -> Any:
        if value is None or type(value) is exact:
            return value
        raise misfit(value)

    return convert_scalar


def _datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _storage_type(kind: pa.DataType) -> pa.DataType:
    """`kind` with every JSON place as plain strings (pyarrow builds nested extension arrays only by cast)."""
    import pyarrow as pa

    if _is_json(kind):
        return pa.string()
    if pa.types.is_list(kind):
        return pa.list_(_storage_type(kind.value_type))
    if pa.types.is_map(kind):
        return pa.map_(kind.key_type, _storage_type(kind.item_type))
    if pa.types.is_struct(kind):
        return pa.struct([(field.name, _storage_type(field.type)) for field in kind])
    return kind


def _chunks(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _dotted(path: Place) -> str:
    return ".".join(path).replace(f".{_ITEMS}", _ITEMS).replace(f".{_VALUES}", _VALUES)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise UsageError("parquet export needs pyarrow: pip install 'visextract[parquet]'") from None
    return pa, pq
