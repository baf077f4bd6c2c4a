"""Which tools exist, and building them from names and `--model TOOL=ID_OR_PATH` overrides.

Tool modules are imported only when a tool is built, so listing tools or exporting stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from visextract.errors import UsageError
from visextract.schemas.results import Classification, ColorShare, Face, OcrLine, ToolResult
from visextract.tools.base import Tool, ToolOptions


@dataclass(frozen=True)
class ToolSpec:
    name: str
    result_type: type[ToolResult]
    description: str
    build: Callable[[ToolOptions], Tool]
    model_swappable: bool = False


def _classifier(options: ToolOptions) -> Tool:
    from visextract.tools.classifier import BundledClassifier

    return BundledClassifier(options)


def _faces(options: ToolOptions) -> Tool:
    from visextract.tools.faces import MtcnnFaces

    return MtcnnFaces(options)


def _ocr(options: ToolOptions) -> Tool:
    from visextract.tools.ocr import RapidOcr

    return RapidOcr(options)


def _colors(options: ToolOptions) -> Tool:
    from visextract.tools.colors import DominantColors

    return DominantColors(options)


TOOL_SPECS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            "classifier",
            Classification,
            "ImageNet-1k top-5 labels (EfficientNet-Lite0, bundled)",
            _classifier,
        ),
        ToolSpec("faces", Face, "face boxes and scores (MTCNN, bundled)", _faces),
        ToolSpec("ocr", OcrLine, "text lines with boxes (PP-OCRv4 via rapidocr, bundled)", _ocr),
        ToolSpec("colors", ColorShare, "dominant colours as hex + fraction", _colors),
    )
}


def tool_names() -> list[str]:
    return list(TOOL_SPECS)


def result_type_of(tool: str) -> type[ToolResult]:
    """The result model a tool's stored results parse into."""
    return TOOL_SPECS[tool].result_type


def build_tools(names: Iterable[str], options: ToolOptions) -> list[Tool]:
    """Tool instances for `names` (in order, without repeats). Raises UsageError for unknown names."""
    names = list(dict.fromkeys(names))
    for name in names:
        if name not in TOOL_SPECS:
            raise UsageError(f"unknown tool {name!r}: available tools are {', '.join(TOOL_SPECS)}")
    for tool in options.models:
        if tool not in TOOL_SPECS:
            raise UsageError(f"--model {tool}=...: unknown tool {tool!r}")
        if not TOOL_SPECS[tool].model_swappable:
            raise UsageError(f"--model {tool}=...: the {tool} tool's model cannot be swapped")
    return [TOOL_SPECS[name].build(options) for name in names]
