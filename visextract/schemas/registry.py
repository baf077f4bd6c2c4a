"""Finding a record schema: built-in names, user files, Pydantic classes."""

from __future__ import annotations

from pydantic import BaseModel

from visextract.errors import SchemaLoadError
from visextract.schemas.base import RecordSchema
from visextract.schemas.document import DOCUMENT
from visextract.schemas.people import PEOPLE
from visextract.schemas.product import PRODUCT
from visextract.schemas.scene import SCENE
from visextract.schemas.vehicle import VEHICLE

BUILT_IN_SCHEMAS: dict[str, RecordSchema] = {
    schema.name: schema for schema in (SCENE, VEHICLE, DOCUMENT, PRODUCT, PEOPLE)
}


def load_schema(spec: str | type[BaseModel] | RecordSchema) -> RecordSchema:
    """A schema from a built-in name, a file, a Pydantic model class, or an existing RecordSchema.

    load_schema("vehicle")
    load_schema("schemas/receipt.py:Receipt")   # a Pydantic model in a Python file
    load_schema("schemas/receipt.json")          # a JSON Schema file
    load_schema(MyModel)                         # any Pydantic model (name: my_model)
    """
    from visextract.schemas.user_schemas import load_json_schema_file, load_python_schema, schema_from_model

    if isinstance(spec, RecordSchema):
        return spec
    if isinstance(spec, type) and issubclass(spec, BaseModel):
        return schema_from_model(spec)
    if isinstance(spec, str):
        if spec in BUILT_IN_SCHEMAS:
            return BUILT_IN_SCHEMAS[spec]
        if spec.endswith(".py") or ".py:" in spec:
            return load_python_schema(spec)
        if spec.endswith(".json"):
            return load_json_schema_file(spec)
    known = ", ".join(sorted(BUILT_IN_SCHEMAS))
    raise SchemaLoadError(f"unknown schema {spec!r}: use one of {known}, FILE.py:Class or FILE.json")
