"""Finding a record schema by name (user files come in issue 6 of the roadmap)."""

from __future__ import annotations

from pydantic import BaseModel

from visextract.errors import SchemaLoadError
from visextract.schemas.base import RecordSchema
from visextract.schemas.scene import SCENE
from visextract.schemas.vehicle import VEHICLE

BUILT_IN_SCHEMAS: dict[str, RecordSchema] = {schema.name: schema for schema in (SCENE, VEHICLE)}


def load_schema(spec: str | type[BaseModel] | RecordSchema) -> RecordSchema:
    """A schema from a built-in name, a Pydantic model class, or an existing RecordSchema.

    load_schema("scene")
    load_schema(MyModel)      # any Pydantic model; its class name (lower-case) is the schema name
    """
    if isinstance(spec, RecordSchema):
        return spec
    if isinstance(spec, type) and issubclass(spec, BaseModel):
        return RecordSchema(
            name=spec.__name__.lower(),
            model=spec,
            description=(spec.__doc__ or "").strip().splitlines()[0] if spec.__doc__ else "",
            default_tools=SCENE.default_tools,
            origin=f"python:{spec.__module__}.{spec.__qualname__}",
        )
    if isinstance(spec, str) and spec in BUILT_IN_SCHEMAS:
        return BUILT_IN_SCHEMAS[spec]
    known = ", ".join(sorted(BUILT_IN_SCHEMAS))
    raise SchemaLoadError(f"unknown schema {spec!r}: use one of {known}")
