"""User schemas: a Pydantic model in a .py file (`path/to/file.py:ClassName`), a JSON Schema file
(`path/to/schema.json`), or a model class passed from Python. Broken files give one clear line."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from visextract.errors import SchemaLoadError
from visextract.schemas.base import RecordSchema, infer_checks

USER_DEFAULT_TOOLS = ("classifier", "faces", "ocr", "colors")


def schema_from_model(model: type[BaseModel], name: str | None = None, origin: str | None = None) -> RecordSchema:
    """A RecordSchema for any Pydantic model; cross-checks inferred from field names (see `infer_checks`)."""
    doc = inspect.getdoc(model) or ""
    return RecordSchema(
        name=name or snake_name(model.__name__),
        model=model,
        description=doc.splitlines()[0] if doc else f"{model.__name__} record",
        default_tools=USER_DEFAULT_TOOLS,
        instructions="\n".join(doc.splitlines()[1:]).strip(),
        origin=origin or f"python:{model.__module__}.{model.__qualname__}",
        checks=infer_checks(model),
    )


def snake_name(class_name: str) -> str:
    """VehicleRecord -> vehicle_record."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", class_name).lower()


# ---- Python files -------------------------------------------------------------------------------------


def load_python_schema(spec: str) -> RecordSchema:
    """`file.py:ClassName`, or `file.py` when the file defines exactly one Pydantic model."""
    file_part, _, class_name = spec.partition(".py:") if ".py:" in spec else (spec.removesuffix(".py"), "", "")
    path = Path(file_part + ".py").expanduser()
    if not path.is_file():
        raise SchemaLoadError(f"schema file {path} does not exist")
    module_name = "visextract_user_schema_" + hashlib.sha256(str(path.absolute()).encode()).hexdigest()[:12]
    try:
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module  # Pydantic resolves postponed annotations through it
        module_spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        raise SchemaLoadError(f"schema file {path}: syntax error on line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:
        sys.modules.pop(module_name, None)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise SchemaLoadError(f"schema file {path}: {type(exc).__name__}: {first}") from None
    models = {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == module_name
    }
    if not class_name:
        if len(models) != 1:
            found = ", ".join(models) or "none"
            raise SchemaLoadError(f"schema file {path}: name the model as {path}:ClassName (models found: {found})")
        class_name = next(iter(models))
    model = getattr(module, class_name, None)
    if model is None:
        found = ", ".join(models) or "none"
        raise SchemaLoadError(f"schema file {path} has no class {class_name!r} (Pydantic models in it: {found})")
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise SchemaLoadError(f"{path}:{class_name} is not a Pydantic model (a pydantic.BaseModel subclass)")
    try:
        model.model_json_schema()
    except Exception as exc:
        raise SchemaLoadError(f"{path}:{class_name} has no JSON Schema: {str(exc).splitlines()[0]}") from None
    return schema_from_model(model, origin=f"file:{path.absolute()}:{class_name}")


# ---- JSON Schema files --------------------------------------------------------------------------------


def load_json_schema_file(spec: str) -> RecordSchema:
    path = Path(spec).expanduser()
    if not path.is_file():
        raise SchemaLoadError(f"schema file {path} does not exist")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SchemaLoadError(f"schema file {path}: invalid JSON on line {exc.lineno}: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaLoadError(f"schema file {path}: cannot read it: {exc}") from None
    title = document.get("title") if isinstance(document, dict) else None
    name = snake_name(re.sub(r"\W+", "_", str(title)).strip("_")) if title else path.stem.lower()
    try:
        model = model_from_json_schema(document, title or path.stem)
    except SchemaLoadError as exc:
        raise SchemaLoadError(f"schema file {path}: {exc}") from None
    schema = schema_from_model(model, name=name, origin=f"file:{path.absolute()}")
    description = document.get("description")
    if isinstance(description, str) and description:
        schema = dataclasses.replace(schema, description=description.splitlines()[0])
    return schema


_SIMPLE_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "null": type(None),
}


def model_from_json_schema(document: Any, title: str = "Record") -> type[BaseModel]:
    """A Pydantic model equivalent to a JSON Schema object (properties, required, types, enums, arrays,
    nested objects, $ref/$defs, anyOf/oneOf, nullable types, descriptions and common constraints).
    Raises SchemaLoadError naming the JSON pointer of the first problem."""
    if not isinstance(document, dict):
        raise SchemaLoadError("a JSON Schema must be a JSON object")
    converter = _Converter(document)
    model = converter.object_model(document, _model_name(title), "")
    if model is None:
        raise SchemaLoadError('the root must be an object schema with "properties"')
    return model


def _model_name(title: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", title)
    name = "".join(w[:1].upper() + w[1:] for w in words) or "Record"
    return name if name[0].isalpha() else f"R{name}"


class _Converter:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.models: dict[str, type[BaseModel]] = {}
        self.resolving: set[str] = set()

    def object_model(self, node: dict[str, Any], name: str, pointer: str) -> type[BaseModel] | None:
        properties = node.get("properties")
        if properties is None:
            return None
        if not isinstance(properties, dict):
            raise SchemaLoadError(f'at {pointer or "/"}: "properties" must be an object')
        required = node.get("required", [])
        if not isinstance(required, list):
            raise SchemaLoadError(f'at {pointer or "/"}: "required" must be a list')
        fields: dict[str, Any] = {}
        for prop, sub in properties.items():
            where = f"{pointer}/properties/{prop}"
            if not prop.isidentifier() or prop.startswith("_"):
                raise SchemaLoadError(f"at {where}: {prop!r} is not usable as a field name (letters, digits, _)")
            if not isinstance(sub, dict):
                raise SchemaLoadError(f"at {where}: a property schema must be an object")
            annotation = self.annotation(sub, f"{name}{prop[:1].upper()}{prop[1:]}", where)
            constraints = _constraints(sub)
            if prop in required:
                fields[prop] = (annotation, Field(..., description=sub.get("description"), **constraints))
            else:
                fields[prop] = (
                    annotation | None,
                    Field(None, description=sub.get("description"), **constraints),
                )
        try:
            model = create_model(name, __config__=ConfigDict(extra="ignore"), **fields)  # type: ignore[call-overload]
        except Exception as exc:
            raise SchemaLoadError(f"at {pointer or '/'}: {str(exc).splitlines()[0]}") from None
        if node.get("description"):
            model.__doc__ = str(node["description"])
        return model

    def annotation(self, node: dict[str, Any], name: str, pointer: str) -> Any:
        if "$ref" in node:
            return self.reference(str(node["$ref"]), pointer)
        if "enum" in node:
            values = node["enum"]
            if not isinstance(values, list) or not values:
                raise SchemaLoadError(f'at {pointer}: "enum" must be a non-empty list')
            return Literal[tuple(values)]  # type: ignore[valid-type]
        if "const" in node:
            return Literal[node["const"]]  # type: ignore[valid-type]
        for key in ("anyOf", "oneOf"):
            if key in node:
                options = node[key]
                if not isinstance(options, list) or not options:
                    raise SchemaLoadError(f'at {pointer}: "{key}" must be a non-empty list')
                return _union([self.annotation(o, f"{name}{i}", f"{pointer}/{key}/{i}") for i, o in enumerate(options)])
        kind = node.get("type")
        if isinstance(kind, list):
            return _union([self.annotation({**node, "type": k}, name, pointer) for k in kind])
        if kind is None:
            return Any
        if kind in _SIMPLE_TYPES:
            return _SIMPLE_TYPES[kind]
        if kind == "array":
            items = node.get("items", {})
            if not isinstance(items, dict):
                raise SchemaLoadError(f'at {pointer}: "items" must be a schema object')
            return list[self.annotation(items, f"{name}Item", f"{pointer}/items")]  # type: ignore[misc]
        if kind == "object":
            model = self.object_model(node, name, pointer)
            return model if model is not None else dict[str, Any]
        raise SchemaLoadError(
            f"at {pointer}: unknown type {kind!r} (use string, integer, number, boolean, array, object)"
        )

    def reference(self, ref: str, pointer: str) -> Any:
        match = re.fullmatch(r"#/(\$defs|definitions)/([^/]+)", ref)
        if not match:
            raise SchemaLoadError(f"at {pointer}: only local references like #/$defs/Name are supported, not {ref!r}")
        section, target = match.groups()
        definitions = self.root.get(section, {})
        if not isinstance(definitions, dict) or target not in definitions:
            raise SchemaLoadError(f"at {pointer}: {ref!r} points at nothing")
        if ref in self.models:
            return self.models[ref]
        if ref in self.resolving:
            raise SchemaLoadError(f"at {pointer}: recursive reference {ref!r} is not supported")
        self.resolving.add(ref)
        resolved = self.annotation(definitions[target], _model_name(target), f"/{section}/{target}")
        self.resolving.discard(ref)
        if isinstance(resolved, type) and issubclass(resolved, BaseModel):
            self.models[ref] = resolved
        return resolved


def _union(options: list[Any]) -> Any:
    result = options[0]
    for option in options[1:]:
        result = result | option
    return result


def _constraints(node: dict[str, Any]) -> dict[str, Any]:
    mapping = {
        "minimum": "ge", "maximum": "le", "exclusiveMinimum": "gt", "exclusiveMaximum": "lt",
        "minLength": "min_length", "maxLength": "max_length", "pattern": "pattern",
        "minItems": "min_length", "maxItems": "max_length",
    }  # fmt: skip
    return {target: node[key] for key, target in mapping.items() if key in node and not isinstance(node[key], bool)}
