"""Tool `colors`: dominant colours (median-cut quantisation); their names come from `visextract.color_names`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from visextract.schemas.results import ColorShare, ToolResult
from visextract.tools.base import Tool

SAMPLE_SIDE = 96
PALETTE_SIZE = 8
MIN_FRACTION = 0.02


class DominantColors(Tool):
    name = "colors"
    thread_safe = True

    @property
    def model_id(self) -> str:
        return "median-cut"

    def load(self) -> None:
        return None

    def predict(self, images: Sequence[Image.Image]) -> list[list[ToolResult]]:
        return [dominant_colors(image) for image in images]


def dominant_colors(image: Image.Image) -> list[ToolResult]:
    """The main colours of `image`, most area first; similar palette entries are merged."""
    small = image.convert("RGB")
    small.thumbnail((SAMPLE_SIDE, SAMPLE_SIDE), Image.Resampling.BILINEAR)
    quantized = small.quantize(colors=PALETTE_SIZE, method=Image.Quantize.MEDIANCUT)
    palette = np.asarray(quantized.getpalette()[: PALETTE_SIZE * 3], dtype=float).reshape(-1, 3)
    counts = np.bincount(np.asarray(quantized).ravel(), minlength=PALETTE_SIZE)[:PALETTE_SIZE]
    total = counts.sum()
    merged: list[tuple[np.ndarray, int]] = []
    for index in np.argsort(-counts):
        if counts[index] == 0:
            continue
        rgb = palette[index]
        for i, (kept, count) in enumerate(merged):
            if np.abs(kept - rgb).max() <= 24:  # visually the same colour
                merged[i] = (
                    (kept * count + rgb * counts[index]) / (count + counts[index]),
                    count + counts[index],
                )
                break
        else:
            merged.append((rgb, int(counts[index])))
    merged.sort(key=lambda item: -item[1])
    return [
        ColorShare(hex=_hex(rgb), fraction=round(count / total, 3))
        for rgb, count in merged
        if count / total >= MIN_FRACTION
    ]


def _hex(rgb: np.ndarray) -> str:
    r, g, b = (round(float(v)) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"
