"""What the record page draws over the image: each tool's boxes, in original-image pixels.

The page puts them in an SVG whose viewBox is the image's width and height, so the browser scales them
to whatever size the image is shown at. Fields point at boxes through their provenance evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BOX_TOOLS = ("faces", "detector", "openvocab", "ocr", "nsfw")  # drawn in this order (others after)


@dataclass(frozen=True)
class Overlay:
    tool: str
    index: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    label: str  # what is shown next to the box: label and score, or the OCR text

    @property
    def id(self) -> str:
        return f"{self.tool}:{self.index}"

    @property
    def width(self) -> float:
        return max(self.box[2] - self.box[0], 0.0)

    @property
    def height(self) -> float:
        return max(self.box[3] - self.box[1], 0.0)


def overlays(tools: dict[str, list[dict[str, Any]]]) -> dict[str, list[Overlay]]:
    """{tool: boxes} for every tool whose results carry boxes, the usual box tools first."""
    order = [t for t in BOX_TOOLS if t in tools] + sorted(t for t in tools if t not in BOX_TOOLS)
    drawn: dict[str, list[Overlay]] = {}
    for tool in order:
        boxes = [
            Overlay(tool, i, tuple(float(v) for v in result["box"]), _caption(tool, result))  # type: ignore[arg-type]
            for i, result in enumerate(tools[tool])
            if isinstance(result, dict) and _is_box(result.get("box"))
        ]
        if boxes:
            drawn[tool] = boxes
    return drawn


def evidence_ids(provenance: dict[str, Any] | None) -> str:
    """The overlay ids ("tool:index") a field's evidence points at, space-separated (for `data-boxes`)."""
    refs = (provenance or {}).get("evidence") or []
    return " ".join(f"{ref['tool']}:{ref['index']}" for ref in refs if isinstance(ref, dict) and "tool" in ref)


def _caption(tool: str, result: dict[str, Any]) -> str:
    text = result.get("text") or result.get("label") or tool.rstrip("s")
    score = result.get("score")
    return f"{text} {score:.2f}" if isinstance(score, int | float) else str(text)


def _is_box(box: Any) -> bool:
    return isinstance(box, list | tuple) and len(box) == 4 and all(isinstance(v, int | float) for v in box)
