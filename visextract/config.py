"""Settings, read from keyword arguments, then `VISEXTRACT_*` environment variables, then defaults.

VISEXTRACT_DB=postgresql+psycopg://localhost/photos visextract run photos/
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from visextract.errors import UsageError, option_name

DEFAULT_DB_URL = "sqlite:///visextract.db"
DEFAULT_TOOLS: tuple[str, ...] = ("classifier", "faces", "ocr", "colors")


class Settings(BaseSettings):
    """Run-time settings shared by the CLI and the Python API."""

    model_config = SettingsConfigDict(env_prefix="VISEXTRACT_", extra="ignore")

    db: str = Field(DEFAULT_DB_URL, description="SQLAlchemy database URL")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")
    batch_size: int = Field(8, ge=1, description="images per model batch for batched tools")
    images_in_flight: int = Field(16, ge=1, description="images being processed at once (bounds memory)")
    max_side: int = Field(2048, ge=64, description="longest side of the working copy the tools see")
    max_image_pixels: int = Field(
        120_000_000, ge=1, description="larger images are refused as possible decompression bombs"
    )
    threads: int = Field(0, ge=0, description="CPU threads per model batch; 0: one, with batches side by side")
    faces_max_side: int = Field(
        1024, ge=0, description="longest side MTCNN searches (faces under 20 px at that size are missed); 0: all"
    )
    ocr_detector_side: int = Field(
        736, ge=0, description="short side the OCR text detector sees; 0: rapidocr's own (large images whole)"
    )
    llm_model: str = Field("gpt-4o-mini", description="model name for --llm openai (or id/path for --llm local)")
    llm_timeout: float = Field(60.0, gt=0, description="seconds before an LLM request times out (then retried)")
    llm_max_attempts: int = Field(5, ge=1, description="tries per LLM request for transient errors")
    llm_retry_initial_wait: float = Field(1.0, ge=0, description="first back-off wait, doubled each retry")
    llm_retry_max_wait: float = Field(60.0, ge=0, description="longest wait between retries (and for Retry-After)")
    llm_image_max_side: int = Field(1024, ge=64, description="longest side of the image sent to the LLM")
    llm_prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description='USD per 1M (input, output) tokens: {"model": [0.15, 0.6]}'
    )
    run_heartbeat_s: float = Field(
        10.0, gt=0, description="how often a running run renews its heartbeat (a silent run shows as interrupted)"
    )
    search_index: bool = Field(True, description="embed each record's search text (MiniLM) while extracting")
    index_dir: Path | None = Field(
        None, description="where search keeps its vector index (default: next to a SQLite database, else ~/.cache)"
    )
    artifacts_dir: Path | None = Field(
        None, description="where tools save files such as depth maps (default: next to a SQLite database)"
    )

    def updated(self, **changes: Any) -> Settings:
        """A copy with `changes` (None values ignored), validated: a bad value is a UsageError naming the
        option (`--batch-size 0`), never silently accepted."""
        changes = {key: value for key, value in changes.items() if value is not None}
        if not changes:
            return self
        try:
            return type(self).model_validate(self.model_dump() | changes)
        except ValidationError as exc:
            error = exc.errors()[0]
            name = str(error["loc"][0]) if error["loc"] else "setting"
            raise UsageError(f"{option_name(name)} {error['input']!r}: {error['msg'].lower()}") from None
