"""JPEG thumbnails of stored images, for surfaces that show them (MCP `get_image`, the web app's `/thumb`).

    path = store.image_source(sha256)              # a file holding that content, never a user's path
    jpeg = thumbnail_jpeg(path, 512, sha256=sha256)  # upright, RGB, longest side <= 512 px

Decoding goes through `visextract.images` (EXIF orientation, transparency on white, 16-bit and CMYK to
8-bit RGB, decompression-bomb guard, libjpeg draft mode for large JPEGs), so a thumbnail shows exactly
what the tools saw. A file that cannot be used raises `ImageLoadError` with a one-line reason.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image

from visextract.images import ImageLoadError, decode_image, read_image_file

DEFAULT_MAX_PIXELS = 120_000_000  # the default of Settings.max_image_pixels


def thumbnail_jpeg(
    path: str | os.PathLike[str],
    max_side: int = 320,
    *,
    sha256: str | None = None,
    quality: int = 85,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> bytes:
    """The image at `path` as JPEG bytes: upright, RGB, aspect kept, longest side at most `max_side`.

    Smaller images keep their size. With `sha256`, a file that no longer holds that content raises
    ImageLoadError instead of showing a different picture than the one asked for.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be 1 or more, not {max_side}")
    file = read_image_file(Path(path))
    if sha256 is not None and file.sha256 != sha256.lower():
        raise ImageLoadError(f"{path} no longer holds this image: it changed since it was extracted")
    image = decode_image(file, max_side=max_side, max_pixels=max_pixels)
    size = _fit(image.width, image.height, max_side)
    rgb = image.rgb
    if abs(rgb.width - size[0]) > 1 or abs(rgb.height - size[1]) > 1:
        # the tools' working copy enlarges tiny images and stretches thin strips; a thumbnail does not
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def _fit(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled down to fit in max_side x max_side, never up."""
    factor = min(1.0, max_side / max(width, height))
    return max(1, round(width * factor)), max(1, round(height * factor))
