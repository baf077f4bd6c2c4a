"""Which nearest-neighbour library suits semantic search at 1,000,000 vectors: faiss IVF vs HNSW (issue 17).

    .venv/bin/python bench/ann_choice.py [--vectors 1000000] [--hnswlib-budget 720]

Needs `pip install usearch hnswlib` (faiss-cpu is a dependency already).

The vectors are bench/query.py's: 400 real MiniLM embeddings (384-d) reused with gaussian noise 0.01 and
re-normalised, float32, generated in numpy exactly as its `chunks()` does (keys 1..N). The queries are 8
real texts embedded with the same model. Candidates:

- faiss-ivf-sq8: visextract's own index, built by `ann_index.build_main` (int8 scalar quantiser, inner
  product, sqrt(N) cells trained on 64 points per cell), opened memory-mapped read-only, NPROBE cells.
- usearch-hnsw-i8 / usearch-hnsw-f16: usearch HNSW graphs (inner product, connectivity 16, expansion
  128 when adding, 64 when searching), saved, then opened memory-mapped with `Index.restore(view=True)`.
- hnswlib-hnsw-f32: hnswlib HNSW (M 16, ef_construction 128, ef 64), float32 only; it cannot memory-map,
  so its whole index is read into memory. Its build stops adding vectors once `--hnswlib-budget` seconds
  are spent; it is then measured at the size it reached (and said so).

Per candidate: build seconds (one process, both cores where the library uses them), index file size,
search p50/p95 for k=10 on ONE thread, recall@10 against exact search (numpy brute force) and the peak
RSS of a fresh process that only opens the index and runs the searches. Each search does what
`visextract.store.search` does: it asks the index for 40 candidates (OVERFETCH 4 x k, at least 40), then
ranks them by the exact cosine similarity of their float32 vectors (read from a .npy file row by row,
copied as the database would hand them over) and keeps 10; the time includes that re-ranking. Recall is
reported after re-ranking and raw (the index's own first 10). The files are in the page cache when the
searching process starts (it follows the build), so the times are warm ones. Its RSS is also split into
private memory and mapped file pages (which processes mapping the same index share). For the HNSW graphs,
the same process then searches again at larger search expansions (SWEEP; its peak RSS was read before):
what more recall costs a graph.

For reference, two more fresh processes report their peak RSS: python with numpy only, and the MiniLM
embedder embedding the queries (a real search process holds the embedder too, and the index on top).
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

QUERIES = [
    "a dog on a beach",
    "a red car",
    "people in a room",
    "a page of printed text",
    "a cup of coffee",
    "a cat",
    "a bird",
    "a street at night",
]
DIMENSIONS = 384
K = 10
CANDIDATES = 40  # what visextract.store.search asks of the index for k=10: max(OVERFETCH * k, MIN_CANDIDATES)
REPEATS = 20  # timed searches per query, after one warm-up
CHUNK = 10_000  # as bench/query.py: the noise is drawn per chunk, so the vectors are the same
BATCH = 50_000  # vectors handed to a library's add at a time
HNSW_CONNECTIVITY = 16
HNSW_EXPANSION_ADD = 128
HNSW_EXPANSION_SEARCH = 64  # usearch's default
SWEEP = (256, 1024)  # larger search expansions tried afterwards: what more recall costs a graph
SWEEP_REPEATS = 5
NAMES = ["faiss-ivf-sq8", "usearch-hnsw-i8", "usearch-hnsw-f16", "hnswlib-hnsw-f32"]


# ---- vectors ------------------------------------------------------------------------------------------------


def make_vectors(path: Path, count: int) -> np.ndarray:
    """bench/query.py's synthetic embeddings for keys 1..count, written to a .npy file, memory-mapped."""
    sys.path.insert(0, str(Path(__file__).parent))
    from query import distinct_records

    _, distinct = distinct_records()
    vectors = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(count, DIMENSIONS))
    noise = np.random.default_rng(1)  # query.py seeds with the first id, 1
    for start in range(1, count + 1, CHUNK):
        ids = np.arange(start, min(count + 1, start + CHUNK))
        noisy = distinct[ids % len(distinct)] + noise.normal(0, 0.01, (len(ids), DIMENSIONS))
        vectors[start - 1 : start - 1 + len(ids)] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    vectors.flush()
    del vectors
    return np.load(path, mmap_mode="r")


