"""JSON Schema forms of a record schema for LLMs: strict structured output, and a compact field list."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel


def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema in the form OpenAI's strict structured output accepts.

    Every object lists all its properties as required (Optional fields stay nullable, so "unknown"
    is still `null`), forbids additional properties, and carries no defaults.
    """
    schema = copy.deepcopy(model.model_json_schema())
    _make_strict(schema)
    return schema


def _make_strict(node: Any) -> None:
    if isinstance(node, dict):
        node.pop("default", None)
        if node.get("type") == "object" or "properties" in node:
            properties = node.get("properties", {})
            node["required"] = list(properties)
            node["additionalProperties"] = False
        for value in node.values():
            _make_strict(value)
    elif isinstance(node, list):
        for item in node:
            _make_strict(item)


def field_guide(model: type[BaseModel]) -> str:
    """One line per top-level field: name, type and description, for prompts."""
    properties = model.model_json_schema().get("properties", {})
    lines = []
    for name, field in model.model_fields.items():
        kind = _type_text(properties.get(name, {}))
        description = f": {field.description}" if field.description else ""
        lines.append(f"- {name} ({kind}){description}")
    return "\n".join(lines)


def _type_text(prop: dict[str, Any]) -> str:
    if "anyOf" in prop:
        return " or ".join(_type_text(p) for p in prop["anyOf"])
    if "enum" in prop:
        return "one of " + ", ".join(repr(v) for v in prop["enum"])
    if prop.get("type") == "array":
        return f"list of {_type_text(prop.get('items', {}))}"
    if "$ref" in prop:
        return prop["$ref"].split("/")[-1]
    return str(prop.get("type", "any"))
