"""LLM-stage throughput against a local OpenAI-compatible server that answers after a fixed delay.

    .venv/bin/python bench/llm_concurrency.py [--images 48] [--concurrency 8] [--latency 1.0] [--rounds 3]

The server (tests/openai_test_server.py) runs in this process and sleeps `--latency` seconds per call;
each run is a fresh `python -m visextract.cli run --schema vehicle --tools colors --llm openai` process,
cold (its models load while it runs, as a user's first run does). Sides, alternating in rounds:

- default: the default settings (search index on: the MiniLM embedder loads in the background);
- no-index: `VISEXTRACT_SEARCH_INDEX=0`, for reference.

From the server's arrival times: requests/s from the first request to the last answer, and the longest
gap between two requests. Targets (default side): at least 0.8 x concurrency / latency requests/s, and no
gap longer than 2 x latency. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from _photos import load_average, make_photos
from openai_test_server import OpenAITestServer, json_reply

ANSWER = {"type": "car", "license": None, "make": None, "model": None, "color": None}
SIDES = {"default": {}, "no-index": {"VISEXTRACT_SEARCH_INDEX": "0"}}


def run_side(
    server: OpenAITestServer, env: dict[str, str], photos: Path, db: Path, concurrency: int, latency: float
) -> dict[str, float]:
    """One cold CLI run; the request rate and the longest gap between requests, from the server's log."""
    server.reset()
    server.default_reply = json_reply(ANSWER)
    command = [sys.executable, "-m", "visextract.cli", "run", str(photos), "--db", f"sqlite:///{db}"]
    command += ["--schema", "vehicle", "--tools", "colors", "--llm", "openai", "--concurrency", str(concurrency)]
    environment = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "bench", **env}
    started = time.monotonic()
    out = subprocess.run(command, capture_output=True, text=True, env=environment)
    seconds = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"run failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    arrivals = sorted(request.received_at for request in server.requests)
    span = arrivals[-1] + latency - arrivals[0]  # first request in, last answer out
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return {
        "requests": len(arrivals),
        "requests_per_s": len(arrivals) / span,
        "max_gap_s": max(gaps, default=0.0),
        "first_request_after_s": arrivals[0] - started,
        "process_seconds": seconds,
        "max_in_flight": server.max_in_flight,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bound = args.concurrency / args.latency
    with tempfile.TemporaryDirectory(prefix="vx-llm-") as tmp, OpenAITestServer(fixed_latency=args.latency) as server:
        photos = Path(tmp) / "photos"
        make_photos(photos, args.images)
        print(f"{args.images} images, concurrency {args.concurrency}, {args.latency:.1f} s per LLM call")
        print(f"load average at start: {load_average()}")
        rounds = []
        for number in range(1, args.rounds + 1):
            row: dict[str, object] = {"round": number}
            for side, env in SIDES.items():
                db = Path(tmp) / f"r{number}-{side}.db"
                figures = run_side(server, env, photos, db, args.concurrency, args.latency)
                assert figures["requests"] == args.images, figures
                row[side] = {key: round(value, 3) for key, value in figures.items()}
                print(
                    f"round {number} {side:8s}: {figures['requests_per_s']:5.2f} requests/s "
                    f"({figures['requests_per_s'] / bound:.0%} of {bound:.0f}/s), "
                    f"longest gap {figures['max_gap_s']:.2f} s, first request {figures['first_request_after_s']:.1f} s "
                    f"after start, max in flight {figures['max_in_flight']}",
                    flush=True,
                )
            rounds.append(row)
        median = {
            side: {
                key: round(statistics.median(r[side][key] for r in rounds), 3)  # type: ignore[index]
                for key in ("requests_per_s", "max_gap_s", "first_request_after_s")
            }
            for side in SIDES
        }
        default = median["default"]
        ratio = default["requests_per_s"] / bound
        worst_gap = max(r["default"]["max_gap_s"] for r in rounds)  # type: ignore[index]
        print(
            f"median, default settings: {default['requests_per_s']:.2f} requests/s = {ratio:.2f} x concurrency/latency "
            f"(target >= 0.8); longest gap in any round {worst_gap:.2f} s (target <= {2 * args.latency:.1f})"
        )
        print(f"median, no search index: {median['no-index']['requests_per_s']:.2f} requests/s")
        load = load_average()
        print(f"load average at end: {load}")
        print(
            json.dumps(
                {
                    "bench": "llm_concurrency",
                    "images": args.images,
                    "concurrency": args.concurrency,
                    "latency_s": args.latency,
                    "rounds": rounds,
                    "median": median,
                    "default_vs_bound": round(ratio, 3),
                    "worst_gap_s": round(worst_gap, 3),
                    "load_average_end": load,
                }
            )
        )


if __name__ == "__main__":
    main()