def exact_top(vectors: np.ndarray, queries: np.ndarray, count: int) -> np.ndarray:
    """The keys of the K most similar of the first `count` vectors to each query, by brute force."""
    best_keys = np.zeros((len(queries), 0), np.int64)
    best_scores = np.zeros((len(queries), 0), np.float32)
    for start in range(0, count, 100_000):
        block = np.asarray(vectors[start : min(count, start + 100_000)])
        scores = np.concatenate([best_scores, queries @ block.T], axis=1)
        keys = np.concatenate([best_keys, np.tile(np.arange(start + 1, start + 1 + len(block)), (len(queries), 1))], 1)
        top = np.argsort(-scores, axis=1)[:, :K]
        best_scores, best_keys = np.take_along_axis(scores, top, 1), np.take_along_axis(keys, top, 1)
    return best_keys


def batches(vectors: np.ndarray, count: int) -> Any:
    """(keys, vectors) of the first `count` vectors, BATCH at a time."""
    for start in range(0, count, BATCH):
        block = np.ascontiguousarray(vectors[start : min(count, start + BATCH)])
        yield np.arange(start + 1, start + 1 + len(block), dtype=np.int64), block


# ---- building (in this process) ------------------------------------------------------------------------------


def build_faiss(folder: Path, vectors: np.ndarray) -> tuple[Path, int]:
    """visextract's own build: `build_main` spills the vectors, trains the cells and writes the index."""
    from visextract.store.ann_index import build_main

    folder.mkdir()
    main = build_main(folder, batches(vectors, len(vectors)), DIMENSIONS)
    return folder / main.file, len(vectors)


def build_usearch(path: Path, vectors: np.ndarray, dtype: str) -> tuple[Path, int]:
    from usearch.index import Index

    index = Index(
        ndim=DIMENSIONS,
        metric="ip",
        dtype=dtype,
        connectivity=HNSW_CONNECTIVITY,
        expansion_add=HNSW_EXPANSION_ADD,
        expansion_search=HNSW_EXPANSION_SEARCH,
    )
    for keys, block in batches(vectors, len(vectors)):
        index.add(keys, block, threads=os.cpu_count() or 1)
    index.save(str(path))
    return path, len(vectors)


def build_hnswlib(path: Path, vectors: np.ndarray, budget_s: float) -> tuple[Path, int]:
    """All vectors, or as many as the time budget allows (a batch is not started when the last one,
    which took longer than any before it, would not fit)."""
    import hnswlib

    index = hnswlib.Index(space="ip", dim=DIMENSIONS)
    index.init_index(max_elements=len(vectors), ef_construction=HNSW_EXPANSION_ADD, M=HNSW_CONNECTIVITY)
    started = time.perf_counter()
    added, last = 0, 0.0
    for keys, block in batches(vectors, len(vectors)):
        if added and time.perf_counter() - started + last > budget_s:
            print(f"  hnswlib: stopped at {added:,} vectors: the next batch would pass the {budget_s:.0f} s budget")
            break
        batch_started = time.perf_counter()
        index.add_items(block, keys, num_threads=os.cpu_count() or 1)
        added += len(keys)
        last = time.perf_counter() - batch_started
    index.save_index(str(path))
    return path, added


# ---- searching (in a fresh process) --------------------------------------------------------------------------


