"""Sentence embeddings with the bundled all-MiniLM-L6-v2 (384 dimensions, offline), in plain numpy.

The model is sentence-transformers' all-MiniLM-L6-v2: a 6-layer BERT encoder, mean pooling over
tokens, L2 normalisation. It runs here as a numpy forward pass over the bundled safetensors weights,
with the Rust `tokenizers` library for the WordPiece tokenizer. A search process therefore never
imports torch (about 650 MB of resident memory for the CUDA build): the embedder costs about 100 MB
and embeds one query in a few milliseconds. A test checks that the vectors equal
sentence-transformers' within 1e-5.

    vectors = embed_texts(["a dog on a beach", "a red sports car"])   # (2, 384) float32, unit rows
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from visextract.local_models.bundled import MINILM_ID, minilm_path
from visextract.local_models.cache import cached_model

EMBEDDING_MODEL = MINILM_ID
DIMENSIONS = 384
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
TOKENS_PER_PASS = 1024  # tokens computed at once: bounded working memory, and faster than larger passes
SMALL_BATCH = 4  # up to this many texts (a search query) are embedded on one BLAS thread
_HEADS = 12
_LAYER_NORM_EPS = 1e-12


@dataclass(frozen=True)
class _Layer:
    qkv: np.ndarray  # (384, 1152): query, key and value projections side by side
    qkv_bias: np.ndarray
    attention_out: np.ndarray  # (384, 384)
    attention_out_bias: np.ndarray
    attention_norm: tuple[np.ndarray, np.ndarray]
    intermediate: np.ndarray  # (384, 1536)
    intermediate_bias: np.ndarray
    output: np.ndarray  # (1536, 384)
    output_bias: np.ndarray
    output_norm: tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class MiniLmEncoder:
    """The BERT encoder's weights; linear layers are transposed views, so `x @ W` is one BLAS GEMM."""

    tokenizer: Any  # tokenizers.Tokenizer
    word: np.ndarray
    position: np.ndarray
    token_type: np.ndarray
    embedding_norm: tuple[np.ndarray, np.ndarray]
    layers: tuple[_Layer, ...]

    @classmethod
    def load(cls) -> MiniLmEncoder:
        from tokenizers import Tokenizer

        folder = minilm_path()
        weights = _memory_mapped_safetensors(folder / "model.safetensors")
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)  # the file says 128; sentence-transformers uses 256
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest text in a batch

        def w(name: str) -> np.ndarray:
            return weights[name]

        def norm(prefix: str) -> tuple[np.ndarray, np.ndarray]:
            return w(f"{prefix}.LayerNorm.weight"), w(f"{prefix}.LayerNorm.bias")

        layers = []
        for i in range(6):
            p = f"encoder.layer.{i}"
            a = f"{p}.attention.self"
            layers.append(
                _Layer(
                    qkv=np.concatenate([w(f"{a}.query.weight"), w(f"{a}.key.weight"), w(f"{a}.value.weight")]).T,
                    qkv_bias=np.concatenate([w(f"{a}.query.bias"), w(f"{a}.key.bias"), w(f"{a}.value.bias")]),
                    attention_out=w(f"{p}.attention.output.dense.weight").T,
                    attention_out_bias=w(f"{p}.attention.output.dense.bias"),
                    attention_norm=norm(f"{p}.attention.output"),
                    intermediate=w(f"{p}.intermediate.dense.weight").T,
                    intermediate_bias=w(f"{p}.intermediate.dense.bias"),
                    output=w(f"{p}.output.dense.weight").T,
                    output_bias=w(f"{p}.output.dense.bias"),
                    output_norm=norm(f"{p}.output"),
                )
            )
        return cls(
            tokenizer=tokenizer,
            word=w("embeddings.word_embeddings.weight"),
            position=w("embeddings.position_embeddings.weight"),
            token_type=w("embeddings.token_type_embeddings.weight"),
            embedding_norm=norm("embeddings"),
            layers=tuple(layers),
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length sentence embeddings of one batch, computed TOKENS_PER_PASS tokens at a time (each
        pass padded only to its own longest text), so working memory stays bounded whatever the batch."""
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        rows = max(1, TOKENS_PER_PASS // ids.shape[1])
        return np.concatenate([self._encode(ids[i : i + rows], mask[i : i + rows]) for i in range(0, len(ids), rows)])

    def _encode(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        length = max(1, int(mask.sum(axis=1).max()))  # padding is on the right: drop columns of padding only
        ids, mask = ids[:, :length], mask[:, :length]
        batch = ids.shape[0]
        x = self.word[ids.reshape(-1)] + np.tile(self.position[:length], (batch, 1)) + self.token_type[0]
        x = _layer_norm(x, self.embedding_norm)  # (batch * length, 384): every matmul below is one 2-D GEMM
        # padding keys get the most negative float added, as transformers does (exp underflows to 0)
        key_bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        head = DIMENSIONS // _HEADS
        for layer in self.layers:
            qkv = (x @ layer.qkv + layer.qkv_bias).reshape(batch, length, 3, _HEADS, head)
            q, k, v = (np.ascontiguousarray(qkv[:, :, i].transpose(0, 2, 1, 3)) for i in range(3))
            scores = q @ k.transpose(0, 1, 3, 2)
            scores *= np.float32(1 / math.sqrt(head))
            scores += key_bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = scores @ v  # (batch, heads, length, head)
            context = context.transpose(0, 2, 1, 3).reshape(batch * length, DIMENSIONS)
            x = _layer_norm(context @ layer.attention_out + layer.attention_out_bias + x, layer.attention_norm)
            hidden = _gelu(x @ layer.intermediate + layer.intermediate_bias)
            x = _layer_norm(hidden @ layer.output + layer.output_bias + x, layer.output_norm)
        x = x.reshape(batch, length, DIMENSIONS)
        pooled = (x * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def _memory_mapped_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors file as a read-only memory map (no copy: processes share the pages).

    The format: an 8-byte little-endian header size, a JSON header {name: {dtype, shape, data_offsets}},
    then the raw little-endian data."""
    with path.open("rb") as file:
        header_size = int.from_bytes(file.read(8), "little")
        header = json.loads(file.read(header_size))
    dtypes = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}
    return {
        name: np.memmap(
            path,
            dtype=dtypes[info["dtype"]],
            mode="r",
            offset=8 + header_size + info["data_offsets"][0],
            shape=tuple(info["shape"]),
        )
        for name, info in header.items()
        if name != "__metadata__"
    }


