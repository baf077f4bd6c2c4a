"""Typed access to one image's tool outputs, for filling and cross-checking schema fields."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from visextract.schemas.record import EvidenceRef
from visextract.schemas.results import (
    BoxedResult,
    Caption,
    Classification,
    ColorShare,
    Detection,
    Face,
    OcrLine,
    ToolResult,
)


@dataclass(frozen=True)
class ToolEvidence:
    """The results each tool produced for one image, keyed by tool name."""

    results: Mapping[str, Sequence[ToolResult]] = field(default_factory=dict)
    image_width: int | None = None
    image_height: int | None = None

    def ran(self, tool: str) -> bool:
        return tool in self.results

    def of(self, tool: str) -> Sequence[ToolResult]:
        return self.results.get(tool, ())

    @property
    def classifications(self) -> list[Classification]:
        return [r for r in self.of("classifier") if isinstance(r, Classification)]

    @property
    def faces(self) -> list[Face]:
        return [r for r in self.of("faces") if isinstance(r, Face)]

    @property
    def ocr_lines(self) -> list[OcrLine]:
        return [r for r in self.of("ocr") if isinstance(r, OcrLine)]

    @property
    def colors(self) -> list[ColorShare]:
        return [r for r in self.of("colors") if isinstance(r, ColorShare)]

    @property
    def detections(self) -> list[Detection]:
        return [r for tool in ("detector", "openvocab") for r in self.of(tool) if isinstance(r, Detection)]

    @property
    def captions(self) -> list[Caption]:
        return [r for r in self.of("captioner") if isinstance(r, Caption)]

    @property
    def top_label(self) -> str | None:
        """What the image is filed under in the gallery: the classifier's best label, else zero-shot's,
        else the most confident detection's."""
        return top_label_of(
            {
                tool: [r.model_dump() for r in self.of(tool)]
                for tool in ("classifier", "zeroshot", "detector", "openvocab")
            }
        )

    def ref(self, tool: str, index: int) -> EvidenceRef:
        """An evidence reference to result `index` of `tool`."""
        result = self.results[tool][index]
        text = getattr(result, "text", None) or getattr(result, "label", None) or getattr(result, "hex", None)
        box = result.box if isinstance(result, BoxedResult) else None
        return EvidenceRef(tool=tool, index=index, text=text, box=box)

    def refs(self, tool: str) -> list[EvidenceRef]:
        """References to every result of `tool`."""
        return [self.ref(tool, i) for i in range(len(self.of(tool)))]

    def as_prompt_text(self) -> str:
        """Compact text evidence, one tool per line, as sent to the LLM.

        Text read from the image (OCR) goes in an <image_text> block and is escaped, so it can only
        ever be read as data: the prompt tells the model never to follow instructions inside it.
        """
        lines = []
        for tool, results in self.results.items():
            if tool == "ocr":
                continue
            shown = "; ".join(_one_line(r.summary()) for r in results) or "(nothing found)"
            lines.append(f"{tool}: {shown}")
        if self.ran("ocr"):
            text = "\n".join(_escape_block(line.text) for line in self.ocr_lines)
            lines.append(f'<image_text source="ocr">\n{text}\n</image_text>' if text else "ocr: (no text found)")
        return "\n".join(lines)


def top_label_of(results: Mapping[str, Sequence[Mapping[str, object]]]) -> str | None:
    """The top label among stored tool results ({tool: [result dicts]}); see `ToolEvidence.top_label`."""
    for tool in ("classifier", "zeroshot"):
        if results.get(tool):
            return str(results[tool][0]["label"])
    detections = [r for tool in ("detector", "openvocab") for r in results.get(tool, ())]
    if detections:
        return str(max(detections, key=lambda r: float(r.get("score", 0)))["label"])  # type: ignore[arg-type]
    return None


def _one_line(text: str) -> str:
    return " ".join(_escape_block(text).split())


def _escape_block(text: str) -> str:
    """Image text cannot close or open the data block it is quoted in."""
    return text.replace("<", "‹").replace(">", "›")
