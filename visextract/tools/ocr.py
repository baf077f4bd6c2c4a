"""Tool `ocr`: text lines with PP-OCRv4 through rapidocr (ONNX models ship in the wheel).

Recognition runs only on regions the text detector found, so text-free photos are cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from visextract.local_models.cache import cached_model
from visextract.local_models.device import available_cores
from visextract.schemas.results import OcrLine, ToolResult
from visextract.tools.base import Tool

MIN_SCORE = 0.7  # PP-OCR scores real text 0.8+; below 0.7 it is mostly texture read as letters
MIN_SIDE = 8
MAX_ASPECT = 60


class RapidOcr(Tool):
    name = "ocr"

    @property
    def model_id(self) -> str:
        return "pp-ocrv4 (bundled)"

    def settings_key(self) -> str:
        return f"min_score={MIN_SCORE}"

    def _engine(self) -> Any:
        threads = self.options.threads or available_cores()

        def load() -> Any:
            from rapidocr_onnxruntime import RapidOCR

            return RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)

        return cached_model(f"rapidocr@{threads}", load)

    def load(self) -> None:
        self._engine()

    def predict(self, images: Sequence[Image.Image]) -> list[list[ToolResult]]:
        engine = self._engine()
        return [self._read(engine, image) for image in images]

    def _read(self, engine: Any, image: Image.Image) -> list[ToolResult]:
        if min(image.size) < MIN_SIDE or max(image.size) > MAX_ASPECT * min(image.size):
            return []  # too small or too thin a strip to hold readable text (PP-OCR fails on them)
        found, _elapsed = engine(image)
        lines: list[ToolResult] = []
        for points, text, score in found or []:
            xs = [float(p[0]) for p in points]
            ys = [float(p[1]) for p in points]
            text = str(text).strip()
            if text and float(score) >= MIN_SCORE:
                box = [round(min(xs), 1), round(min(ys), 1), round(max(xs), 1), round(max(ys), 1)]
                lines.append(OcrLine(text=text, score=round(float(score), 4), box=box))
        return lines
