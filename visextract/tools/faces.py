"""Tool `faces`: face boxes and scores with MTCNN (facenet-pytorch; weights ship in the wheel).

Finds faces only; visextract never tries to tell who someone is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from visextract.local_models.cache import cached_model
from visextract.schemas.results import Face, ToolResult
from visextract.tools.base import Tool, clip_box

MIN_SCORE = 0.95  # MTCNN gives real faces 0.99+; wheel hubs and knots reach 0.92
MIN_SIDE = 20
DETECT_MAX_SIDE = 1280  # faces smaller than ~20 px at this size are not looked for


class MtcnnFaces(Tool):
    name = "faces"

    @property
    def model_id(self) -> str:
        return "mtcnn (bundled)"

    def settings_key(self) -> str:
        return f"min_score={MIN_SCORE}"

    def _model(self) -> Any:
        from visextract.local_models.device import configure_cpu_threads, pick_device

        device = pick_device(self.options.device)
        if device.type == "mps":  # MTCNN uses ops MPS lacks
            device = pick_device("cpu")
        configure_cpu_threads(self.options.threads)

        def load() -> Any:
            from facenet_pytorch import MTCNN

            return MTCNN(keep_all=True, device=device)

        return cached_model(f"mtcnn@{device}", load)

    def load(self) -> None:
        self._model()

    def predict(self, images: Sequence[Image.Image]) -> list[list[ToolResult]]:
        mtcnn = self._model()
        return [self._detect(mtcnn, image) for image in images]

    def _detect(self, mtcnn: Any, image: Image.Image) -> list[ToolResult]:
        if min(image.size) < MIN_SIDE:  # MTCNN's pyramid needs room for its 12-px window
            return []
        factor = min(1.0, DETECT_MAX_SIDE / max(image.size))
        if factor < 1.0:
            image = image.resize((round(image.width * factor), round(image.height * factor)))
        boxes, scores = mtcnn.detect(image)
        if boxes is None:
            return []
        boxes = np.asarray(boxes, dtype=float).reshape(-1, 4) / factor  # numpy 2 may give object arrays
        scores = np.asarray(scores, dtype=float).reshape(-1)
        faces = [
            Face(box=clip_box(box, image.width / factor, image.height / factor), score=round(float(score), 4))
            for box, score in zip(boxes, scores, strict=True)
            if score >= MIN_SCORE
        ]
        return sorted(faces, key=lambda face: -face.score)
