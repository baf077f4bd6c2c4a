"""Images as multimodal LLMs receive them: a downscaled JPEG in a base64 data URL."""

from __future__ import annotations

import base64
import io

from visextract.agents.llm.base import ImageInput
from visextract.images import LoadedImage


def encode_for_llm(image: LoadedImage, max_side: int, detail: str) -> ImageInput:
    """The image as a base64 JPEG data URL, longest side at most `max_side`."""
    copy = image.rgb.copy()
    copy.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    copy.save(buffer, format="JPEG", quality=85)
    data_url = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return ImageInput(data_url=data_url, width=copy.width, height=copy.height, detail=detail)
