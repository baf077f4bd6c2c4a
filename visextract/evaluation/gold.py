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
from typing import Annotated, Any, NotRequired, Optional

from pydantic import ConfigDict, TypeAdapter, ValidationError
from typing_extensions import TypedDict

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
    if isinstance(source, str | PathLike):
        path = Path(source).expanduser()
        if not path.exists():
            raise UsageError(f"gold file {path} does not exist")
        if not path.is_file():
            raise UsageError(f"gold file {path} is not a file")
        name, folder, where = str(source), path.absolute().parent, f"{source} line"
        try:
            with open(path, encoding="utf-8") as handle:
                lines = [(number, text.strip()) for number, text in enumerate(handle, start=1) if text.strip()]
        except UnicodeDecodeError as exc:
            raise UsageError(f"gold file {path} is not UTF-8 text ({exc.reason})") from None
    else:
        name, folder, where, lines = "gold", None, "gold entry", []
        for number, item in enumerate(source, start=1):
            try:
                lines.append((number, json.dumps(item, ensure_ascii=False)))
            except (TypeError, ValueError) as exc:
                raise UsageError(f"gold entry {number}: not JSON data ({exc})") from None
    if not lines:
        raise UsageError(
            f'{name} has no gold entries: write one JSON object a line, {{"path": "photos/cat.jpg", "data": '
            f'{{"<field>": <true value>, ...}}}} (fields of {schema.name!r}: {_names(schema)})'
        )
    checker = _GoldChecker(schema)
    parsed = checker.validate_all(lines, where)
    return Gold(
        [checker.entry(number, line, f"{where} {number}") for (number, _), line in zip(lines, parsed, strict=True)],
        folder,
        name,
    )


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


class _GoldChecker:
    """Validates gold lines against the schema: all lines at once (fast), or one by one to name the first
    bad line. Each line is a dict `{"path"?, "sha256"?, "data": {field: value}}` with the schema's field
    types (constraints included), every field optional and nullable, strict JSON types, no other field."""

    def __init__(self, schema: RecordSchema) -> None:
        self.schema = schema
        data_fields: dict[str, Any] = {}
        self.as_json: dict[str, TypeAdapter[Any]] = {}  # fields whose validated values are Python objects
        properties = schema.json_schema.get("properties", {})
        for name, info in schema.model.model_fields.items():
            annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
            data_fields[name] = NotRequired[Optional[annotation]]  # noqa: UP045 (a runtime value)
            if "$ref" in json.dumps(properties.get(name, {})):  # enums, nested models
                self.as_json[name] = TypeAdapter(Optional[annotation])  # noqa: UP045
        data = TypedDict(f"{schema.model.__name__}Gold", data_fields)  # type: ignore[misc]
        data.__pydantic_config__ = ConfigDict(extra="forbid", strict=True)  # type: ignore[attr-defined]
        line = TypedDict(  # type: ignore[misc]  # noqa: UP013 (data is built at run time)
            "GoldLine",
            {"path": NotRequired[Optional[str]], "sha256": NotRequired[Optional[str]], "data": data},  # noqa: UP045
        )
        line.__pydantic_config__ = ConfigDict(extra="ignore", strict=True)  # type: ignore[attr-defined]
        self.line = TypeAdapter(line)
        self.lines = TypeAdapter(list[line])  # type: ignore[valid-type]

    def validate_all(self, lines: list[tuple[int, str]], where: str) -> list[dict[str, Any]]:
        """Every line, validated in one pass; on any problem, line by line to report the first bad one."""
        try:
            parsed = self.lines.validate_json("[" + ",".join(text for _, text in lines) + "]")
            if len(parsed) == len(lines):  # a line holding two objects would shift the count
                return parsed
        except ValidationError:
            pass
        for number, text in lines:
            try:
                self.line.validate_json(text)
            except ValidationError as exc:
                raise UsageError(f"{where} {number}: {_why(exc, self.schema)}") from None
        raise AssertionError("gold lines validate one by one but not together")

    def entry(self, number: int, line: dict[str, Any], where: str) -> GoldEntry:
        path, sha256, data = line.get("path"), line.get("sha256"), line["data"]
        if path is None and sha256 is None:
            raise UsageError(f'{where}: needs "path" or "sha256" to name its image')
        if path is not None and not path.strip():
            raise UsageError(f'{where}: "path" is empty')
        if sha256 is not None:
            sha256 = sha256.lower()
            if not _SHA256.fullmatch(sha256):
                raise UsageError(f'{where}: "sha256" must be 64 hexadecimal digits, got {line["sha256"]!r}')
        if not data:
            raise UsageError(f'{where}: "data" gives no field to score (fields of {self.schema.name!r}: '
                             f"{_names(self.schema)})")  # fmt: skip
        for name, adapter in self.as_json.items():
            if name in data:
                data[name] = adapter.dump_python(data[name], mode="json")
        return GoldEntry(line=number, path=path, sha256=sha256, data=data)


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
