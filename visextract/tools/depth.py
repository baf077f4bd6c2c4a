"""Tool `depth`: relative depth statistics per image, and the depth map saved as a 16-bit PNG.
Default: Intel/dpt-large. DPT predicts relative inverse depth: larger values are closer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visextract.images import LoadedImage
from visextract.schemas.results import DepthSummary, ToolResult
from visextract.tools.hf_base import HfTool, forward_in_shape_groups, to_model


class HfDepth(HfTool):
    name = "depth"
    default_model = "Intel/dpt-large"
    auto_class = "AutoModelForDepthEstimation"
    processor_class = "AutoImageProcessor"

    def depth_maps(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """One float32 depth map per image, at the image's size."""
        import torch

        model, processor = self.model(), self.processor()

        def forward(batch: dict[str, Any], indices: list[int]) -> list[np.ndarray]:
            with torch.inference_mode():
                outputs = model(**to_model(batch, model))
            outputs.predicted_depth = outputs.predicted_depth.float()
            sizes = [(images[i].height, images[i].width) for i in indices]
            maps = processor.post_process_depth_estimation(outputs, target_sizes=sizes)
            return [item["predicted_depth"].cpu().numpy().astype(np.float32) for item in maps]

        return forward_in_shape_groups(images, lambda image: processor(images=image, return_tensors="pt"), forward)

    def predict(self, images: Sequence[Image.Image]) -> list[list[ToolResult]]:
        return [[_summary(depth, None)] for depth in self.depth_maps(images)]

    def run(self, images: Sequence[LoadedImage]) -> list[list[ToolResult]]:
        """Like `predict`; also saves each map as `<artifacts>/depth/<sha256>.png` if artifacts_dir is set."""
        maps = self.depth_maps([image.rgb for image in images])
        folder = self.options.artifacts_dir
        results: list[list[ToolResult]] = []
        for image, depth in zip(images, maps, strict=True):
            path = None
            if folder is not None:
                path = Path(folder) / "depth" / f"{image.sha256}.png"
                save_depth_png(depth, path)
            results.append([_summary(depth, str(path) if path else None)])
        return results


def _summary(depth: np.ndarray, path: str | None) -> DepthSummary:
    return DepthSummary(
        min=round(float(depth.min()), 4),
        median=round(float(np.median(depth)), 4),
        max=round(float(depth.max()), 4),
        map_path=path,
    )


def save_depth_png(depth: np.ndarray, path: Path) -> None:
    """Save a depth map normalised to the full 16-bit range (relative values are what DPT gives)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    low, high = float(depth.min()), float(depth.max())
    scaled = (depth - low) / (high - low) if high > low else np.zeros_like(depth)
    Image.fromarray((scaled * 65535).astype(np.uint16)).save(path)
