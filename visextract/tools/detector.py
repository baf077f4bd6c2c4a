"""Tool `detector`: object boxes with any transformers object-detection model (DETR, Conditional DETR,
YOLOS, RT-DETR, ...). Default: microsoft/conditional-detr-resnet-50. `--detector-threshold` sets the cut-off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from visextract.schemas.results import Detection, ToolResult
from visextract.tools.base import clip_box
from visextract.tools.hf_base import HfBoxTool, float_outputs, forward_in_shape_groups, to_model

DEFAULT_THRESHOLD = 0.5


class HfDetector(HfBoxTool):
    name = "detector"
    default_model = "microsoft/conditional-detr-resnet-50"
    auto_class = "AutoModelForObjectDetection"
    processor_class = "AutoImageProcessor"
    default_threshold = DEFAULT_THRESHOLD

    def settings_key(self) -> str:
        return f"threshold={self.threshold}"

    def predict(self, images: Sequence[Image.Image]) -> list[list[ToolResult]]:
        import torch

        model, processor = self.model(), self.processor()
        id2label = model.config.id2label

        def forward(batch: dict[str, Any], indices: list[int]) -> list[list[ToolResult]]:
            with torch.inference_mode():
                outputs = model(**to_model(batch, model))
            outputs = float_outputs(outputs)
            sizes = [(images[i].height, images[i].width) for i in indices]
            found = processor.post_process_object_detection(outputs, threshold=self.threshold, target_sizes=sizes)
            return [
                _detections(item, id2label, images[i].width, images[i].height)
                for item, i in zip(found, indices, strict=True)
            ]

        return forward_in_shape_groups(images, lambda image: processor(images=image, return_tensors="pt"), forward)


def _detections(item: dict[str, Any], id2label: dict[int, str], width: int, height: int) -> list[ToolResult]:
    detections = [
        Detection(
            label=str(id2label.get(int(label), f"class {int(label)}")),
            score=round(float(score), 4),
            box=clip_box(box.tolist(), width, height),
        )
        for score, label, box in zip(item["scores"], item["labels"], item["boxes"], strict=True)
    ]
    return sorted(detections, key=lambda d: -d.score)
