"""The review form's controls come from the schema's JSON Schema, the way Pydantic writes it."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from visextract.web.forms import form_fields


class Size(StrEnum):
    small = "small"
    large = "large"


class Owner(BaseModel):
    name: str
    age: int | None = None


class Item(BaseModel):
    size: Size  # an enum behind a $ref
    color: Literal["red", "green"] | None = None
    boxed: bool = False
    weight_kg: float | None = Field(None, ge=0, le=50)
    count: int = Field(1, ge=1)
    notes: str | None = None
    tags: list[str] = []
    owner: Owner | None = None  # a nested model behind a $ref, nullable
    owners: list[Owner] = []
    extra: dict[str, Any] = {}


def kinds(nodes) -> dict[str, str]:
    return {node.name: node.kind for node in nodes}


def test_each_json_schema_shape_gets_its_control():
    nodes = form_fields(Item.model_json_schema(), {"size": "large", "tags": ["a"], "owners": [{"name": "ann"}]})
    assert kinds(nodes) == {
        "size": "enum", "color": "enum", "boxed": "boolean", "weight_kg": "number", "count": "integer",
        "notes": "text", "tags": "list", "owner": "object", "owners": "list", "extra": "json",
    }  # fmt: skip
    by_name = {node.name: node for node in nodes}
    assert by_name["size"].options == [('"small"', "small"), ('"large"', "large")] and not by_name["size"].nullable
    assert by_name["color"].nullable and by_name["weight_kg"].maximum == 50 and by_name["count"].minimum == 1
    assert by_name["owner"].nullable and kinds(by_name["owner"].children) == {"name": "text", "age": "integer"}
    owners = by_name["owners"]
    assert len(owners.children) == 1 and owners.children[0].children[0].value == "ann"
    assert owners.item is not None and owners.item.kind == "object" and owners.item.children[0].value is None


def test_long_or_multiline_text_gets_a_text_box():
    nodes = form_fields(Item.model_json_schema(), {"size": "small", "notes": "line one\nline two"})
    assert {node.name: node.kind for node in nodes}["notes"] == "textarea"


def test_a_value_outside_the_enum_is_shown_not_silently_replaced():
    (size, *_) = form_fields(Item.model_json_schema(), {"size": "huge"})
    assert size.options[-1] == ('"huge"', "huge (not a choice of this schema)") and size.json_value == '"huge"'
