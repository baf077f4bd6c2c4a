"""The `local` backend: a transformers vision-language model in-process, with JSON-Schema-constrained
decoding (see `local_models.vlm`), so every answer parses into the schema."""

from __future__ import annotations

import asyncio
import base64
import io
import time

from PIL import Image

from visextract.agents.llm.base import CallLog, LlmReply, LlmUnavailableError, StructuredRequest
from visextract.local_models.vlm import UnfinishedJsonError


class LocalVisionLlm:
    def __init__(self, model: str, device: str = "auto") -> None:
        from visextract.local_models.vlm import LocalVlm

        self.vlm = LocalVlm(model, device=device)

    @property
    def model_name(self) -> str:
        return self.vlm.model_id

    def missing_reason(self) -> str | None:
        return self.vlm.missing_reason()

    async def complete(self, request: StructuredRequest) -> LlmReply:
        started = time.perf_counter()
        image = _decode_data_url(request.image.data_url) if request.image else None
        turns = [{"role": turn.role, "content": turn.text} for turn in request.turns]
        try:
            generated = await asyncio.to_thread(self.vlm.generate_json, turns, image, request.json_schema)
        except UnfinishedJsonError as exc:  # the schema is unbounded and the model never closed the JSON
            call = CallLog(self.model_name, "constrained", "error", round(time.perf_counter() - started, 3), str(exc))
            raise LlmUnavailableError(str(exc), [call]) from None
        call = CallLog(
            model=self.model_name,
            mode="constrained",
            status="ok",
            seconds=round(time.perf_counter() - started, 3),
            response_text=generated.text,
            prompt_tokens=generated.prompt_tokens,
            completion_tokens=generated.completion_tokens,
        )
        return LlmReply(
            text=generated.text,
            model=self.model_name,
            prompt_tokens=generated.prompt_tokens,
            completion_tokens=generated.completion_tokens,
            calls=[call],
        )


def _decode_data_url(data_url: str) -> Image.Image:
    payload = data_url.split(",", 1)[1]
    return Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB")
