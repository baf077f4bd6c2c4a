"""Latency of `sql` and `search` over 100,000 records, after warm-up (p50 and p95).

    .venv/bin/python bench/query.py [--records 100000] [--db postgresql+psycopg://...]

The records are synthetic but shaped like real ones: scene records with ImageNet labels (and their
descriptions), face counts, OCR-like text and colours; each has a real MiniLM embedding of its search
text (a few hundred distinct texts are embedded, then reused with a little noise). Target: p50 < 50 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from _synthetic import insert_images

SQL = [
    "SELECT count(*) AS n FROM scene WHERE face_count > 0",
    "SELECT path, labels FROM scene WHERE face_count = 2 LIMIT 20",
    "SELECT path FROM record WHERE status = 'needs_review' LIMIT 10",
    "SELECT status, count(*) AS n FROM record GROUP BY status",
]
SEARCHES = [
    "a small rodent in a tree",
    "a printed page of text",
    "a red sports car",
    "people at a party",
    "a cup of coffee on a table",
    "a dog on a beach",
    "a mountain landscape",
    "a receipt from a shop",
]


def build(url: str, count: int) -> None:
    import numpy as np

    from visextract.local_models.bundled import imagenet_labels
    from visextract.local_models.embedder import EMBEDDING_MODEL, embed_texts
    from visextract.schemas.scene import SCENE
    from visextract.schemas.search_text import label_description
    from visextract.store import Store
    from visextract.store.tables import RecordEmbeddingRow, RecordRow, utc_now

    store = Store(url)
    store.start_run(SCENE, {}, {"synthetic": count})
    rng = random.Random(7)
    labels = imagenet_labels()
    colors = ["red", "blue", "green", "white", "black", "brown", "gray", "yellow"]
    distinct = []
    for _ in range(400):
        label = labels[rng.randrange(1000)]
        faces = rng.choice([0, 0, 0, 1, 2, 3])
        text = rng.choice([None, None, "OPEN 24 HOURS", "TOTAL 12.50 EUR", "Chapter one. It was a dark night"])
        data = {"labels": [label], "face_count": faces, "text": text, "dominant_colors": rng.sample(colors, 2)}
        segments = [f"{label}: {label_description(label)}", f"colors: {', '.join(data['dominant_colors'])}"]
        if faces:
            segments.append(f"people: {faces} people (faces visible)")
        if text:
            segments.append(f"some text is visible: {text}")
        distinct.append((data, segments))
    vectors = embed_texts(["\n".join(segments) for _, segments in distinct])
    now = utc_now()
    noise = np.random.default_rng(7)
    chunk = 5000
    with store.engine.begin() as connection:
        for start in range(0, count, chunk):
            ids = range(start + 1, min(count, start + chunk) + 1)
            insert_images(connection, ids, now)
            rows, embeddings = [], []
            for i in ids:
                data, segments = distinct[i % len(distinct)]
                status = "needs_review" if i % 97 == 0 else "ok"
                rows.append({"id": i, "subject": f"{i:064x}", "image_id": i, "path": f"/photos/{i:06d}.jpg",
                             "schema_name": "scene", "schema_version": SCENE.version, "tools": {}, "tools_key": "",
                             "status": status, "complete": True, "data": data, "provenance": {}, "created_at": now,
                             "is_current": True})  # fmt: skip
                vector = vectors[i % len(distinct)] + noise.normal(0, 0.01, vectors.shape[1]).astype(np.float32)
                vector /= np.linalg.norm(vector)
                embeddings.append({"record_id": i, "model": EMBEDDING_MODEL, "segments": segments,
                                   "vector": vector.astype(np.float32).tobytes()})  # fmt: skip
            connection.execute(RecordRow.__table__.insert(), rows)
            connection.execute(RecordEmbeddingRow.__table__.insert(), embeddings)
    store.close()


def timed(call, repeats: int) -> list[float]:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def report(name: str, times: list[float]) -> float:
    p50 = statistics.median(times)
    p95 = sorted(times)[int(0.95 * (len(times) - 1))]
    print(f"  {name:62s} p50 {p50:6.1f} ms   p95 {p95:6.1f} ms")
    return p50


def main() -> None:
    import visextract as vx

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--db", default=None, help="an empty database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vx-query-") as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'query.db'}"
        started = time.perf_counter()
        build(url, args.records)
        print(f"{args.records:,} records built in {time.perf_counter() - started:.0f} s ({url.split(':')[0]})")
        print("sql:")
        sql_p50 = [report(q, timed(lambda q=q: vx.sql(q, db=url), 30)) for q in SQL]
        print("search (k=10):")
        search_p50 = [report(q, timed(lambda q=q: vx.search(q, db=url, k=10), 20)) for q in SEARCHES]
        print(f"sql p50 (median over queries): {statistics.median(sql_p50):.1f} ms   (target < 50)")
        print(f"search p50 (median over queries): {statistics.median(search_p50):.1f} ms   (target < 50)")


if __name__ == "__main__":
    main()
