"""Which tools exist, and building them from names and `--model TOOL=ID_OR_PATH` overrides.

Tool modules are imported only when a tool is built, so listing tools or exporting stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass

from visextract.errors import UsageError
from visextract.schemas.results import (
    Caption,
    Classification,
    ColorShare,
    DepthSummary,
    Detection,
    Face,
    NsfwFinding,
    OcrLine,
    ToolResult,
    VqaAnswer,
)
from visextract.tools.base import Tool, ToolOptions


@dataclass(frozen=True)
class ToolSpec:
    """A tool's name, result type and implementation (`module:Class`).

    Tools with `hf_class` run a Hugging Face model and accept `--model TOOL=HF_ID_OR_PATH`; a bundled
    tool with an `hf_class` (the classifier) switches to it when a model is given.
    """

    name: str
    result_type: type[ToolResult]
    description: str
    implementation: str
    hf_class: str | None = None

    @property
    def model_swappable(self) -> bool:
        return self.hf_class is not None

    def build(self, options: ToolOptions) -> Tool:
        implementation = self.implementation
        if self.hf_class and self.name in options.models:
            implementation = self.hf_class
        module_name, class_name = implementation.split(":")
        tool_class = getattr(importlib.import_module(f"visextract.tools.{module_name}"), class_name)
        return tool_class(options)


TOOL_SPECS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            "classifier",
            Classification,
            "ImageNet-1k top-5 labels (bundled EfficientNet-Lite0, or any HF image classifier)",
            "classifier:BundledClassifier",
            hf_class="hf_classifier:HfClassifier",
        ),
        ToolSpec("faces", Face, "face boxes and scores (bundled MTCNN)", "faces:MtcnnFaces"),
        ToolSpec("ocr", OcrLine, "text lines with boxes (bundled PP-OCRv4 via rapidocr)", "ocr:RapidOcr"),
        ToolSpec("colors", ColorShare, "dominant colours as hex + fraction", "colors:DominantColors"),
        ToolSpec("nsfw", NsfwFinding, "exposed/covered body parts (bundled NudeNet)", "nsfw:NudeNetDetector"),
        ToolSpec(
            "detector",
            Detection,
            "object boxes (HF object detection)",
            "detector:HfDetector",
            "detector:HfDetector",
        ),
        ToolSpec(
            "captioner",
            Caption,
            "a caption (HF image-to-text)",
            "captioner:HfCaptioner",
            "captioner:HfCaptioner",
        ),
        ToolSpec(
            "zeroshot",
            Classification,
            "scores for --labels (HF CLIP-style)",
            "zeroshot:ClipZeroShot",
            "zeroshot:ClipZeroShot",
        ),
        ToolSpec(
            "openvocab",
            Detection,
            "boxes for --labels text queries (HF OWL-ViT-style)",
            "openvocab:OwlOpenVocab",
            "openvocab:OwlOpenVocab",
        ),
        ToolSpec("vqa", VqaAnswer, "answer to --question (HF VQA)", "vqa:HfVqa", "vqa:HfVqa"),
        ToolSpec(
            "depth",
            DepthSummary,
            "depth min/median/max + map PNG (HF depth)",
            "depth:HfDepth",
            "depth:HfDepth",
        ),
    )
}


def tool_names() -> list[str]:
    return list(TOOL_SPECS)


def result_type_of(tool: str) -> type[ToolResult]:
    """The result model a tool's stored results parse into."""
    return TOOL_SPECS[tool].result_type


def check_model_overrides(models: dict[str, str]) -> None:
    for tool in models:
        if tool not in TOOL_SPECS:
            raise UsageError(f"--model {tool}=...: unknown tool {tool!r}; tools are {', '.join(TOOL_SPECS)}")
        if not TOOL_SPECS[tool].model_swappable:
            raise UsageError(f"--model {tool}=...: the {tool} tool's bundled model cannot be swapped")


def build_tools(names: Iterable[str], options: ToolOptions) -> list[Tool]:
    """Tool instances for `names` (in order, without repeats). Raises UsageError for unknown names."""
    names = list(dict.fromkeys(names))
    for name in names:
        if name not in TOOL_SPECS:
            raise UsageError(f"unknown tool {name!r}: available tools are {', '.join(TOOL_SPECS)}")
    check_model_overrides(options.models)
    tools = [TOOL_SPECS[name].build(options) for name in names]
    for tool in tools:
        problem = tool.usage_problem()
        if problem:
            raise UsageError(problem)
    return tools
