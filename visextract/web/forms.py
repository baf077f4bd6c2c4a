"""The review form, generated from a schema's JSON Schema: one node per field, rendered by `_form.html`.

    nodes = form_fields(schema_json, record_data)
    [(n.name, n.kind) for n in nodes]     # [("labels", "list"), ("face_count", "integer"), ...]

Kinds: enum (a select), boolean (a checkbox), integer / number (number inputs), text / textarea,
list and object (editable groups), and json (a JSON text box for shapes with no simpler control).
The browser turns the form back into JSON; the server validates it with the schema's Pydantic model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_DEPTH = 6
TEXTAREA_CHARS = 60


@dataclass
class FormNode:
    kind: str
    name: str  # the field or property name; "" for list items
    label: str
    value: Any = None
    nullable: bool = False
    required: bool = True
    description: str | None = None
    options: list[tuple[str, str]] = field(default_factory=list)  # enum: (JSON value, shown text)
    children: list[FormNode] = field(default_factory=list)  # object: properties; list: items
    item: FormNode | None = None  # list: an empty item, the template for "add"
    minimum: float | None = None
    maximum: float | None = None

    @property
    def json_value(self) -> str:
        """The value as JSON text (enum option matching and json text boxes)."""
        return json.dumps(self.value, ensure_ascii=False)

    @property
    def text_value(self) -> str:
        return "" if self.value is None else str(self.value)


def form_fields(schema: dict[str, Any], data: dict[str, Any] | None) -> list[FormNode]:
    """One node per top-level field of `schema`, filled with `data`."""
    data = data or {}
    defs = schema.get("$defs", {})
    return [
        _node(prop, name, data.get(name), defs, 0, required=name in schema.get("required", ()))
        for name, prop in schema.get("properties", {}).items()
    ]


def _node(prop: dict[str, Any], name: str, value: Any, defs: dict[str, Any], depth: int, required: bool) -> FormNode:
    prop, nullable = _resolve(prop, defs)
    label = str(prop.get("title") or name.replace("_", " "))
    base = FormNode(kind="json", name=name, label=label, value=value, nullable=nullable, required=required)
    base.description = prop.get("description")
    if depth > MAX_DEPTH:
        return base
    kind = _type_of(prop)
    if "enum" in prop or "const" in prop:
        choices = prop.get("enum", [prop.get("const")])
        base.kind = "enum"
        base.options = [(json.dumps(choice, ensure_ascii=False), str(choice)) for choice in choices]
        if value is not None and base.json_value not in {option for option, _ in base.options}:
            base.options.append((base.json_value, f"{value} (not a choice of this schema)"))  # shown, never lost
    elif kind == "boolean":
        base.kind = "boolean"
    elif kind in ("integer", "number"):
        base.kind = kind
        base.minimum = prop.get("minimum", prop.get("exclusiveMinimum"))
        base.maximum = prop.get("maximum", prop.get("exclusiveMaximum"))
    elif kind == "string":
        multiline = isinstance(value, str) and ("\n" in value or len(value) > TEXTAREA_CHARS)
        base.kind = "textarea" if multiline or prop.get("maxLength", 0) > 200 else "text"
    elif kind == "array" and isinstance(prop.get("items"), dict):
        items = value if isinstance(value, list) else []
        base.kind = "list"
        base.children = [_node(prop["items"], "", item, defs, depth + 1, True) for item in items]
        base.item = _node(prop["items"], "", None, defs, depth + 1, True)
    elif kind == "object" and isinstance(prop.get("properties"), dict):
        values = value if isinstance(value, dict) else {}
        base.kind = "object"
        base.children = [
            _node(sub, key, values.get(key), defs, depth + 1, key in prop.get("required", ()))
            for key, sub in prop["properties"].items()
        ]
    return base


def _resolve(prop: dict[str, Any], defs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The property with `$ref`s followed and `X | None` unwrapped; and whether null is allowed."""
    nullable = False
    for _ in range(MAX_DEPTH):
        if "$ref" in prop:
            target = defs.get(str(prop["$ref"]).rsplit("/", 1)[-1], {})
            prop = {**target, **{k: v for k, v in prop.items() if k != "$ref"}}
            continue
        alternatives = prop.get("anyOf") or prop.get("oneOf")
        if isinstance(alternatives, list):
            others = [alt for alt in alternatives if alt.get("type") != "null"]
            nullable = nullable or len(others) < len(alternatives)
            if len(others) != 1:
                return {k: v for k, v in prop.items() if k not in ("anyOf", "oneOf")}, nullable
            prop = {**others[0], **{k: v for k, v in prop.items() if k not in ("anyOf", "oneOf", "default")}}
            continue
        all_of = prop.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1:
            prop = {**all_of[0], **{k: v for k, v in prop.items() if k != "allOf"}}
            continue
        break
    types = prop.get("type")
    if isinstance(types, list):
        nullable = nullable or "null" in types
        rest = [t for t in types if t != "null"]
        prop = {**prop, "type": rest[0] if len(rest) == 1 else None}
    return prop, nullable


def _type_of(prop: dict[str, Any]) -> str | None:
    kind = prop.get("type")
    if kind is None and "properties" in prop:
        return "object"
    return kind if isinstance(kind, str) else None
