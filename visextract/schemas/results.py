"""Typed results of the vision tools: the only shapes downstream code (store, prompts, checks) sees.

Each tool converts its library's raw output into one of these models, the way supervision's
`Detections.from_*` adapters do. Boxes are `[x1, y1, x2, y2]` in original-image pixels, after EXIF
orientation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from visextract.color_names import color_name

Box = Annotated[list[float], Field(min_length=4, max_length=4, description="[x1, y1, x2, y2] in pixels")]


class ToolResult(BaseModel):
    """Base of every tool result."""

    model_config = ConfigDict(extra="forbid")

    def summary(self) -> str:
        """A short human-readable form, used in prompts, search text and tables."""
        return str(self.model_dump(exclude_none=True))


class BoxedResult(ToolResult):
    """A result located in the image."""

    box: Box

    def scaled(self, factor_x: float, factor_y: float, width: float, height: float) -> BoxedResult:
        """The box scaled per axis and kept inside a `width` x `height` image (working copy -> original)."""
        x1, y1, x2, y2 = self.box
        return self.model_copy(
            update={"box": clip_box([x1 * factor_x, y1 * factor_y, x2 * factor_x, y2 * factor_y], width, height)}
        )


def clip_box(box: Sequence[float], width: float, height: float) -> list[float]:
    """A box `[x1, y1, x2, y2]` clipped to a `width` x `height` image, rounded to 0.1 px."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [
        round(min(max(x1, 0.0), width), 1),
        round(min(max(y1, 0.0), height), 1),
        round(min(max(x2, 0.0), width), 1),
        round(min(max(y2, 0.0), height), 1),
    ]


class Classification(ToolResult):
    """One of an image classifier's top labels."""

    label: str
    score: float

    def summary(self) -> str:
        return f"{self.label} ({self.score:.2f})"


class Face(BoxedResult):
    """A detected face. No identity: visextract never recognises people."""

    score: float

    def summary(self) -> str:
        return f"face {self.score:.2f} at {self.box}"


class OcrLine(BoxedResult):
    """A line of text read from the image."""

    text: str
    score: float

    def summary(self) -> str:
        return self.text


class ColorShare(ToolResult):
    """A dominant colour and the fraction of pixels close to it."""

    hex: str = Field(pattern=r"^#[0-9a-f]{6}$")
    fraction: float = Field(ge=0, le=1)

    def summary(self) -> str:
        return f"{color_name(self.hex)} {self.hex} {self.fraction:.0%}"


class Detection(BoxedResult):
    """An object found by a detector (closed- or open-vocabulary)."""

    label: str
    score: float

    def summary(self) -> str:
        return f"{self.label} ({self.score:.2f}) at {self.box}"


class Caption(ToolResult):
    """A sentence describing the image."""

    text: str

    def summary(self) -> str:
        return self.text


class VqaAnswer(ToolResult):
    """An answer to the run's `--question`."""

    question: str
    answer: str
    score: float

    def summary(self) -> str:
        return f"Q: {self.question} A: {self.answer} ({self.score:.2f})"


class DepthSummary(ToolResult):
    """Relative depth statistics, plus where the depth map was saved."""

    min: float
    median: float
    max: float
    map_path: str | None = None

    def summary(self) -> str:
        return f"depth min {self.min:.3g} median {self.median:.3g} max {self.max:.3g}"


class NsfwFinding(BoxedResult):
    """An exposed or covered body part found by the moderation model."""

    label: str
    score: float

    def summary(self) -> str:
        return f"{self.label} ({self.score:.2f})"
