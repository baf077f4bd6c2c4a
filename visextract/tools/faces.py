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
MIN_FACE = 20  # MTCNN's smallest face, in pixels of the image it searches


class MtcnnFaces(Tool):
    """MTCNN searches a copy whose longest side is at most `faces_max_side` (1024 px by default), and
    boxes are scaled back to original pixels. Its image pyramid starts at 12/MIN_FACE of that size, so
    searching a 1600 px photo at 1024 px costs about 40% of searching it whole; faces smaller than
    MIN_FACE px at that size (31 px in a 1600 px photo) are not looked for. `faces_max_side=0` searches
    the whole working copy.
    """

    name = "faces"
    thread_safe = True

    @property
    def model_id(self) -> str:
        return "mtcnn (bundled)"

    def settings_key(self) -> str:
        return f"min_score={MIN_SCORE},max_side={self.options.faces_max_side or 'full'}"

    def uses_cpu(self) -> bool:
        return self._device().type == "cpu"

    def _device(self) -> Any:
        from visextract.local_models.device import pick_device

        device = pick_device(self.options.device)
        return pick_device("cpu") if device.type == "mps" else device  # MTCNN uses ops MPS lacks

    def _model(self) -> Any:
        device = self._device()

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
        width, height = image.size
        max_side = self.options.faces_max_side
        factor = min(1.0, max(max_side / max(width, height), MIN_SIDE / min(width, height))) if max_side else 1.0
        if factor < 1.0:  # (a thin strip keeps the MIN_SIDE the pyramid needs)
            image = image.resize(
                (round(width * factor), round(height * factor)), Image.Resampling.BILINEAR, reducing_gap=3.0
            )
        boxes, scores = mtcnn.detect(image)
        if boxes is None:
            return []
        scale = np.array([width / image.width, height / image.height] * 2)  # back to the pixels we were given
        boxes = np.asarray(boxes, dtype=float).reshape(-1, 4) * scale  # numpy 2 may give object arrays
        scores = np.asarray(scores, dtype=float).reshape(-1)
        faces = [
            Face(box=clip_box(box, width, height), score=round(float(score), 4))
            for box, score in zip(boxes, scores, strict=True)
            if score >= MIN_SCORE
        ]
        return sorted(faces, key=lambda face: -face.score)
