"""What a record schema is: a Pydantic model plus how visextract fills and versions it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import BaseModel

from visextract.schemas.evidence import ToolEvidence
from visextract.schemas.record import FieldProvenance


@dataclass
class FilledFields:
    """Field values filled from tool outputs, each with its provenance."""

    values: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, FieldProvenance] = field(default_factory=dict)

    def set(self, name: str, value: Any, provenance: FieldProvenance) -> None:
        self.values[name] = value
        self.provenance[name] = provenance

    def leave_empty(self, names: Iterable[str], note: str) -> None:
        """Fields no tool can fill: null, with no source and the reason."""
        for name in names:
            self.set(name, None, FieldProvenance(source=None, note=note))


ToolFiller = Callable[[ToolEvidence], FilledFields]


@dataclass(frozen=True)
class RecordSchema:
    """A named record shape.

    `fill_from_tools` fills fields straight from tool outputs (used when no LLM runs, and to
    pre-fill what an LLM does not need to guess). `default_tools` is what runs when the user gives
    no `--tools`. `checks` names the cross-check rule for each LLM-filled field (see `cross_checks`);
    `infer_checks` derives them for user schemas.
    """

    name: str
    model: type[BaseModel]
    description: str
    default_tools: tuple[str, ...]
    fill_from_tools: ToolFiller | None = None
    instructions: str = ""
    origin: str = "built-in"
    checks: dict[str, str] = field(default_factory=dict)  # field -> cross-check rule (text/count/category/color)

    @cached_property
    def json_schema(self) -> dict[str, Any]:
        return self.model.model_json_schema()

    @cached_property
    def version(self) -> str:
        """A stable hash of the JSON Schema: changes exactly when the record shape changes."""
        canonical = json.dumps(self.json_schema, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def field_names(self) -> list[str]:
        return list(self.model.model_fields)


_CHECK_NAMES = {
    "text": ("text", "license", "licence", "plate", "serial"),
    "color": ("color", "colour"),
    "category": ("category", "type", "kind", "label", "labels", "class"),
    "count": ("face_count", "people_count", "person_count", "faces", "people"),
}


def infer_checks(model: type[BaseModel]) -> dict[str, str]:
    """Cross-check rules for a user schema's fields: `Field(json_schema_extra={"check": "text"})` when
    given, else from the field name (`license_plate` -> text, `color` -> color, `category` -> category,
    `people_count` -> count)."""
    checks = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if isinstance(extra.get("check"), str):
            checks[name] = str(extra["check"])
            continue
        words = name.lower().split("_")
        for rule, hints in _CHECK_NAMES.items():
            if name.lower() in hints or any(hint in words for hint in hints if "_" not in hint):
                checks[name] = rule
                break
    return checks
