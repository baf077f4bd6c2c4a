"""Tool `captioner`: a sentence describing the image (BLIP, GIT, ViT-GPT2... any image-to-text model).
Default: Salesforce/blip-image-captioning-base.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from visextract.schemas.results import Caption, ToolResult
from visextract.tools.hf_base import HfTool, forward_in_shape_groups, to_model

MAX_NEW_TOKENS = 30


class HfCaptioner(HfTool):
    name = "captioner"
    default_model = "Salesforce/blip-image-captioning-base"
    auto_class = "AutoModelForImageTextToText"

    def settings_key(self) -> str:
        return f"max_new_tokens={MAX_NEW_TOKENS}"

    def predict(self, images: Sequence[Image.Image]) -> list[list[ToolResult]]:
        import torch

        model, processor = self.model(), self.processor()

        def forward(batch: dict[str, Any], _indices: list[int]) -> list[list[ToolResult]]:
            with torch.inference_mode():
                generated = model.generate(**to_model(batch, model), max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
            texts = processor.batch_decode(generated, skip_special_tokens=True)
            return [[Caption(text=" ".join(text.split()))] if text.strip() else [] for text in texts]

        return forward_in_shape_groups(images, lambda image: processor(images=image, return_tensors="pt"), forward)
