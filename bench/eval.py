"""Time `vx.evaluate` on 100,000 gold lines against a database of 100,000 records.

    .venv/bin/python bench/eval.py [--records 100000] [--rounds 3] [--db postgresql+psycopg://...]

The records are synthetic but shaped like real scene records: ImageNet labels, face counts, OCR-like
text and colour names, with per-field provenance (sources, evidence, verified flags) as the pipeline
writes it, and each image at one path. The gold names a third of the images by sha256, a third by
absolute path and a third by bare file name, and differs from the records on some fields, so every
metric (set precision/recall, CER, MAE, review flag) does real work. Target: < 10 s.
Prints the figures, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from _synthetic import insert_images, sha256_of

TARGET_SECONDS = 10.0
COLORS = ["red", "blue", "green", "white", "black", "brown", "gray", "yellow"]
TEXTS = [None, None, "OPEN 24 HOURS", "TOTAL 12.50 EUR", "Chapter one. It was a dark and stormy night"]


def path_of(i: int) -> str:
    return f"/photos/{i // 1000:03d}/{i:06d}.jpg"


def record_values(i: int, labels: list[str]) -> tuple[dict, dict]:
    """Image i's extracted data and provenance (deterministic)."""
    rng = random.Random(i)
    data = {
        "labels": rng.sample(labels, rng.randint(1, 3)),
        "face_count": rng.choice([0, 0, 0, 1, 2, 3]),
        "text": rng.choice(TEXTS),
        "dominant_colors": rng.sample(COLORS, 3),
    }
    provenance = {
        "labels": {"source": "tool:classifier", "verified": None,
                   "evidence": [{"tool": "classifier", "index": k, "text": label}
                                for k, label in enumerate(data["labels"])]},
        "face_count": {"source": "llm" if i % 3 == 0 else "tool:faces", "verified": i % 11 != 0,
                       "evidence": [{"tool": "faces", "index": k, "box": [10.0, 20.0, 110.0, 140.0]}
                                    for k in range(data["face_count"])]},
        "text": {"source": "tool:ocr", "verified": None, "evidence": [{"tool": "ocr", "index": 0}]},
        "dominant_colors": {"source": "tool:colors", "verified": None,
                            "evidence": [{"tool": "colors", "index": k} for k in range(3)]},
    }  # fmt: skip
    return data, provenance


def gold_line(i: int, labels: list[str], data: dict) -> dict:
    """The truth for image i: mostly what was extracted, with label, count, text and colour mistakes."""
    rng = random.Random(-i)
    truth = json.loads(json.dumps(data))
    if rng.random() < 0.3:
        truth["labels"] = [*truth["labels"][:1], labels[rng.randrange(len(labels))]]
    if rng.random() < 0.2:
        truth["face_count"] += 1
    if truth["text"] and rng.random() < 0.5:
        truth["text"] = truth["text"].replace("O", "0").lower()
    if rng.random() < 0.1:
        truth["dominant_colors"] = truth["dominant_colors"][:2]
    key = ("sha256", "path", "name")[i % 3]
    name = {"sha256": sha256_of(i), "path": path_of(i), "name": f"{i:06d}.jpg"}[key]
    return {key if key != "name" else "path": name, "data": truth}


def build(url: str, count: int, gold_path: Path) -> None:
    from visextract.local_models.bundled import imagenet_labels
    from visextract.schemas.scene import SCENE
    from visextract.store import Store
    from visextract.store.tables import RecordRow, utc_now

    store = Store(url)
    store.start_run(SCENE, {}, {"synthetic": count})
    labels = imagenet_labels()
    now = utc_now()
    chunk = 5000
    with store.engine.begin() as connection, open(gold_path, "w") as gold:
        for start in range(0, count, chunk):
            ids = range(start + 1, min(count, start + chunk) + 1)
            insert_images(connection, ids, now, path_of)
            rows = []
            for i in ids:
                data, provenance = record_values(i, labels)
                rows.append({"id": i, "subject": sha256_of(i), "image_id": i, "path": path_of(i),
                             "schema_name": "scene", "schema_version": SCENE.version, "tools": {}, "tools_key": "",
                             "status": "needs_review" if i % 11 == 0 else "ok", "complete": True, "data": data,
                             "provenance": provenance, "created_at": now, "is_current": True})  # fmt: skip
                gold.write(json.dumps(gold_line(i, labels, data)) + "\n")
            connection.execute(RecordRow.__table__.insert(), rows)
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="timed evaluations (each in this process)")
    parser.add_argument("--db", default=None, help="an empty database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vx-eval-") as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'eval.db'}"
        gold = Path(tmp) / "gold.jsonl"
        started = time.perf_counter()
        build(url, args.records, gold)
        print(f"{args.records:,} records and gold lines built in {time.perf_counter() - started:.0f} s "
              f"({url.split(':')[0]}; gold file {gold.stat().st_size / 1e6:.0f} MB)")  # fmt: skip

        import visextract as vx
        from visextract.evaluation.gold import read_gold
        from visextract.query import open_store
        from visextract.store.store import stored_schema

        schema = stored_schema(open_store(url).schema_versions()[-1])
        parse_started = time.process_time()
        read_gold(gold, schema)
        parse_cpu = time.process_time() - parse_started
        walls, cpus = [], []
        for _ in range(args.rounds):
            open_store.cache_clear()  # each round opens the database afresh, as a new `visextract eval` does
            wall, cpu = time.perf_counter(), time.process_time()
            report = vx.evaluate(gold, db=url, schema="scene")
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        assert report.images.matched == args.records, report.images
        load = os.getloadavg()[0]
        print(f"gold parsing and checking alone: {parse_cpu:.2f} s CPU")
        rounds = ", ".join(f"{w:.2f} / {c:.2f} s" for w, c in zip(walls, cpus, strict=True))
        print(f"evaluate rounds (wall / CPU): {rounds}")
        seconds, cpu_seconds = statistics.median(walls), statistics.median(cpus)
        print(f"evaluate {args.records:,} gold lines: median {seconds:.2f} s wall, {cpu_seconds:.2f} s CPU   "
              f"(target < {TARGET_SECONDS:.0f} s; load average {load:.1f} on {os.cpu_count()} CPUs)")  # fmt: skip
        for name, field in report.fields.items():
            metrics = field.model_dump(exclude={"n", "accuracy", "type", "by_source"})
            shown = "  ".join(f"{k} {v:.3f}" for k, v in metrics.items())
            print(f"  {name:16s} n {field.n:6d}  accuracy {field.accuracy:.3f}  {shown}")
        flag = report.review_flag
        print(f"  review flag      precision {flag.precision:.3f}  recall {flag.recall:.3f}")
        print(json.dumps({"benchmark": "eval", "records": args.records, "gold_lines": args.records,
                          "backend": url.split(":")[0], "seconds_median": round(seconds, 3),
                          "cpu_seconds_median": round(cpu_seconds, 3), "seconds": [round(w, 3) for w in walls],
                          "parse_cpu_seconds": round(parse_cpu, 3), "load_average": round(load, 1),
                          "target_seconds": TARGET_SECONDS, "ok": seconds < TARGET_SECONDS}))  # fmt: skip


if __name__ == "__main__":
    main()
