"""Latency of `sql` and `search` over a synthetic collection, on SQLite or PostgreSQL (issue 17).

    .venv/bin/python bench/query.py [--records 1000000] [--db postgresql+psycopg://localhost/empty_db]

The records are synthetic but shaped like real ones: scene records with ImageNet labels (and their
descriptions), face counts, OCR-like text and colours; each has a real MiniLM embedding of its search
text (400 distinct texts are embedded, then reused with a little noise). They are bulk-inserted
(SQLite: executemany in one transaction; PostgreSQL: COPY, then VACUUM ANALYZE as autovacuum would).

Then, and printed as it goes:
- the search index is built (the first search's work; a child process at this size);
- each SQL query runs 30 times after a warm-up (p50, p95);
- a separate, fresh process runs each search 20 times after one warm-up search (p50, p95 over all
  searches) and reports its peak RSS: the index, the embedding model and everything a search imports;
- recall@10 of those searches against exact search over every stored vector;
- a run adds 1,000 more records, and the next search (which catches the index up) is timed.

Targets at 1,000,000 records: search p50 < 50 ms, p95 < 150 ms, recall@10 >= 0.95, each SQL query's
p50 < 50 ms, search RSS < 600 MB, build < 10 minutes, catch-up of 1,000 records < 5 s.
Ends with one JSON line (sql_p50_ms is the slowest query's p50).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _synthetic import sha256_of

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
SEARCH_REPEATS = 20
SQL_REPEATS = 30
CHUNK = 10_000


# ---- the synthetic collection -----------------------------------------------------------------------------


def distinct_records() -> tuple[list[tuple[str, str]], Any]:
    """400 (data JSON, segments JSON) pairs and their MiniLM embeddings."""
    from visextract.local_models.bundled import imagenet_labels
    from visextract.local_models.embedder import embed_texts
    from visextract.schemas.search_text import label_description

    rng = random.Random(7)
    labels = imagenet_labels()
    colors = ["red", "blue", "green", "white", "black", "brown", "gray", "yellow"]
    distinct, texts = [], []
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
        distinct.append((json.dumps(data), json.dumps(segments)))
        texts.append("\n".join(segments))
    return distinct, embed_texts(texts)


def chunks(
    first: int, count: int
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """(image rows, record rows, embedding rows) for ids first .. first+count-1, CHUNK at a time."""
    import numpy as np

    from visextract.local_models.embedder import EMBEDDING_MODEL
    from visextract.schemas.scene import SCENE
    from visextract.store.tables import utc_now

    distinct, vectors = distinct_records()
    noise = np.random.default_rng(first)
    now = utc_now()
    for start in range(first, first + count, CHUNK):
        ids = range(start, min(first + count, start + CHUNK))
        noisy = vectors[[i % len(distinct) for i in ids]] + noise.normal(0, 0.01, (len(ids), vectors.shape[1]))
        noisy = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
        images = [(i, sha256_of(i), 1000, 640, 480, "JPEG", "{}", now) for i in ids]
        records = [
            (i, sha256_of(i), i, f"/photos/{i:07d}.jpg", "scene", SCENE.version, "{}", "",
             "needs_review" if i % 97 == 0 else "ok", True, distinct[i % len(distinct)][0], "{}", now, True, 1, False)
            for i in ids
        ]  # fmt: skip
        embeddings = [
            (i, EMBEDDING_MODEL, distinct[i % len(distinct)][1], vector.tobytes())
            for i, vector in zip(ids, noisy, strict=True)
        ]
        yield images, records, embeddings


IMAGE_COLUMNS = "id, sha256, size_bytes, width, height, format, exif, created_at"
RECORD_COLUMNS = (
    "id, subject, image_id, path, schema_name, schema_version, tools, tools_key, status, complete, data, "
    "provenance, created_at, is_current, version, missing"
)
EMBEDDING_COLUMNS = "record_id, model, segments, vector"


def insert(url: str, first: int, count: int) -> None:
    """Bulk-insert `count` records from id `first` (images, records, embeddings)."""
    from visextract.store import Store

    store = Store(url)
    connection = store.engine.raw_connection()
    try:
        if store.dialect == "postgresql":
            with connection.driver_connection.cursor() as cursor:
                for images, records, embeddings in chunks(first, count):
                    for table, columns, rows in [
                        ("image", IMAGE_COLUMNS, images),
                        ("record", RECORD_COLUMNS, records),
                        ("record_embedding", EMBEDDING_COLUMNS, embeddings),
                    ]:
                        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                            for row in rows:
                                copy.write_row(row)
                for table in ("image", "record"):
                    cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}")
            connection.commit()
        else:
            cursor = connection.driver_connection.cursor()
            cursor.execute("BEGIN")
            for images, records, embeddings in chunks(first, count):
                for table, columns, rows in [
                    ("image", IMAGE_COLUMNS, images),
                    ("record", RECORD_COLUMNS, records),
                    ("record_embedding", EMBEDDING_COLUMNS, embeddings),
                ]:
                    marks = ", ".join("?" * len(columns.split(",")))
                    cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
            cursor.execute("COMMIT")
    finally:
        connection.close()
        store.close()


def add_in_a_run(url: str, first: int, count: int) -> None:
    """Insert records as a run would leave them: a run starts, the records arrive, the run finishes."""
    from visextract.schemas.scene import SCENE
    from visextract.store import Store

    store = Store(url)
    run_id = store.start_run(SCENE, {}, {"synthetic": count})
    insert(url, first, count)
    store.finish_run(run_id, {"processed": count}, 0.0, "finished")
    store.close()


def build(url: str, count: int) -> None:
    """A new database of `count` records, with its typed view and indexes, ready to query."""
    from visextract.store import Store

    add_in_a_run(url, 1, count)  # the run registers the schema: its typed view and field indexes
    if Store(url).dialect == "postgresql":
        import psycopg
        from sqlalchemy.engine import make_url

        plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(plain, autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE")


# ---- measuring ---------------------------------------------------------------------------------------------


def timed(call: Any, repeats: int, cpu: list[float] | None = None) -> list[float]:
    """Wall-clock milliseconds of `repeats` calls after a warm-up; with `cpu`, this process's CPU
    milliseconds per call are appended to it (on a busy machine, what an idle one would take)."""
    call()  # warm-up
    times = []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        call()
        times.append((time.perf_counter() - started) * 1000)
        if cpu is not None:
            cpu.append((time.process_time() - started_cpu) * 1000)
    return times


def percentile(times: list[float], share: float) -> float:
    return sorted(times)[round(share * (len(times) - 1))]


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux: VmHWM, which starts afresh at exec; ru_maxrss would
    also count the parent's memory at fork time, which the kernel carries across exec."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def search_worker(url: str) -> None:
    """In a fresh process: time the searches, note their hits and this process's peak RSS."""
    import visextract as vx

    vx.search(SEARCHES[0], db=url, k=10)  # loads the index and the model
    times: list[float] = []
    cpu: list[float] = []
    hits = {}
    for query in SEARCHES:
        times += timed(lambda query=query: vx.search(query, db=url, k=10), SEARCH_REPEATS, cpu)
        hits[query] = [hit.record_id for hit in vx.search(query, db=url, k=10)]
    peak = peak_rss_mb()
    print(json.dumps({"times": times, "cpu": cpu, "hits": hits, "peak_rss_mb": peak, "torch": "torch" in sys.modules}))


