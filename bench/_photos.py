"""Benchmark inputs: folders of distinct real photos, generated from scikit-image / scikit-learn samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZES = [(640, 427), (1024, 683), (1600, 1067), (800, 800)]


def sample_arrays() -> list[np.ndarray]:
    import skimage.data
    from sklearn.datasets import load_sample_images

    arrays = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]
    arrays += list(load_sample_images().images)
    page = skimage.data.page()
    arrays.append(np.stack([page] * 3, axis=-1))
    return arrays


def make_photos(folder: Path, count: int, offset: int = 0) -> list[Path]:
    """`count` distinct JPEGs in a few sizes (each a different crop of a real photo); `offset` skips
    that many first photos of the sequence, so two folders can hold different photos."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = sample_arrays()
    paths = []
    for i in range(offset, offset + count):
        base = Image.fromarray(arrays[i % len(arrays)]).convert("RGB")
        shift = (i // len(arrays)) % 20  # every (source, shift, shift2) triple is a different crop
        shift2 = i // (len(arrays) * 20)
        crop = base.crop((shift, shift2, base.width - shift2, base.height - shift))
        photo = crop.resize(SIZES[i % len(SIZES)], Image.Resampling.BICUBIC)
        path = folder / f"photo_{i:05d}.jpg"
        if not path.exists():
            photo.save(path, quality=88)
        paths.append(path)
    return paths


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` shows them."""
    import os

    return ", ".join(f"{value:.2f}" for value in os.getloadavg())
