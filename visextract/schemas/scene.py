"""Built-in schema `scene`: what is in a photo, filled straight from the bundled offline tools."""

from __future__ import annotations

from pydantic import BaseModel, Field

from visextract.color_names import color_name
from visextract.schemas.base import FilledFields, RecordSchema
from visextract.schemas.evidence import ToolEvidence
from visextract.schemas.record import FieldProvenance

LABEL_MIN_SCORE = 0.1
COLOR_MIN_FRACTION = 0.1
MAX_COLOR_NAMES = 4


class Scene(BaseModel):
    """A general description of a photo."""

    labels: list[str] | None = Field(None, description="What the image shows, best first (ImageNet labels)")
    face_count: int | None = Field(None, ge=0, description="Number of human faces visible")
    text: str | None = Field(None, description="All text visible in the image, in reading order")
    dominant_colors: list[str] | None = Field(None, description="Main colour names, most area first")


def fill_scene(evidence: ToolEvidence) -> FilledFields:
    """Labels from the classifier, faces counted, OCR lines joined, colours named."""
    filled = FilledFields()
    none = FieldProvenance(source=None, note="the tool this field needs was not run")

    if evidence.ran("classifier"):
        picked = [i for i, c in enumerate(evidence.classifications) if i == 0 or c.score >= LABEL_MIN_SCORE]
        labels = [evidence.classifications[i].label for i in picked]
        refs = [evidence.ref("classifier", i) for i in picked]
        filled.set("labels", labels, FieldProvenance(source="tool:classifier", evidence=refs))
    else:
        filled.set("labels", None, none)

    if evidence.ran("faces"):
        faces = FieldProvenance(source="tool:faces", evidence=evidence.refs("faces"))
        filled.set("face_count", len(evidence.faces), faces)
    else:
        filled.set("face_count", None, none)

    if evidence.ran("ocr"):
        text = "\n".join(line.text for line in evidence.ocr_lines) or None
        filled.set("text", text, FieldProvenance(source="tool:ocr", evidence=evidence.refs("ocr")))
    else:
        filled.set("text", None, none)

    if evidence.ran("colors"):
        picked = [i for i, c in enumerate(evidence.colors) if i == 0 or c.fraction >= COLOR_MIN_FRACTION]
        names = list(dict.fromkeys(color_name(evidence.colors[i].hex) for i in picked))[:MAX_COLOR_NAMES]
        refs = [evidence.ref("colors", i) for i in picked]
        filled.set("dominant_colors", names, FieldProvenance(source="tool:colors", evidence=refs))
    else:
        filled.set("dominant_colors", None, none)
    return filled


SCENE = RecordSchema(
    name="scene",
    model=Scene,
    description="What is in a photo: labels, face count, visible text, dominant colours.",
    default_tools=("classifier", "faces", "ocr", "colors"),
    fill_from_tools=fill_scene,
    instructions="Describe the photo. Use the tool evidence; list labels as short nouns, best first.",
    checks={"labels": "category", "face_count": "count", "text": "text", "dominant_colors": "color"},
)
