"""The ray engine's overhead on one machine, and the store's write capacity into PostgreSQL.

    .venv/bin/python bench/ray.py [--images 48] [--rounds 3] [--postgres postgresql+psycopg://postgres@127.0.0.1:55432/postgres]

1. Overhead: `visextract run` over the same photos into a new database, each in its own process, in
   interleaved rounds: local engine, ray engine joining a running Ray instance (`--ray-address`, the
   cluster case), ray engine starting its own instance (no address). Wall time of the whole command;
   median ratios ray/local. Then one re-run of the finished folder per engine (hashing + already-done
   check only: the ray workers load no models).
2. Per-tool time per image on this CPU, from the tool results the local runs stored.
3. Write capacity into PostgreSQL: 1, 4 and 16 writer processes, each saving real records (the local run's
   tool results, data and provenance, each under a new sha256) with `Store.save` + `Store.save_embedding`,
   as the persist node does for every image; records/s over all writers.
Ends with one JSON line. Load average (`uptime`) is printed with the figures: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _photos import make_photos

HERE = Path(__file__).resolve().parent
# this file is named ray.py: `import ray` (the engine's, in this process or a spawned writer) must find Ray
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]

TOOLS = "classifier,faces,ocr,colors"


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def run_cli(folder: Path, db: str, *options: str) -> tuple[float, str]:
    """Wall seconds of a whole `visextract run` process (imports, Ray start or join, models, images)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if "--ray-address" in options:
        env["RAY_AUTH_MODE"] = "token"  # local Ray instances use token authentication (the token is in ~/.ray)
    env.pop("OPENAI_API_KEY", None)
    env.pop("RAY_ADDRESS", None)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "visextract.cli", "run", str(folder), "--db", db, "--tools", TOOLS, *options],
        capture_output=True, text=True, env=env, timeout=3600,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"visextract run {' '.join(options)} failed:\n{done.stderr[-2000:]}")
    return seconds, done.stdout.strip().splitlines()[0]


class RayInstance:
    """A local Ray instance held by a child process of this script (stopped by closing its stdin)."""

    def __init__(self) -> None:
        code = (
            "import sys, ray; ray.init(include_dashboard=False); "
            "print(ray.get_runtime_context().gcs_address, flush=True); sys.stdin.read(); ray.shutdown()"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.address = self.process.stdout.readline().strip()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=120)


def overhead(folder: Path, work: Path, rounds: int) -> dict[str, Any]:
    cluster = RayInstance()
    modes = {
        "local": (),
        "ray_joined": ("--engine", "ray", "--ray-address", cluster.address),
        "ray_own_instance": ("--engine", "ray"),
    }
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    last_db: dict[str, str] = {}
    try:
        for round_number in range(1, rounds + 1):
            for mode, options in modes.items():
                db = f"sqlite:///{work / f'{mode}-{round_number}.db'}"
                took, summary = run_cli(folder, db, *options)
                seconds[mode].append(took)
                last_db[mode] = db
                print(
                    f"round {round_number} {mode:17s} {took:6.1f} s  | {summary}  (load {load_average()})", flush=True
                )
        reruns = {}
        for mode, options in modes.items():
            took, summary = run_cli(folder, last_db[mode], *options)
            reruns[mode] = round(took, 1)
            print(f"re-run {mode:17s} {took:6.1f} s  | {summary}", flush=True)
    finally:
        cluster.close()
    medians = {mode: statistics.median(values) for mode, values in seconds.items()}
    ratios = {
        mode: statistics.median(s / local for s, local in zip(values, seconds["local"], strict=True))
        for mode, values in seconds.items()
        if mode != "local"
    }
    print(
        f"median wall time: local {medians['local']:.1f} s, ray joined {medians['ray_joined']:.1f} s, "
        f"ray with its own instance {medians['ray_own_instance']:.1f} s"
    )
    print(
        f"median ratio ray/local: joined {ratios['ray_joined']:.2f}x, own instance {ratios['ray_own_instance']:.2f}x "
        "(target <= 1.3)"
    )
    return {
        "seconds": {mode: [round(s, 1) for s in values] for mode, values in seconds.items()},
        "median_seconds": {mode: round(value, 1) for mode, value in medians.items()},
        "median_ratio_vs_local": {mode: round(value, 2) for mode, value in ratios.items()},
        "rerun_seconds": reruns,
        "local_db": last_db["local"],
    }


