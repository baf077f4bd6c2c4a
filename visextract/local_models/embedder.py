"""Sentence embeddings with the bundled all-MiniLM-L6-v2 (384 dimensions, offline).

The model is sentence-transformers' all-MiniLM-L6-v2: a BERT encoder, mean pooling over tokens,
L2 normalisation. It runs here through transformers directly, which loads in about a second instead
of the three that importing sentence-transformers takes; a test checks both give the same vectors.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from visextract.local_models.bundled import MINILM_ID, minilm_path
from visextract.local_models.cache import cached_model

EMBEDDING_MODEL = MINILM_ID
DIMENSIONS = 384
MAX_TOKENS = 256  # the model's max_seq_length

_lock = threading.Lock()


def _encoder() -> tuple[Any, Any]:
    def load() -> tuple[Any, Any]:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        folder = str(minilm_path())
        return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()

    return cached_model("minilm", load, exclusive=True)


def embed_texts(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text."""
    import torch

    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    tokenizer, model = _encoder()
    chunks = []
    with _lock, torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=MAX_TOKENS,
                return_tensors="pt",
            )
            tokens = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, p=2, dim=1).numpy())
    return np.vstack(chunks).astype(np.float32)
