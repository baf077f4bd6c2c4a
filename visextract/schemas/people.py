"""Built-in schema `people`: how many people, roughly where, doing what. Never who."""

from __future__ import annotations

from pydantic import BaseModel, Field

from visextract.schemas.base import FilledFields, RecordSchema
from visextract.schemas.evidence import ToolEvidence
from visextract.schemas.record import FieldProvenance


class People(BaseModel):
    """The people in a photo, without identifying anyone."""

    count: int | None = Field(None, ge=0, description="How many people are visible")
    positions: list[str] | None = Field(
        None, description="Where each person is, roughly: left, center or right (one entry per person)"
    )
    activities: list[str] | None = Field(None, description="What the people are doing, in a few words each")


def horizontal_position(center_x: float, width: float) -> str:
    third = center_x / width if width else 0.5
    return "left" if third < 1 / 3 else "right" if third > 2 / 3 else "center"


def fill_people(evidence: ToolEvidence) -> FilledFields:
    """Offline: count and positions from the face boxes; activities need an LLM."""
    filled = FilledFields()
    filled.leave_empty(("activities",), "needs an LLM")
    if not evidence.ran("faces"):
        filled.leave_empty(("count", "positions"), "the faces tool was not run")
        return filled
    faces = evidence.faces
    source = FieldProvenance(source="tool:faces", evidence=evidence.refs("faces"))
    width = max((face.box[2] for face in faces), default=0.0)
    image_width = evidence.image_width or width
    filled.set("count", len(faces), source)
    positions = [horizontal_position((face.box[0] + face.box[2]) / 2, image_width) for face in faces]
    filled.set("positions", positions, source)
    return filled


PEOPLE = RecordSchema(
    name="people",
    model=People,
    description="People in a photo: count, approximate positions, activities (no identities).",
    default_tools=("faces", "classifier"),
    fill_from_tools=fill_people,
    instructions="Never identify, name or guess who anyone is, nor their age, ethnicity or other traits.",
    checks={"count": "count"},
)
