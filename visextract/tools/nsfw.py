"""Tool `nsfw`: exposed/covered body parts with NudeNet's detector (ONNX model ships in the wheel)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from visextract.local_models.cache import cached_model
from visextract.local_models.compute import batch_threads
from visextract.schemas.results import NsfwFinding, ToolResult
from visextract.tools.base import Tool, clip_box

MIN_SCORE = 0.3


class NudeNetDetector(Tool):
    name = "nsfw"
    thread_safe = True  # onnxruntime sessions run concurrently

    @property
    def model_id(self) -> str:
        return "nudenet 320n (bundled)"

    def settings_key(self) -> str:
        return f"min_score={MIN_SCORE}"

    def _detector(self) -> Any:
        threads = batch_threads(self.options.threads)

        def load() -> Any:
            import onnxruntime
            from nudenet import NudeDetector

            detector = NudeDetector()
            options = onnxruntime.SessionOptions()  # NudeDetector's own session takes every core
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            detector.onnx_session = onnxruntime.InferenceSession(
                detector.onnx_session._model_path, sess_options=options, providers=["CPUExecutionProvider"]
            )
            return detector

        return cached_model(f"nudenet@{threads}", load)

    def load(self) -> None:
        self._detector()

    def predict(self, images: Sequence[Image.Image]) -> list[list[ToolResult]]:
        detector = self._detector()
        results: list[list[ToolResult]] = []
        for image in images:
            bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])  # cv2.imread order
            findings = [
                NsfwFinding(
                    label=str(item["class"]).lower(),
                    score=round(float(item["score"]), 4),
                    box=clip_box(
                        [
                            item["box"][0],
                            item["box"][1],
                            item["box"][0] + item["box"][2],
                            item["box"][1] + item["box"][3],
                        ],
                        image.width,
                        image.height,
                    ),
                )
                for item in detector.detect(bgr)
                if float(item["score"]) >= MIN_SCORE
            ]
            results.append(sorted(findings, key=lambda f: -f.score))
        return results
