"""Built-in schema `vehicle`, after the well-known LangChain + GPT-4o + Pydantic vehicle-extraction
example: type, licence plate, make, model and colour, each null unless clearly visible."""

from __future__ import annotations

from pydantic import BaseModel, Field

from visextract.schemas.base import RecordSchema


class Vehicle(BaseModel):
    """The main vehicle in a photo."""

    type: str | None = Field(None, description="Kind of vehicle: car, truck, van, bus, motorcycle, bicycle, ...")
    license: str | None = Field(None, description="Licence plate exactly as written, or null if not readable")
    make: str | None = Field(None, description="Manufacturer, e.g. Toyota")
    model: str | None = Field(None, description="Model name, e.g. Corolla")
    color: str | None = Field(None, description="Main body colour in plain words, e.g. dark blue")


VEHICLE = RecordSchema(
    name="vehicle",
    model=Vehicle,
    description="The main vehicle in a photo: type, licence plate, make, model, colour.",
    default_tools=("classifier", "ocr", "colors"),
    instructions=(
        "Describe the most prominent vehicle. If a field is not clearly visible, return null; do not guess. "
        "Copy the licence plate character by character from the image."
    ),
    checks={"type": "category", "license": "text", "color": "color"},
)