def tool_cost(folder: Path) -> dict[str, dict[str, float]]:
    """CPU time per image of each tool and of decoding, one thread each, in a fresh process: core-milliseconds
    do not depend on how busy the shared machine is (wall time does)."""
    code = f"""
import json, time
from pathlib import Path
from visextract.images import decode_image, read_image_file
from visextract.tools.base import ToolOptions
from visextract.tools.registry import build_tools
paths = sorted(Path({str(folder)!r}).glob("*.jpg"))
started = time.process_time()
images = [decode_image(read_image_file(p), max_side=2048, max_pixels=120_000_000) for p in paths]
cost = {{"decode+hash": {{"cpu_ms": 1000 * (time.process_time() - started) / len(paths)}}}}
for tool in build_tools({TOOLS.split(",")!r}, ToolOptions(threads=1, batch_size=8)):
    tool.load()
    tool.run(images[:1])
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(images), 8):
        tool.run(images[start : start + 8])
    cost[tool.name] = {{"cpu_ms": 1000 * (time.process_time() - cpu) / len(images),
                       "wall_ms": 1000 * (time.perf_counter() - wall) / len(images)}}
from visextract.local_models.embedder import embed_texts
texts = [f"photo {{i}}: a cup of coffee on a saucer, espresso; text: none; colours #6b4a2b #d8cfc4" for i in range(64)]
embed_texts(texts[:1])
cpu = time.process_time()
for start in range(0, len(texts), 32):
    embed_texts(texts[start : start + 32])
cost["search embedding"] = {{"cpu_ms": 1000 * (time.process_time() - cpu) / len(texts)}}
print(json.dumps({{k: {{m: round(v, 1) for m, v in c.items()}} for k, c in cost.items()}}))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    cost = json.loads(done.stdout.strip().splitlines()[-1])
    print("CPU time per image, one thread (core-ms): " + ", ".join(f"{k} {v['cpu_ms']}" for k, v in cost.items()))
    return cost


# ---- write capacity ---------------------------------------------------------------------------------


def sample_drafts(db: str) -> list[dict[str, Any]]:
    """The local run's records as the persist node hands them to the store: tool results, data, provenance."""
    from visextract.store import Store
    from visextract.store.export import export_dicts

    store = Store(db)
    records = [r for r in export_dicts(store) if r["status"] == "ok"]
    store.close()
    return records


def writer(url: str, records: list[dict[str, Any]], start: Any, seconds: float, counts: Any) -> None:
    """Save records as fast as `Store.save` + `Store.save_embedding` allow, for `seconds` after `start`."""
    import hashlib

    import numpy as np

    from visextract.schemas.registry import load_schema
    from visextract.store import ImageFacts, RecordDraft, Store

    store = Store(url)
    schema = load_schema("scene")
    run_id = store.start_run(schema, {}, {"bench": "write capacity"})
    vector = np.random.default_rng(0).standard_normal(384).astype("float32").tobytes()
    start.wait()
    deadline = time.monotonic() + seconds
    cpu = time.process_time()
    saved = 0
    while time.monotonic() < deadline:
        record = records[saved % len(records)]
        sha = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
        draft = RecordDraft(
            path=f"/mnt/photos/{sha[:2]}/{sha}.jpg",
            schema_name="scene",
            schema_version=schema.version,
            status="ok",
            image=ImageFacts(
                sha256=sha, size_bytes=250_000, width=record["width"], height=record["height"], format="JPEG"
            ),
            subject=sha,
            tools=dict.fromkeys(record["tools"], "bench"),
            tools_key="bench",
            new_tool_results={name: (results, 0.01) for name, results in record["tools"].items()},
            data=record["data"],
            provenance=record["provenance"],
            run_id=run_id,
        )
        result = store.save(draft)
        store.save_embedding(result.record_id, "all-MiniLM-L6-v2", ["bench"], vector)
        saved += 1
    counts.put((saved, time.process_time() - cpu))
    store.close()


