"""Gold files: one JSON object a line, `{"path": ..., "data": {...}}` or `{"sha256": ..., "data": {...}}`.

Each line is checked against the record schema: only the schema's fields, each value of its type (JSON
types, no coercion: `"3"` is not an integer). `null` is always allowed: it says the field should be empty.
The first bad line stops the evaluation with its line number and why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Annotated, Any, Optional

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from visextract.errors import UsageError
from visextract.evaluation.report import FieldKind
from visextract.schemas.base import RecordSchema

GoldSource = str | PathLike[str] | Iterable[Mapping[str, Any]]
"""A gold file's path, or the gold entries themselves as dicts."""

_SHA256 = re.compile(r"[0-9a-f]{64}")
_ON_LINE_1 = re.compile(r" at line 1 column")  # the parser sees one line at a time


@dataclass(frozen=True)
class GoldEntry:
    """One gold line: which image (`sha256` and/or `path`) and the true values of some fields."""

    line: int
    path: str | None
    sha256: str | None
    data: dict[str, Any]

    @property
    def key(self) -> str:
        """How the line names its image (its path, else its sha256)."""
        return self.path if self.path is not None else str(self.sha256)


@dataclass(frozen=True)
class Gold:
    """The entries of a gold file, where it lives (relative paths resolve against it) and how to name it."""

    entries: list[GoldEntry]
    folder: Path | None
    name: str


def read_gold(source: GoldSource, schema: RecordSchema) -> Gold:
    """Parse and check gold entries against `schema`; UsageError naming the line for the first bad one."""
    line_model = _line_model(schema)
    if isinstance(source, str | PathLike):
        path = Path(source).expanduser()
        if not path.exists():
            raise UsageError(f"gold file {path} does not exist")
        if not path.is_file():
            raise UsageError(f"gold file {path} is not a file")
        name, folder = str(source), path.absolute().parent
        try:
            with open(path, encoding="utf-8") as handle:
                entries = [
                    _parse(line_model, schema, f"{name} line {number}", number, text.strip())
                    for number, text in enumerate(handle, start=1)
                    if text.strip()
                ]
        except UnicodeDecodeError as exc:
            raise UsageError(f"gold file {path} is not UTF-8 text ({exc.reason})") from None
    else:
        name, folder, entries = "gold", None, []
        for number, item in enumerate(source, start=1):
            try:
                text = json.dumps(item, ensure_ascii=False)
            except (TypeError, ValueError) as exc:
                raise UsageError(f"gold entry {number}: not JSON data ({exc})") from None
            entries.append(_parse(line_model, schema, f"gold entry {number}", number, text))
    if not entries:
        raise UsageError(
            f'{name} has no gold entries: write one JSON object a line, {{"path": "photos/cat.jpg", "data": '
            f'{{"<field>": <true value>, ...}}}} (fields of {schema.name!r}: {_names(schema)})'
        )
    return Gold(entries, folder, name)


def field_kinds(schema: RecordSchema) -> dict[str, FieldKind]:
    """How each field is scored, from its JSON Schema type (nullability aside)."""
    definitions = schema.json_schema.get("$defs", {})
    return {name: _kind(prop, definitions) for name, prop in schema.json_schema.get("properties", {}).items()}


def _kind(prop: dict[str, Any], definitions: dict[str, Any]) -> FieldKind:
    if "$ref" in prop:
        return _kind(definitions.get(prop["$ref"].rsplit("/", 1)[-1], {}), definitions)
    options = [p for p in prop.get("anyOf", prop.get("oneOf", [])) if p.get("type") != "null"]
    if options:
        return _kind(options[0], definitions) if len(options) == 1 else "other"
    if "enum" in prop or "const" in prop:
        return "enum"
    kind = prop.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    return {
        "string": "string",
        "integer": "number",
        "number": "number",
        "boolean": "boolean",
        "array": "list",
        "object": "object",
    }.get(kind or "", "other")  # type: ignore[return-value]


def _line_model(schema: RecordSchema) -> type[BaseModel]:
    """A model for one gold line: optional path/sha256, and `data` with every field optional and nullable
    but typed as in the schema (constraints included), strict, no other fields."""
    data_fields: dict[str, Any] = {}
    for name, info in schema.model.model_fields.items():
        annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        data_fields[name] = (Optional[annotation], None)  # noqa: UP045 (annotation is a runtime value)
    data = create_model(
        f"{schema.model.__name__}Gold", __config__=ConfigDict(extra="forbid", strict=True), **data_fields
    )
    return create_model(
        "GoldLine",
        __config__=ConfigDict(extra="ignore", strict=True),
        path=(Optional[str], None),  # noqa: UP045
        sha256=(Optional[str], None),  # noqa: UP045
        data=(data, ...),
    )


def _parse(line_model: type[BaseModel], schema: RecordSchema, where: str, number: int, text: str) -> GoldEntry:
    try:
        parsed = line_model.model_validate_json(text)
    except ValidationError as exc:
        raise UsageError(f"{where}: {_why(exc, schema)}") from None
    path, sha256, data = parsed.path, parsed.sha256, parsed.data  # type: ignore[attr-defined]
    if path is None and sha256 is None:
        raise UsageError(f'{where}: needs "path" or "sha256" to name its image')
    if path is not None and not path.strip():
        raise UsageError(f'{where}: "path" is empty')
    if sha256 is not None:
        sha256 = sha256.lower()
        if not _SHA256.fullmatch(sha256):
            raise UsageError(f'{where}: "sha256" must be 64 hexadecimal digits, got {parsed.sha256!r}')  # type: ignore[attr-defined]
    if not data.model_fields_set:
        raise UsageError(f'{where}: "data" gives no field to score (fields of {schema.name!r}: {_names(schema)})')
    values = data.model_dump(mode="json", include=data.model_fields_set)
    return GoldEntry(line=number, path=path, sha256=sha256, data=values)


def _why(exc: ValidationError, schema: RecordSchema) -> str:
    """The first error of a gold line, in words that name the field."""
    error = exc.errors(include_url=False)[0]
    loc, kind, message = error["loc"], error["type"], error["msg"]
    if kind == "json_invalid":
        why = str(error.get("ctx", {}).get("error", message))
        return f"not valid JSON ({_ON_LINE_1.sub(' at column', why)})"
    if not loc:
        return 'expected a JSON object like {"path": "...", "data": {...}}'
    if loc[0] in ("path", "sha256"):
        return f'"{loc[0]}" must be a string'
    if len(loc) == 1:  # data itself
        return 'needs a "data" object with the true values' if kind == "missing" else '"data" must be a JSON object'
    field = str(loc[1])
    if kind == "extra_forbidden":
        return f"field {field!r} is not in schema {schema.name!r} (its fields: {_names(schema)})"
    inside = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[2:])
    got = json.dumps(error.get("input"), ensure_ascii=False, default=str)
    return f"field {field!r}{inside}: {message[0].lower() + message[1:]}, got {got[:80]}"


def _names(schema: RecordSchema) -> str:
    return ", ".join(schema.field_names)
