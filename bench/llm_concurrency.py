"""LLM-stage throughput vs --concurrency against a local OpenAI-compatible server with a fixed latency.

    .venv/bin/python bench/llm_concurrency.py [--latency 1.0] [--images 32]

The server (tests/openai_test_server.py) sleeps `--latency` seconds per call and answers a valid
record; tools are cheap (colors) so the LLM stage dominates. Target: at concurrency 8 and 1 s latency,
at least 0.8 x 8 = 6.4 images/s, and at least 5x the throughput of concurrency 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from _photos import make_photos
from openai_test_server import OpenAITestServer, json_reply

ANSWER = {"type": "car", "license": None, "make": None, "model": None, "color": None}


def main() -> None:
    import visextract as vx
    from visextract.config import Settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--levels", default="1,4,8,16")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vx-llm-") as tmp, OpenAITestServer(fixed_latency=args.latency) as server:
        os.environ["OPENAI_BASE_URL"] = server.base_url
        os.environ["OPENAI_API_KEY"] = "bench"
        server.default_reply = json_reply(ANSWER)
        paths = make_photos(Path(tmp) / "photos", args.images)
        vx.Extractor(db=f"sqlite:///{tmp}/warm.db", schema="vehicle", tools=["colors"], llm="openai").run(paths[0])
        print(f"{len(paths)} images, {args.latency:.1f} s per LLM call")
        rates = {}
        for level in map(int, args.levels.split(",")):
            settings = Settings(db=f"sqlite:///{tmp}/c{level}.db")
            ex = vx.Extractor(settings=settings, schema="vehicle", tools=["colors"], llm="openai", concurrency=level)
            server.reset()
            server.default_reply = json_reply(ANSWER)
            started = time.perf_counter()
            summary = ex.run(*paths)
            seconds = time.perf_counter() - started
            assert summary.processed == len(paths), summary
            rates[level] = len(paths) / seconds
            ideal = min(level, len(paths)) / args.latency
            print(
                f"concurrency {level:3d}: {rates[level]:5.2f} img/s  ({seconds:5.1f} s, "
                f"{rates[level] / ideal:.0%} of the ideal {ideal:.1f}/s, max in flight {server.max_in_flight})"
            )
        if 1 in rates and 8 in rates:
            print(f"concurrency 8 vs 1: {rates[8] / rates[1]:.1f}x   (target >= 5)")
            print(f"concurrency 8: {rates[8]:.2f} img/s vs target {0.8 * 8 / args.latency:.1f}")


if __name__ == "__main__":
    main()
