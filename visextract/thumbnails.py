"""Small JPEG previews of stored images, for the web app and the MCP server.

    jpeg = thumbnail_jpeg(Path("photos/cat.jpg"), 320)     # bytes of a JPEG whose longest side is <= 320

The image is decoded the way extraction decodes it (EXIF orientation applied, 16-bit and transparency
handled, decompression bombs refused), so a preview shows what the tools saw and its boxes line up.
"""

from __future__ import annotations

import io
from pathlib import Path

from visextract.config import Settings
from visextract.images import decode_image, read_image_file

JPEG_QUALITY = 82


def thumbnail_jpeg(path: Path, max_side: int) -> bytes:
    """A JPEG of the image at `path`, upright, its longest side at most `max_side` pixels.

    Raises `visextract.images.ImageLoadError` (one-line reason) when the file is not a usable image.
    """
    file = read_image_file(Path(path))
    image = decode_image(file, max_side=max_side, max_pixels=Settings().max_image_pixels)
    rgb = image.rgb
    if max(rgb.size) > max_side:  # decode_image may enlarge tiny or very thin images; previews never grow
        rgb = rgb.copy()
        rgb.thumbnail((max_side, max_side))
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()