def write_capacity(server_url: str, records: list[dict[str, Any]], seconds: float) -> dict[str, float]:
    import psycopg
    from sqlalchemy.engine import make_url

    from visextract.store import Store

    base = make_url(server_url)
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"vx_bench_ray_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    url = base.set(database=name).render_as_string(hide_password=False)
    Store(url).close()  # tables first: the writers only write
    context = multiprocessing.get_context("spawn")
    rates: dict[str, Any] = {}
    try:
        for writers in (1, 4, 16):
            start, counts = context.Event(), context.Queue()
            processes = [
                context.Process(target=writer, args=(url, records, start, seconds, counts)) for _ in range(writers)
            ]
            for process in processes:
                process.start()
            time.sleep(5 + writers)  # imports and connections, before the clock starts
            server_before = server_busy_seconds(admin, name)
            start.set()
            results = [counts.get(timeout=seconds + 300) for _ in processes]
            for process in processes:
                process.join()
            time.sleep(1)  # backends report their statistics as they exit
            server_after = server_busy_seconds(admin, name)
            server_busy, commits = server_after[0] - server_before[0], server_after[1] - server_before[1]
            total = sum(saved for saved, _ in results)
            client_cpu = sum(cpu for _, cpu in results)
            rates[str(writers)] = {
                "records_per_s": round(total / seconds, 1),
                "client_cpu_ms_per_record": round(1000 * client_cpu / total, 2),
                "server_busy_ms_per_record": round(1000 * server_busy / total, 2),
                "commits_per_record": round(commits / total, 2),
            }
            print(
                f"PostgreSQL writes, {writers:2d} writers: {total / seconds:7.1f} records/s; per record: "
                f"client CPU {1000 * client_cpu / total:.1f} ms, server busy {1000 * server_busy / total:.1f} ms "
                f"(load {load_average()})",
                flush=True,
            )
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return rates


def server_busy_seconds(admin: str, database: str) -> tuple[float, int]:
    """Seconds the server's backends spent executing statements in `database` (pg_stat_database.active_time,
    PostgreSQL 14+), and the transactions committed there so far."""
    import psycopg

    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute("SELECT pg_stat_clear_snapshot()")
        active_ms, commits = connection.execute(
            "SELECT active_time, xact_commit FROM pg_stat_database WHERE datname = %s", [database]
        ).fetchone()
    return (active_ms or 0.0) / 1000, commits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write-seconds", type=float, default=15.0)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "VISEXTRACT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:55432/postgres"
        ),
    )
    parser.add_argument("--writes-from", help="skip the overhead rounds: take records from this database")
    parser.add_argument("--photos", help="with --writes-from: a folder of photos for the per-tool CPU times")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {load_average()} at start")
    with tempfile.TemporaryDirectory(prefix="vx-bench-ray-") as tmp:
        work = Path(tmp)
        result: dict[str, Any] = {}
        source = args.writes_from
        if source is None or args.photos is None:
            make_photos(work / "photos", args.images)
        if source is None:
            print(f"{args.images} photos, tools {TOOLS}, {args.rounds} interleaved rounds")
            result = overhead(work / "photos", work, args.rounds)
            source = result.pop("local_db")
        result["cpu_ms_per_image"] = tool_cost(Path(args.photos) if args.photos else work / "photos")
        result["postgres_records_per_s"] = write_capacity(args.postgres, sample_drafts(source), args.write_seconds)
    result |= {"images": args.images, "cpus": os.cpu_count(), "load_average_at_end": load_average()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
