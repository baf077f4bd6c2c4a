"""Sentence embeddings with the bundled all-MiniLM-L6-v2 (384 dimensions, offline)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from visextract.local_models.bundled import MINILM_ID, minilm_path
from visextract.local_models.cache import cached_model

EMBEDDING_MODEL = MINILM_ID
DIMENSIONS = 384


def _model() -> Any:
    def load() -> Any:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        return SentenceTransformer(str(minilm_path()), device="cpu")

    return cached_model("minilm", load)


def embed_texts(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    vectors = _model().encode(list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)
