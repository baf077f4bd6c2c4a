"""Tool `openvocab`: boxes for the user's text queries (`--labels "a red car,a bicycle"`) with an
open-vocabulary detector. Default: google/owlvit-base-patch32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from visextract.schemas.results import Detection, ToolResult
from visextract.tools.base import clip_box
from visextract.tools.hf_base import HfBoxTool, float_outputs, forward_in_shape_groups, to_model

DEFAULT_THRESHOLD = 0.1  # OWL-ViT scores run low; 0.1 is its authors' demo cut-off


class OwlOpenVocab(HfBoxTool):
    name = "openvocab"
    default_model = "google/owlvit-base-patch32"
    auto_class = "AutoModelForZeroShotObjectDetection"
    default_threshold = DEFAULT_THRESHOLD

    def usage_problem(self) -> str | None:
        return None if self.options.labels else 'tool openvocab needs text queries: pass --labels "a red car,a bicycle"'

    def settings_key(self) -> str:
        return f"labels={','.join(self.options.labels)};threshold={self.threshold}"

    def predict(self, images: Sequence[Image.Image]) -> list[list[ToolResult]]:
        import torch

        model, processor = self.model(), self.processor()
        queries = list(self.options.labels)

        def encode(image: Image.Image) -> dict[str, Any]:
            return processor(text=[queries], images=image, return_tensors="pt", truncation=True)

        def forward(batch: dict[str, Any], indices: list[int]) -> list[list[ToolResult]]:
            with torch.inference_mode():
                outputs = float_outputs(model(**to_model(batch, model)))
            found = processor.post_process_grounded_object_detection(
                outputs,
                threshold=self.threshold,
                target_sizes=[(images[i].height, images[i].width) for i in indices],
                text_labels=[queries] * len(indices),
            )
            return [
                sorted(
                    (
                        Detection(
                            label=queries[int(label)],
                            score=round(float(score), 4),
                            box=clip_box(box.tolist(), images[i].width, images[i].height),
                        )
                        for score, label, box in zip(item["scores"], item["labels"], item["boxes"], strict=True)
                    ),
                    key=lambda d: -d.score,
                )
                for item, i in zip(found, indices, strict=True)
            ]

        return forward_in_shape_groups(images, encode, forward)