def _layer_norm(x: np.ndarray, weight_bias: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    weight, bias = weight_bias
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + np.float32(_LAYER_NORM_EPS)) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Φ(x), with erf from Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).

    Computed in place in three arrays of x's size (x itself is overwritten: callers pass a fresh one)."""
    z = np.abs(x)
    z *= np.float32(1 / math.sqrt(2))
    t = z * np.float32(0.3275911)
    t += 1
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for coefficient in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(coefficient)
        poly *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z
    np.subtract(1, poly, out=poly)  # erf(|x| / sqrt 2)
    np.copysign(poly, x, out=poly)
    poly += 1
    poly *= np.float32(0.5)
    x *= poly
    return x


def _encoder() -> MiniLmEncoder:
    return cached_model("minilm", MiniLmEncoder.load)


@cache
def _numpy_blas() -> Any:
    """numpy's own OpenBLAS (not torch's or faiss's, which other threads may be using)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(prefix="libscipy_openblas")


def embed_texts(texts: Sequence[str], batch_size: int = 64, threads: int | None = None) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text (texts of similar length are batched together).

    `threads` caps numpy's BLAS threads for the call (a run gives its compute budget's share); a few
    texts (a search query) always use one."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    encoder = _encoder()
    if len(texts) <= SMALL_BATCH:
        # A query's few tokens make small matrices: BLAS threads only add hand-offs (and, on a busy
        # machine, waits for a free core), so one thread is both faster and steadier.
        threads = 1
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding per batch
    vectors = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
    with _numpy_blas().limit(limits=threads) if threads else contextlib.nullcontext():
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            vectors[chosen] = encoder.encode([texts[i] for i in chosen])
    return vectors
