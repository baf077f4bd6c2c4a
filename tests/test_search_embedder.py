"""Search embeddings during extraction: MiniLM runs in a child process, and no image waits for its vector."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from sqlmodel import select

import visextract as vx
from visextract.agents.extraction_nodes import save_record
from visextract.agents.extraction_state import ExtractionContext
from visextract.config import Settings
from visextract.local_models.embedder import DIMENSIONS, embed_texts
from visextract.schemas.registry import load_schema
from visextract.store import Store
from visextract.store.tables import RecordEmbeddingRow, RecordRow
from visextract.tools.batcher import Batcher

TEXTS = ["a red car parked in the street", "a cat asleep on a sofa", "Region-based segmentation"]


def test_a_run_never_imports_torch_for_its_search_index(photos, tmp_path):
    """The run's own process stays free of torch and transformers; the records still get their vectors."""
    db = f"sqlite:///{tmp_path / 'colors.db'}"
    code = (
        "import sys, visextract as vx\n"
        f"summary = vx.Extractor(db={db!r}, tools=['colors'], llm=None).run({str(photos)!r})\n"
        "print(summary.processed, 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["5", "False", "False"]
    with Store(db).read() as session:
        records = session.exec(select(RecordRow.id)).all()
        vectors = session.exec(select(RecordEmbeddingRow)).all()
    assert len(vectors) == len(records) == 5
    assert all(len(row.vector) == DIMENSIONS * 4 for row in vectors)


def test_storing_a_record_does_not_wait_for_its_search_embedding(tmp_path):
    """While the embedder's model is still loading, records are stored and their images leave the run."""
    db = f"sqlite:///{tmp_path / 'records.db'}"
    store = Store(db)
    schema = load_schema("scene")
    model_loaded = threading.Event()

    def embed(texts: list[str]) -> list[bytes]:
        model_loaded.wait(60)  # a model still loading
        return [vector.tobytes() for vector in embed_texts(texts)]

    embedder: Batcher[str, bytes] = Batcher("embed", embed, batch_size=8)
    writer = ThreadPoolExecutor(max_workers=1)
    context = ExtractionContext(
        store=store,
        schema=schema,
        tools={},
        batchers={},
        settings=Settings(db=db),
        run_id=store.start_run(schema, {}, {}),
        writer=writer,
        embedder=embedder,
    )
    state = {"path": str(tmp_path / "cup.jpg"), "status": "ok", "complete": True, "data": {"labels": ["espresso"]}}
    saved = asyncio.run(asyncio.wait_for(save_record(state, context), timeout=30))  # not held by the embedder
    record_id = saved.record_id
    with store.read() as session:
        assert session.get(RecordRow, record_id) is not None
        assert session.get(RecordEmbeddingRow, record_id) is None
    model_loaded.set()
    embedder.close()  # the run closes the embedder, then the writer: the last vectors are stored
    writer.shutdown(wait=True)
    with store.read() as session:
        row = session.get(RecordEmbeddingRow, record_id)
    assert row is not None and any("espresso" in segment for segment in row.segments)
    expected = embed_texts(["\n".join(row.segments)])[0]
    np.testing.assert_allclose(np.frombuffer(row.vector, np.float32), expected, atol=1e-6)


def test_a_failed_embedding_is_a_warning_and_the_record_stays(photos, tmp_path, caplog):
    db = f"sqlite:///{tmp_path / 'records.db'}"
    vx.Extractor(settings=Settings(db=db, search_index=False), tools=["colors"], llm=None).run(photos / "coffee.jpg")
    store = Store(db)
    with store.read() as session:
        (record_id,) = session.exec(select(RecordRow.id)).all()

    def broken(texts: list[str]) -> list[bytes]:
        raise RuntimeError("search embeddings: the embedding process exited")

    embedder: Batcher[str, bytes] = Batcher("embed", broken, batch_size=8)
    writer = ThreadPoolExecutor(max_workers=1)
    context = ExtractionContext(
        store=store, schema=load_schema("scene"), tools={}, batchers={}, settings=Settings(db=db), run_id=1,
        writer=writer, embedder=embedder,
    )  # fmt: skip
    with caplog.at_level("WARNING", logger="visextract"):
        context.index_for_search(str(Path("coffee.jpg")), record_id, ["coffee"])
        embedder.close()
        writer.shutdown(wait=True)
    assert "could not index coffee.jpg for search: search embeddings: the embedding process exited" in caplog.text
    with store.read() as session:
        assert session.get(RecordRow, record_id) is not None
        assert session.get(RecordEmbeddingRow, record_id) is None


def test_a_large_batch_of_long_texts_is_embedded_in_bounded_memory_with_the_same_vectors():
    """8 texts of 256 tokens: one pass would hold 8 x 12 heads x 256 x 256 attention scores (25 MB, and
    several copies of them); in passes of TOKENS_PER_PASS tokens the peak stays small, and each vector is
    what the text gets on its own."""
    import tracemalloc

    texts = [f"photo {i}: " + " ".join(f"word{i}x{j}" for j in range(60)) for i in range(8)]
    embed_texts(texts[:2])  # the model is loaded outside the measurement
    tracemalloc.start()
    try:
        vectors = embed_texts(texts)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 75 * 2**20, f"peak {peak / 2**20:.0f} MB"
    alone = np.vstack([embed_texts([text]) for text in texts[:2]])
    np.testing.assert_allclose(vectors[:2], alone, atol=1e-5)
