"""What the accuracy tests and `bench/accuracy.py` share: a photo with faces, the page's transcription, CER, IoU."""

from __future__ import annotations

from pathlib import Path

import skimage.data
from PIL import Image

PAGE_REFERENCE = Path(__file__).resolve().parents[1] / "bench" / "page_reference.txt"  # read off the page


def group_photo() -> Image.Image:
    """A 1600 x 1067 picture with two real faces 40-55 px wide (astronaut, cameraman) and a cat."""
    canvas = Image.new("RGB", (1600, 1067), (120, 130, 125))
    canvas.paste(Image.fromarray(skimage.data.astronaut()).resize((230, 230)), (100, 300))
    canvas.paste(Image.fromarray(skimage.data.camera()).convert("RGB").resize((256, 256)), (900, 200))
    canvas.paste(Image.fromarray(skimage.data.chelsea()).resize((300, 200)), (1200, 700))
    return canvas


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate (edit distance / reference length), whitespace runs counted as one space."""
    ref, hyp = " ".join(reference.split()), " ".join(hypothesis.split())
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / max(1, len(ref))


def iou(a: list[float], b: list[float]) -> float:
    """Intersection over union of two x1 y1 x2 y2 boxes."""
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0
