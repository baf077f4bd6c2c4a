"""Turning stored records into typed `Record` objects for the Python API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from visextract.schemas.base import RecordSchema
from visextract.schemas.record import FieldProvenance, LlmUsage, Record, RecordStatus, Review
from visextract.store.export import export_dicts
from visextract.store.store import Store
from visextract.tools.registry import result_type_of


def typed_records(store: Store, schema: RecordSchema, status: str | None = None) -> Iterator[Record[Any]]:
    """Current records of `schema` (optionally of one status), `data` parsed into the schema's model."""
    for item in export_dicts(store, schema.name, with_ids=True):
        if status is None or item["status"] == status:
            yield typed_record(item, schema)


def typed_record(item: dict[str, Any], schema: RecordSchema) -> Record[Any]:
    """A `Record` from one export object."""
    data = None
    if item["data"] is not None:
        try:
            data = schema.model.model_validate(item["data"])
        except ValidationError:  # made under an older version of the schema: use export --all-versions
            data = None
    return Record[Any](
        id=item["record_id"],
        path=item["path"],
        sha256=item["sha256"],
        width=item["width"],
        height=item["height"],
        status=RecordStatus(item["status"]),
        error=item["error"],
        schema_name=item["schema"],
        schema_version=item["schema_version"],
        data=data,
        provenance={name: FieldProvenance.model_validate(p) for name, p in item["provenance"].items()},
        tools={
            name: [result_type_of(name).model_validate(result) for result in results]
            for name, results in item["tools"].items()
        },
        llm=LlmUsage.model_validate(item["llm"]) if item["llm"] else None,
        created_at=item["created_at"],
        version=item.get("version", 1),
        review=Review.model_validate(item["review"]) if item.get("review") else None,
    )
