"""Tool `zeroshot`: how well each of the user's labels (`--labels "cat,dog,car"`) fits the image, with a
CLIP-style model. Default: openai/clip-vit-base-patch32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from visextract.schemas.results import Classification, ToolResult
from visextract.tools.hf_base import HfTool, forward_in_shape_groups, to_model

PROMPT = "a photo of {}"


class ClipZeroShot(HfTool):
    name = "zeroshot"
    default_model = "openai/clip-vit-base-patch32"
    auto_class = "AutoModelForZeroShotImageClassification"

    def usage_problem(self) -> str | None:
        return None if self.options.labels else 'tool zeroshot needs labels: pass --labels "cat,dog,car"'

    def settings_key(self) -> str:
        return f"labels={','.join(self.options.labels)}"

    def predict(self, images: Sequence[Image.Image]) -> list[list[ToolResult]]:
        import torch

        model, processor = self.model(), self.processor()
        labels = list(self.options.labels)
        text = processor(text=[PROMPT.format(label) for label in labels], return_tensors="pt", padding=True)

        def forward(batch: dict[str, Any], _indices: list[int]) -> list[list[ToolResult]]:
            with torch.inference_mode():
                logits = model(**to_model({**text, **batch}, model)).logits_per_image.float()
            probabilities = logits.softmax(dim=-1).cpu()
            return [
                sorted(
                    (
                        Classification(label=label, score=round(float(p), 4))
                        for label, p in zip(labels, row, strict=True)
                    ),
                    key=lambda c: -c.score,
                )
                for row in probabilities
            ]

        return forward_in_shape_groups(images, lambda image: processor(images=image, return_tensors="pt"), forward)