def exact_top10(url: str) -> dict[str, set[int]]:
    """The exact 10 nearest records to each search, over every stored vector."""
    import numpy as np
    from sqlalchemy import text

    from visextract.local_models.embedder import embed_texts
    from visextract.store import Store

    queries = embed_texts(SEARCHES)
    best_ids = np.zeros((len(SEARCHES), 0), np.int64)
    best_scores = np.zeros((len(SEARCHES), 0), np.float32)
    store = Store(url)
    after = 0
    while True:
        with store.engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT record_id, vector FROM record_embedding WHERE record_id > :a ORDER BY record_id LIMIT 50000"
                ),
                {"a": after},
            ).all()
        if not rows:
            break
        after = rows[-1][0]
        ids = np.array([row[0] for row in rows], np.int64)
        vectors = np.frombuffer(b"".join(row[1] for row in rows), np.float32).reshape(len(rows), -1)
        scores = np.concatenate([best_scores, queries @ vectors.T], axis=1)
        all_ids = np.concatenate(
            [np.broadcast_to(best_ids, (len(SEARCHES), best_ids.shape[1])), np.tile(ids, (len(SEARCHES), 1))], axis=1
        )
        top = np.argsort(-scores, axis=1)[:, :10]
        best_scores = np.take_along_axis(scores, top, axis=1)
        best_ids = np.take_along_axis(all_ids, top, axis=1)
    store.close()
    return {query: set(best_ids[i].tolist()) for i, query in enumerate(SEARCHES)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--db", default=None, help="an empty database URL (default: a temporary SQLite file)")
    parser.add_argument("--search-worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.search_worker:
        search_worker(args.search_worker)
        return

    import visextract as vx
    from visextract.query import open_store
    from visextract.store.search_index import search_index

    with tempfile.TemporaryDirectory(prefix="vx-query-") as tmp:
        os.environ["VISEXTRACT_INDEX_DIR"] = str(Path(tmp) / "index")  # the child processes inherit it
        url = args.db or f"sqlite:///{Path(tmp) / 'query.db'}"
        print(f"load average: {os.getloadavg()[0]:.2f}")
        started = time.perf_counter()
        build(url, args.records)
        build_s = time.perf_counter() - started
        print(f"{args.records:,} records built in {build_s:.0f} s ({url.split(':')[0]})")

        started = time.perf_counter()
        search_index(open_store(url)).current()
        print(f"search index built in {time.perf_counter() - started:.0f} s")

        print("sql:")
        sql_p50 = []
        for query in SQL:
            cpu: list[float] = []
            times = timed(lambda query=query: vx.sql(query, db=url), SQL_REPEATS, cpu)
            sql_p50.append(statistics.median(times))
            in_process = f"   (CPU: {statistics.median(cpu):5.1f} ms)" if url.startswith("sqlite") else ""
            print(f"  {query:62s} p50 {sql_p50[-1]:6.1f} ms   p95 {percentile(times, 0.95):6.1f} ms{in_process}")

        print(f"search (k=10), in a fresh process, {len(SEARCHES)} queries x {SEARCH_REPEATS}:")
        worker = subprocess.run(
            [sys.executable, __file__, "--search-worker", url], capture_output=True, text=True, check=True
        )
        result = json.loads(worker.stdout.strip().splitlines()[-1])
        search_p50 = statistics.median(result["times"])
        search_p95 = percentile(result["times"], 0.95)
        print(f"  p50 {search_p50:.1f} ms   p95 {search_p95:.1f} ms   peak RSS {result['peak_rss_mb']:.0f} MB"
              f"   (torch imported: {result['torch']})")  # fmt: skip
        cpu_p50, cpu_p95 = statistics.median(result["cpu"]), percentile(result["cpu"], 0.95)
        print(f"  CPU time of the searching process per search: p50 {cpu_p50:.1f} ms   p95 {cpu_p95:.1f} ms")

        exact = exact_top10(url)
        recall = statistics.mean(len(exact[q] & set(result["hits"][q])) / 10 for q in SEARCHES)
        print(f"  recall@10 against exact search: {recall:.3f}")

        vx.search(SEARCHES[0], db=url, k=10)
        add_in_a_run(url, args.records + 1, 1000)  # a run changes the run table: the catch-up reconciles too
        started = time.perf_counter()
        vx.search(SEARCHES[0], db=url, k=10)
        catch_up = time.perf_counter() - started
        added = len(search_index(open_store(url)).current().delta_keys)
        print(f"1,000 records added: the next search took {catch_up:.2f} s (index delta now {added:,})")
        print(f"load average: {os.getloadavg()[0]:.2f}")
        print(
            json.dumps(
                {
                    "records": args.records,
                    "search_p50_ms": round(search_p50, 1),
                    "search_p95_ms": round(search_p95, 1),
                    "recall_at_10": round(recall, 3),
                    "sql_p50_ms": round(max(sql_p50), 1),
                    "search_rss_mb": round(result["peak_rss_mb"]),
                    "build_s": round(build_s),
                }
            )
        )


if __name__ == "__main__":
    main()
