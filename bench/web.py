"""Speed and memory of `visextract serve` over 100,000 records (p50 / p95 of loopback round trips).

    .venv/bin/python bench/web.py [--records 100000] [--small 10000] [--requests 40]

The records are synthetic but shaped like real ones (scene records with ImageNet labels, faces, OCR lines and
colours, their tool results, 1% needing review, a few failed); eight of them are the real photos in
`examples/`, so thumbnails and record pages have real files. The server runs as `visextract serve` in its own
process; each figure is the full HTTP round trip on loopback, an upper bound of the server's time.
The gallery's counts are cached until the database changes; "counts recomputed" measures the first page
right after another process committed.
Targets: gallery first page and a filtered page p50 < 100 ms (the recount is reported beside), record page
p50 < 100 ms, cached thumbnail p50 < 10 ms, and the server's memory flat in the number of records (the same
pages over 10k and 100k records). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix in (".jpg", ".png"))


def build(url: str, count: int, photos: Path) -> list[str]:
    """`count` records; returns the sha256 of the ones whose files are real photos."""
    from visextract.local_models.bundled import imagenet_labels
    from visextract.schemas.scene import SCENE
    from visextract.store import Store
    from visextract.store.tables import ImagePathRow, ImageRow, RecordRow, ToolResultRow, utc_now

    store = Store(url)
    run_id = store.start_run(SCENE, {}, {"synthetic": count})
    rng = random.Random(7)
    labels = imagenet_labels()[:600]
    tools = {"classifier": "c1", "faces": "f1", "ocr": "o1", "colors": "k1"}
    real = {}
    for i, example in enumerate(EXAMPLES, start=1):
        copy = photos / example.name
        shutil.copy(example, copy)
        real[i] = (hashlib.sha256(copy.read_bytes()).hexdigest(), str(copy))
    now = utc_now()
    chunk = 5000
    with store.engine.begin() as connection:
        for start in range(0, count, chunk):
            ids = range(start + 1, min(count, start + chunk) + 1)
            images, paths, results, rows = [], [], [], []
            for i in ids:
                sha, path = real.get(i, (f"{i:064x}", f"/photos/{i // 1000:03d}/{i:06d}.jpg"))
                label = labels[rng.randrange(len(labels))]
                faces = rng.choice([0, 0, 0, 1, 2])
                lines = rng.choice([[], [], ["OPEN 24 HOURS"], ["TOTAL", "12.50 EUR", "THANK YOU"]])
                size = Path(path).stat().st_size if i in real else 1000
                images.append({"id": i, "sha256": sha, "size_bytes": size, "width": 640, "height": 480,
                               "format": "JPEG", "exif": {}, "created_at": now})  # fmt: skip
                paths.append({"path": path, "image_id": i, "sha256": sha, "seen_at": now, "seen_run_id": run_id})
                found = {
                    "classifier": [{"label": label, "score": 0.8}, {"label": labels[(i * 7) % 600], "score": 0.1}],
                    "faces": [{"box": [40.0 + 50 * f, 60.0, 80.0 + 50 * f, 110.0], "score": 0.99}
                              for f in range(faces)],
                    "ocr": [{"text": t, "score": 0.9, "box": [10.0, 20.0 + 30 * n, 200.0, 45.0 + 30 * n]}
                            for n, t in enumerate(lines)],
                    "colors": [{"hex": "#aa8844", "fraction": 0.5}, {"hex": "#223344", "fraction": 0.3}],
                }  # fmt: skip
                results += [{"image_id": i, "tool": t, "cache_key": tools[t], "results": r, "run_id": run_id,
                             "created_at": now} for t, r in found.items()]  # fmt: skip
                status = "needs_review" if i % 97 == 0 else "failed" if i % 499 == 0 else "ok"
                data = {"labels": [label], "face_count": faces, "text": "\n".join(lines) or None,
                        "dominant_colors": ["brown", "dark blue"]}  # fmt: skip
                provenance = {
                    "labels": {"source": "tool:classifier", "evidence": [{"tool": "classifier", "index": 0}],
                               "verified": None},
                    "face_count": {"source": "tool:faces", "evidence": [{"tool": "faces", "index": f}
                                                                         for f in range(faces)], "verified": None},
                    "text": {"source": "tool:ocr", "evidence": [], "verified": None},
                    "dominant_colors": {"source": "tool:colors", "evidence": [], "verified": None},
                }  # fmt: skip
                rows.append({"id": i, "subject": sha, "image_id": i, "path": path, "schema_name": "scene",
                             "schema_version": SCENE.version, "tools": tools, "tools_key": "bench", "status": status,
                             "complete": True, "data": data if status != "failed" else None, "provenance": provenance,
                             "created_at": now, "is_current": True, "version": 1, "missing": False, "label": label,
                             "error": "cannot decode" if status == "failed" else None})  # fmt: skip
            connection.execute(ImageRow.__table__.insert(), images)
            connection.execute(ImagePathRow.__table__.insert(), paths)
            connection.execute(ToolResultRow.__table__.insert(), results)
            connection.execute(RecordRow.__table__.insert(), rows)
    store.close()
    return [sha for sha, _ in real.values()]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(client, url: str, repeats: int, before=None) -> list[float]:
    client.get(url).raise_for_status()  # warm-up
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code in (200, 304), (url, response.status_code)
    return times


def measure(db_file: Path, photos_sha: list[str], repeats: int, label: str) -> dict[str, object]:
    import httpx

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    server = subprocess.Popen(
        [sys.executable, "-m", "visextract.cli", "serve", "--db", f"sqlite:///{db_file}", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=base, timeout=30)
        for _ in range(600):
            try:
                client.get("/static/app.css")
                break
            except httpx.TransportError:
                time.sleep(0.05)
        rng = random.Random(3)
        html = client.get("/").text
        next_cursor = html.split('rel="next" href="/?cursor=')[1].split('"')[0]
        records = [f"/record/{sha}?schema=scene" for sha in photos_sha]
        records += [f"/record/{rng.randrange(1, 10_000):064x}?schema=scene" for _ in range(8)]
        pages = {
            "gallery first page": ["/"],
            "filtered page": [
                "/?status=needs_review",
                f"/?label={label}",
                "/?schema=scene&status=ok",
                f"/?cursor={next_cursor}",
            ],
            "record page": records,
            "cached thumbnail": [f"/thumb/{sha}" for sha in photos_sha],
            "api records page": ["/api/records?limit=48", "/api/records?status=needs_review&limit=48"],
        }
        for sha in photos_sha:  # make each thumbnail once
            client.get(f"/thumb/{sha}").raise_for_status()
        figures: dict[str, object] = {}
        writer = sqlite3.connect(db_file)

        def another_process_writes() -> None:  # any commit: the gallery's cached counts are recomputed
            writer.execute("UPDATE run SET seconds = seconds + 1")
            writer.commit()

        pages["gallery, counts recomputed"] = ["/"]
        for name, urls in pages.items():
            before = another_process_writes if name == "gallery, counts recomputed" else None
            times = [t for url in urls for t in timed(client, url, max(3, repeats // len(urls)), before)]
            p50 = statistics.median(times)
            p95 = sorted(times)[int(0.95 * (len(times) - 1))]
            print(f"  {name:28s} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   ({len(times)} requests)")
            figures[name] = round(p50, 1)
        figures["rss_mb"] = round(rss_mb(server.pid), 1)
        return figures
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000, help="the smaller database, for the memory check")
    parser.add_argument("--requests", type=int, default=40, help="requests per kind of page")
    args = parser.parse_args()
    from visextract.local_models.bundled import imagenet_labels

    label = imagenet_labels()[5].replace(" ", "+")
    results = {}
    with tempfile.TemporaryDirectory(prefix="vx-web-") as tmp:
        for count in (args.small, args.records):
            folder = Path(tmp) / str(count)
            (folder / "photos").mkdir(parents=True)
            started = time.perf_counter()
            shas = build(f"sqlite:///{folder / 'web.db'}", count, folder / "photos")
            print(f"{count:,} records built in {time.perf_counter() - started:.0f} s; serving them:")
            results[count] = measure(folder / "web.db", shas, args.requests, label)
            print(f"  server memory after the run: {results[count]['rss_mb']:.0f} MB")
    large, small = results[args.records], results[args.small]
    growth = float(large["rss_mb"]) - float(small["rss_mb"])  # type: ignore[arg-type]
    print(f"memory: {small['rss_mb']} MB at {args.small:,} records, {large['rss_mb']} MB at {args.records:,} "
          f"({growth:+.0f} MB)")  # fmt: skip
    summary = {
        "records": args.records,
        "gallery_p50_ms": large["gallery first page"],
        "gallery_recount_p50_ms": large["gallery, counts recomputed"],
        "filtered_p50_ms": large["filtered page"],
        "record_p50_ms": large["record page"],
        "thumb_p50_ms": large["cached thumbnail"],
        "api_p50_ms": large["api records page"],
        "rss_mb_small": small["rss_mb"],
        "rss_mb_large": large["rss_mb"],
        "rss_growth_mb": round(growth, 1),
        "targets_met": large["gallery first page"] < 100  # type: ignore[operator]
        and large["filtered page"] < 100  # type: ignore[operator]
        and large["record page"] < 100  # type: ignore[operator]
        and large["cached thumbnail"] < 10  # type: ignore[operator]
        and growth < 50,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
