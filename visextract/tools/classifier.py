"""Tool `classifier`: ImageNet-1k top-5 with the bundled EfficientNet-Lite0 (offline, real weights).

`--model classifier=HF_ID_OR_PATH` swaps in a transformers image classifier instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from visextract.local_models.bundled import EFFICIENTNET_LITE0_ID, imagenet_labels, load_efficientnet_lite0
from visextract.local_models.cache import cached_model
from visextract.schemas.results import Classification, ToolResult
from visextract.tools.base import Tool

TOP_K = 5
RESIZE_SHORT_SIDE = 256
CROP = 224


class BundledClassifier(Tool):
    name = "classifier"
    thread_safe = True

    @property
    def model_id(self) -> str:
        return EFFICIENTNET_LITE0_ID

    def uses_cpu(self) -> bool:
        from visextract.local_models.device import pick_device

        return pick_device(self.options.device).type == "cpu"

    def _model(self) -> Any:
        from visextract.local_models.device import pick_device

        device = pick_device(self.options.device)
        return cached_model(f"efficientnet-lite0@{device}", lambda: load_efficientnet_lite0().to(device))

    def load(self) -> None:
        self._model()
        imagenet_labels()

    def predict(self, images: Sequence[Image.Image]) -> list[list[ToolResult]]:
        import torch

        model = self._model()
        device = next(model.parameters()).device
        batch = torch.from_numpy(np.stack([preprocess(image) for image in images])).to(device)
        with torch.inference_mode():
            probabilities = model(batch).float().softmax(dim=-1)
        top = probabilities.topk(TOP_K, dim=-1)
        labels = imagenet_labels()
        return [
            [
                Classification(label=labels[int(i)], score=round(float(s), 4))
                for s, i in zip(scores, indices, strict=True)
            ]
            for scores, indices in zip(top.values.cpu(), top.indices.cpu(), strict=True)
        ]


def preprocess(image: Image.Image) -> np.ndarray:
    """EfficientNet-Lite's TF-style input: short side 256, centre crop 224, (rgb*255 - 127) / 128, CHW."""
    width, height = image.size
    factor = RESIZE_SHORT_SIDE / min(width, height)
    resized = image.resize(
        (max(CROP, round(width * factor)), max(CROP, round(height * factor))), Image.Resampling.BILINEAR
    )
    left = (resized.width - CROP) // 2
    top = (resized.height - CROP) // 2
    crop = np.asarray(resized.crop((left, top, left + CROP, top + CROP)), dtype=np.float32)
    return ((crop - 127.0) / 128.0).transpose(2, 0, 1)
