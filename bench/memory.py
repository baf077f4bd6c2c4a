"""Peak memory of `visextract run` for 200 vs 2,000 images: it must stay flat (streamed, never all held).

    .venv/bin/python bench/memory.py [--small 200] [--large 2000] [--tools classifier,colors]

Each size runs in a fresh process; its peak RSS is read from the kernel (the search embedder runs in it).
Cheap tools keep the 2,000-image run to a few minutes; memory per image in flight is
what matters, not which models run. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _photos import make_photos

RUN = """
import resource, sys, time
import visextract as vx
started = time.perf_counter()
summary = vx.Extractor(db=sys.argv[1], tools=sys.argv[3].split(","), llm=None).run(sys.argv[2])
seconds = round(time.perf_counter() - started, 1)
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(summary.processed, seconds, rss_mb)
"""


def measure(folder: Path, db: str, tools: str) -> tuple[int, float, int]:
    out = subprocess.run(
        [sys.executable, "-c", RUN, db, str(folder), tools], capture_output=True, text=True, check=True
    )
    processed, seconds, rss = out.stdout.split()
    return int(processed), float(seconds), int(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--tools", default="classifier,colors")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vx-memory-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        make_photos(root / "large", args.large)
        (root / "small").mkdir()
        for path in sorted((root / "large").iterdir())[: args.small]:
            (root / "small" / path.name).symlink_to(path)
        print(f"made {args.large} photos in {time.perf_counter() - started:.0f} s; tools: {args.tools}")
        results = {}
        for name, count in (("small", args.small), ("large", args.large)):
            processed, seconds, rss = measure(root / name, f"sqlite:///{root / name}.db", args.tools)
            results[name] = {"images": count, "seconds": seconds, "peak_rss_mb": rss}
            print(f"{count:6d} images: {processed} processed in {seconds:.0f} s, peak RSS {rss} MB")
        ratio = results["large"]["peak_rss_mb"] / results["small"]["peak_rss_mb"]
        print(f"peak RSS {args.large} vs {args.small} images: {ratio:.2f}x   (target <= 1.2)")
        print(json.dumps({"bench": "memory", "tools": args.tools, **results, "ratio": round(ratio, 3)}))


if __name__ == "__main__":
    main()
