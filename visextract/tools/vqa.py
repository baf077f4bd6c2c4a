"""Tool `vqa`: an answer to the run's `--question` for every image, with a visual question answering
model. Default: dandelin/vilt-b32-finetuned-vqa.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from visextract.schemas.results import ToolResult, VqaAnswer
from visextract.tools.hf_base import HfTool, forward_in_shape_groups, to_model


class HfVqa(HfTool):
    name = "vqa"
    default_model = "dandelin/vilt-b32-finetuned-vqa"
    auto_class = "AutoModelForVisualQuestionAnswering"

    def usage_problem(self) -> str | None:
        return (
            None if self.options.question else 'tool vqa needs a question: pass --question "how many people are there?"'
        )

    @property
    def question(self) -> str:
        assert self.options.question is not None
        return self.options.question

    def settings_key(self) -> str:
        return f"question={self.question}"

    def predict(self, images: Sequence[Image.Image]) -> list[list[ToolResult]]:
        import torch

        model, processor = self.model(), self.processor()
        id2label = model.config.id2label

        def encode(image: Image.Image) -> dict[str, Any]:
            return processor(images=image, text=self.question, return_tensors="pt", truncation=True)

        def forward(batch: dict[str, Any], _indices: list[int]) -> list[list[ToolResult]]:
            with torch.inference_mode():
                scores = model(**to_model(batch, model)).logits.float().sigmoid().cpu()
            best = scores.max(dim=-1)
            return [
                [VqaAnswer(question=self.question, answer=str(id2label[int(i)]), score=round(float(s), 4))]
                for s, i in zip(best.values, best.indices, strict=True)
            ]

        return forward_in_shape_groups(images, encode, forward)
