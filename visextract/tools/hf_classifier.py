"""Tool `classifier` with a transformers model (`--model classifier=google/vit-base-patch16-224`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from visextract.schemas.results import Classification, ToolResult
from visextract.tools.hf_base import HfTool, forward_in_shape_groups, to_model

TOP_K = 5


class HfClassifier(HfTool):
    name = "classifier"
    default_model = "google/vit-base-patch16-224"
    auto_class = "AutoModelForImageClassification"
    processor_class = "AutoImageProcessor"

    def predict(self, images: Sequence[Image.Image]) -> list[list[ToolResult]]:
        import torch

        model, processor = self.model(), self.processor()
        id2label = model.config.id2label
        multi_label = model.config.problem_type == "multi_label_classification"

        def forward(batch: dict[str, Any], _indices: list[int]) -> list[list[ToolResult]]:
            with torch.inference_mode():
                logits = model(**to_model(batch, model)).logits.float()
            scores = logits.sigmoid() if multi_label else logits.softmax(dim=-1)
            top = scores.topk(min(TOP_K, scores.shape[-1]), dim=-1)
            return [
                [
                    Classification(label=str(id2label[int(i)]), score=round(float(s), 4))
                    for s, i in zip(values, indices, strict=True)
                ]
                for values, indices in zip(top.values.cpu(), top.indices.cpu(), strict=True)
            ]

        return forward_in_shape_groups(images, lambda image: processor(images=image, return_tensors="pt"), forward)