def open_searcher(name: str, path: str, nprobe: int) -> tuple[Any, Any]:
    """(search, expand): search(unit query vector) -> up to CANDIDATES keys, best first, on one thread;
    expand(n) sets an HNSW graph's search expansion (None for faiss)."""
    if name.startswith("faiss"):
        import faiss

        faiss.omp_set_num_threads(1)
        index = faiss.read_index(path, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)  # as ann_index._open_main
        params = faiss.SearchParametersIVF(nprobe=min(nprobe, index.nlist))

        def search(query: np.ndarray) -> np.ndarray:
            keys = index.search(query[None, :], CANDIDATES, params=params)[1][0]
            return keys[keys >= 0]

        return search, None
    if name.startswith("usearch"):
        from usearch.index import Index

        graph = Index.restore(path, view=True)

        def expand_usearch(expansion: int) -> None:
            graph.expansion_search = expansion

        expand_usearch(HNSW_EXPANSION_SEARCH)
        return lambda query: np.asarray(graph.search(query, CANDIDATES, threads=1).keys, np.int64), expand_usearch
    import hnswlib

    loaded = hnswlib.Index(space="ip", dim=DIMENSIONS)
    loaded.load_index(path)
    loaded.set_num_threads(1)
    loaded.set_ef(HNSW_EXPANSION_SEARCH)
    return lambda query: loaded.knn_query(query, k=CANDIDATES, num_threads=1)[0][0].astype(np.int64), loaded.set_ef


def search_worker(name: str, path: str, folder: str, nprobe: int) -> None:
    """Open the index, time each query's search + exact re-ranking, report hits and peak RSS; then, for
    an HNSW graph, the same at larger search expansions (after the peak RSS was read)."""
    queries = np.load(Path(folder) / "queries.npy")
    # the candidates' float32 vectors are read as the database hands them over: copied, not mapped
    # (mapping the 1.5 GB file would count the kernel's read-around of each row in this process's RSS)
    header, row_bytes = np.load(Path(folder) / "vectors.npy", mmap_mode="r").offset, DIMENSIONS * 4
    vectors = (Path(folder) / "vectors.npy").open("rb")
    started = time.perf_counter()
    search, expand = open_searcher(name, path, nprobe)
    open_s = time.perf_counter() - started

    def search_and_rank(query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        candidates = search(query)
        rows = np.sort(candidates - 1)
        stored = b"".join(os.pread(vectors.fileno(), row_bytes, header + int(row) * row_bytes) for row in rows)
        scores = np.frombuffer(stored, np.float32).reshape(len(rows), DIMENSIONS) @ query
        return candidates[:K], rows[np.argsort(-scores, kind="stable")[:K]] + 1

    def run(repeats: int) -> dict[str, Any]:
        times, raw, ranked = [], [], []
        for query in queries:
            search_and_rank(query)  # warm-up
            for _ in range(repeats):
                started = time.perf_counter()
                search_and_rank(query)
                times.append((time.perf_counter() - started) * 1000)
            first, best = search_and_rank(query)
            raw.append(first.tolist())
            ranked.append(best.tolist())
        return {"times": times, "raw": raw, "ranked": ranked}

    result = run(REPEATS)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    result |= {key: int(status[key].split()[0]) / 1024 for key in ("RssAnon", "RssFile")}
    result |= {"open_s": open_s, "peak_rss_mb": peak_rss_mb(), "sweep": {}}
    for expansion in SWEEP if expand is not None else ():
        expand(expansion)
        result["sweep"][expansion] = run(SWEEP_REPEATS)
    print(json.dumps(result))


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM, as bench/query.py reads it)."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


REFERENCE = {
    "python_numpy": "import numpy",
    "embedder": "from visextract.local_models.embedder import embed_texts; embed_texts(QUERIES)",
}


def reference_worker(which: str) -> None:
    exec(REFERENCE[which], {"QUERIES": QUERIES})
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def child(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def percentile(times: list[float], share: float) -> float:
    return sorted(times)[round(share * (len(times) - 1))]


def recall(found: list[list[int]], exact: np.ndarray) -> float:
    return statistics.mean(len(set(hits) & set(truth.tolist())) / K for hits, truth in zip(found, exact, strict=True))


# ---- the run -------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--only", default=",".join(NAMES), help="candidates to run, comma-separated")
    parser.add_argument("--hnswlib-budget", type=float, default=720, help="seconds hnswlib may spend adding")
    parser.add_argument("--workdir", default=None, help="where the files go (default: a temporary folder)")
    parser.add_argument("--search-worker", nargs=4, metavar=("NAME", "PATH", "DIR", "NPROBE"), help=argparse.SUPPRESS)
    parser.add_argument("--reference-worker", choices=sorted(REFERENCE), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.search_worker:
        name, path, folder, nprobe = args.search_worker
        search_worker(name, path, folder, int(nprobe))
        return
    if args.reference_worker:
        reference_worker(args.reference_worker)
        return

    from visextract.local_models.embedder import embed_texts
    from visextract.store.ann_index import NPROBE

    names = [name for name in NAMES if name in args.only.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="vx-ann-", dir=args.workdir))
    try:
        print(f"load average: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores; files in {tmp}")
        started = time.perf_counter()
        vectors = make_vectors(tmp / "vectors.npy", args.vectors)
        queries = embed_texts(QUERIES)
        np.save(tmp / "queries.npy", queries)
        print(f"{args.vectors:,} vectors made in {time.perf_counter() - started:.0f} s")
        exact = {args.vectors: exact_top(vectors, queries, args.vectors)}

        reference = {which: round(child("--reference-worker", which)["peak_rss_mb"]) for which in REFERENCE}
        print(f"reference peak RSS: python + numpy {reference['python_numpy']} MB, "
              f"MiniLM embedder (8 queries) {reference['embedder']} MB")  # fmt: skip

        results = {}
        for name in names:
            print(f"{name}:", flush=True)
            started = time.perf_counter()
            if name == "faiss-ivf-sq8":
                path, count = build_faiss(tmp / "faiss", vectors)
            elif name.startswith("usearch"):
                path, count = build_usearch(tmp / f"{name}.usearch", vectors, name.rsplit("-", 1)[1])
            else:
                path, count = build_hnswlib(tmp / f"{name}.bin", vectors, args.hnswlib_budget)
            build_s = time.perf_counter() - started
            file_mb = path.stat().st_size / 2**20
            if count not in exact:
                exact[count] = exact_top(vectors, queries, count)
            result = child("--search-worker", name, str(path), str(tmp), str(NPROBE))
            results[name] = {
                "build_s": round(build_s, 1),
                "file_mb": round(file_mb),
                "search_p50_ms": round(statistics.median(result["times"]), 2),
                "search_p95_ms": round(percentile(result["times"], 0.95), 2),
                "recall_at_10": round(recall(result["ranked"], exact[count]), 3),
                "search_rss_mb": round(result["peak_rss_mb"]),
                "raw_recall_at_10": round(recall(result["raw"], exact[count]), 3),
                "open_s": round(result["open_s"], 2),
                "rss_anon_mb": round(result["RssAnon"]),  # after the searches: private memory
                "rss_file_mb": round(result["RssFile"]),  # and mapped file pages, which processes share
            }
            for expansion, swept in result["sweep"].items():
                results[name][f"expansion_{expansion}"] = {
                    "recall_at_10": round(recall(swept["ranked"], exact[count]), 3),
                    "search_p50_ms": round(statistics.median(swept["times"]), 2),
                }
            if count != args.vectors:
                results[name]["vectors"] = count
            r = results[name]
            print(f"  {count:,} vectors: build {r['build_s']:.0f} s, file {r['file_mb']} MB, opened in "
                  f"{r['open_s']:.2f} s; search p50 {r['search_p50_ms']:.2f} ms, p95 {r['search_p95_ms']:.2f} ms; "
                  f"recall@10 {r['recall_at_10']:.3f} re-ranked ({r['raw_recall_at_10']:.3f} raw); "
                  f"peak RSS {r['search_rss_mb']} MB (then {r['rss_anon_mb']} MB private, {r['rss_file_mb']} MB "
                  "mapped file pages)", flush=True)  # fmt: skip
            for expansion in result["sweep"]:
                swept = results[name][f"expansion_{expansion}"]
                print(f"  search expansion {expansion}: recall@10 {swept['recall_at_10']:.3f} re-ranked, "
                      f"p50 {swept['search_p50_ms']:.2f} ms", flush=True)  # fmt: skip
            path.unlink()  # the disk space is needed for the next one
            shutil.rmtree(tmp / "faiss", ignore_errors=True)
        print(f"load average: {os.getloadavg()[0]:.2f}")
        print(json.dumps({"vectors": args.vectors, "candidates": results, "reference_rss_mb": reference}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
