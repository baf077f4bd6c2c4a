"""Tool-stage throughput on real photos: the pipeline vs a naive per-image loop vs the compute floor.

    .venv/bin/python bench/throughput.py [--images 24] [--rounds 3] [--tools classifier,faces,ocr,colors]

Three sides, each measured in its own fresh process with its models already loaded, alternating
(naive, floor, pipeline, naive, floor, pipeline, ...) so that the machine's load drifts over all of them:

- naive: the bundled models called one after another per image the way the packages' READMEs show
  (open, orient, classify, detect faces, OCR, count colours), full resolution, package defaults.
- floor: the models' own compute time: each tool's `run` called on one decoded image after another,
  every model with all cores, no decoding, no database, no graph. The working sizes are the tools'.
- pipeline: `Extractor.run` end to end (hash, decode, tools, records, search embeddings, SQLite), then a
  re-run of the same folder, which must skip everything.

Prints each round's images/s and ratios, the median ratios, start-up time (a fresh process on one image),
the re-run speed-up and peak RSS, then one JSON line with every figure.

`--variant NAME:VAR=VALUE,...` adds a pipeline side run with those environment variables, to measure one
change at a time: `--variant full:VISEXTRACT_FACES_MAX_SIDE=0,VISEXTRACT_OCR_DETECTOR_SIDE=0` (tools at
full resolution), `--variant before:PYTHONPATH=/path/to/other/checkout` (another version of the code).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _photos import SIZES, load_average, make_photos, peak_rss_mb

SIDES = ("naive", "floor", "pipeline")


# ---- the three sides, each run in a child process -------------------------------------------------------


def naive_loop(paths: list[Path], tools: list[str]) -> dict[str, float]:
    """Per-image sequential calls at full resolution with package defaults; seconds for the timed images."""
    import numpy as np
    import torch
    from facenet_pytorch import MTCNN
    from PIL import Image, ImageOps
    from rapidocr_onnxruntime import RapidOCR

    from visextract.local_models.bundled import imagenet_labels, load_efficientnet_lite0
    from visextract.tools.classifier import preprocess

    classifier = load_efficientnet_lite0()
    labels = imagenet_labels()
    mtcnn = MTCNN(keep_all=True, device="cpu")
    ocr = RapidOCR()

    def one(path: Path) -> None:
        image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        if "classifier" in tools:
            with torch.inference_mode():
                top = classifier(torch.from_numpy(preprocess(image))[None]).softmax(-1)[0].topk(5)
            _ = [labels[int(i)] for i in top.indices]
        if "faces" in tools:
            mtcnn.detect(image)
        if "ocr" in tools:
            ocr(np.asarray(image)[:, :, ::-1])
        if "colors" in tools:  # a simple colour count: the 8 most common colours of a thumbnail
            small = image.copy()
            small.thumbnail((96, 96))
            sorted(small.getcolors(96 * 96) or [], reverse=True)[:8]

    for path in paths[:2]:  # warm-up: first calls allocate
        one(path)
    started = time.perf_counter()
    for path in paths:
        one(path)
    return {"seconds": time.perf_counter() - started}


def floor_loop(paths: list[Path], tools: list[str]) -> dict[str, float]:
    """The tools' own compute time: `Tool.run` per decoded image, each model with all cores."""
    from visextract.images import decode_image, read_image_file
    from visextract.local_models.device import available_cores, use_cpu_threads
    from visextract.tools.base import ToolOptions
    from visextract.tools.registry import build_tools

    cores = available_cores()
    use_cpu_threads(cores)
    built = build_tools(tools, ToolOptions(threads=cores))
    for tool in built:
        tool.load()
    images = [decode_image(read_image_file(path), max_side=2048, max_pixels=120_000_000) for path in paths]
    for image in images[:2]:
        for tool in built:
            tool.run([image])
    per_tool = dict.fromkeys(tools, 0.0)
    for image in images:
        for tool in built:
            started = time.perf_counter()
            tool.run([image])
            per_tool[tool.name] += time.perf_counter() - started
    return {"seconds": sum(per_tool.values()), **{f"{name}_ms": 1000 * s / len(images) for name, s in per_tool.items()}}


def pipeline_run(paths: list[Path], warm: list[Path], tools: list[str], folder: Path) -> dict[str, float]:
    """`Extractor.run` over the photos (models loaded by a run over other photos first), then a re-run."""
    import visextract as vx

    vx.Extractor(db=f"sqlite:///{folder}/warm.db", tools=tools, llm=None).run(*warm)
    extractor = vx.Extractor(db=f"sqlite:///{folder}/bench.db", tools=tools, llm=None)
    started = time.perf_counter()
    summary = extractor.run(*paths)
    first = time.perf_counter() - started
    assert summary.processed == len(paths), summary
    started = time.perf_counter()
    again = extractor.run(*paths)
    rerun = time.perf_counter() - started
    assert again.skipped == len(paths), again
    return {"seconds": first, "rerun_seconds": rerun}


def child(side: str, photos: Path, warm: Path, tools: list[str], work: Path) -> None:
    paths = sorted(photos.glob("*.jpg"))
    if side == "naive":
        figures = naive_loop(paths, tools)
    elif side == "floor":
        figures = floor_loop(paths, tools)
    else:
        figures = pipeline_run(paths, sorted(warm.glob("*.jpg")), tools, work)
    print(json.dumps({**figures, "images": len(paths), "peak_rss_mb": round(peak_rss_mb())}))


# ---- the parent: rounds, ratios, the JSON line ------------------------------------------------------------


def run_child(
    side: str, folder: Path, tools: list[str], work: Path, env: dict[str, str] | None = None
) -> dict[str, float]:
    work.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, __file__, "--child", side, "--folder", str(folder), "--tools", ",".join(tools)]
    environment = {**os.environ, **(env or {})}
    out = subprocess.run([*command, "--work", str(work)], capture_output=True, text=True, env=environment)
    if out.returncode != 0:
        raise SystemExit(f"{side} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def startup_seconds(tools: list[str], folder: Path) -> float:
    """A fresh process running one image: imports + model loads + that image."""
    one = folder / "one"
    make_photos(one, 1)
    code = (
        "import time; t=time.perf_counter(); import visextract as vx; "
        f"vx.Extractor(db='sqlite:///{folder}/startup.db', tools={tools!r}, llm=None).run('{one}'); "
        "print(time.perf_counter()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tools", default="classifier,faces,ocr,colors")
    parser.add_argument("--sides", default=",".join(SIDES), help="which sides to run (default: all three)")
    parser.add_argument("--variant", action="append", default=[], help="NAME:VAR=VALUE,... an extra pipeline side")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    tools = args.tools.split(",")
    if args.child:
        child(args.child, args.folder / "photos", args.folder / "warm", tools, args.work)
        return
    sides = [side for side in SIDES if side in args.sides.split(",")]
    variants = dict(parse_variant(text) for text in args.variant)
    with tempfile.TemporaryDirectory(prefix="vx-bench-") as tmp:
        folder = Path(tmp)
        make_photos(folder / "photos", args.images)
        make_photos(folder / "warm", 4, offset=args.images)
        print(f"{args.images} photos ({', '.join(f'{w}x{h}' for w, h in SIZES)}), tools: {args.tools}")
        print(f"load average at start: {load_average()}")
        startup = startup_seconds(tools, folder) if "pipeline" in sides else None
        rounds = []
        for number in range(1, args.rounds + 1):
            figures = {side: run_child(side, folder, tools, folder / f"r{number}-{side}") for side in sides}
            for name, env in variants.items():
                figures[name] = run_child("pipeline", folder, tools, folder / f"r{number}-{name}", env)
            rate = {side: args.images / figures[side]["seconds"] for side in figures}
            row = {"round": number, **{f"{side}_ips": round(rate[side], 3) for side in figures}}
            row |= ratios(rate, list(variants))
            if "pipeline" in figures:
                row["rerun_speedup"] = round(figures["pipeline"]["seconds"] / figures["pipeline"]["rerun_seconds"], 1)
            if "floor" in figures:
                row["floor_ms_per_image"] = {k[:-3]: round(v) for k, v in figures["floor"].items() if k.endswith("_ms")}
            row["peak_rss_mb"] = {side: figures[side]["peak_rss_mb"] for side in figures}
            rounds.append(row)
            print(
                f"round {number}: "
                + "  ".join(f"{side} {rate[side]:5.2f} img/s" for side in figures)
                + "   "
                + "  ".join(f"{k} {v:.2f}" for k, v in ratios(rate, list(variants)).items())
                + (f"   re-run {row['rerun_speedup']:.0f}x" if "rerun_speedup" in row else ""),
                flush=True,
            )
        medians = {
            key: round(statistics.median(r[key] for r in rounds), 3)
            for key in rounds[0]
            if key.endswith(("_ips", "_vs_naive", "_vs_floor", "_vs_pipeline", "speedup"))
        }
        load = load_average()
        print("median: " + "  ".join(f"{k} {v:.2f}" for k, v in medians.items()))
        if "pipeline_vs_naive" in medians:
            print(f"pipeline / naive = {medians['pipeline_vs_naive']:.2f}x (target >= 1.0; with working sizes >= 1.5)")
        if "pipeline_vs_floor" in medians:
            print(f"pipeline / floor = {medians['pipeline_vs_floor']:.2f}x (target >= 0.9)")
        if "floor_vs_naive" in medians:
            print(f"floor / naive    = {medians['floor_vs_naive']:.2f}x (target >= 1.5)")
        if startup is not None:
            print(f"start-up (fresh process, one image, imports + model loads): {startup:.1f} s")
        if "rerun_speedup" in medians:
            speedup = medians["rerun_speedup"]
            print(f"re-run of the finished folder: {speedup:.0f}x faster than the first run (target >= 5)")
        print(f"load average at end: {load}")
        print(
            json.dumps(
                {
                    "bench": "throughput",
                    "images": args.images,
                    "tools": tools,
                    "cores": os.cpu_count(),
                    "rounds": rounds,
                    "median": medians,
                    "startup_seconds": round(startup, 2) if startup is not None else None,
                    "load_average_end": load,
                }
            )
        )


def ratios(rate: dict[str, float], variants: Sequence[str] = ()) -> dict[str, float]:
    pairs = [("pipeline", "naive"), ("pipeline", "floor"), ("floor", "naive")]
    pairs += [(variant, "naive") for variant in variants] + [("pipeline", variant) for variant in variants]
    return {f"{a}_vs_{b}": round(rate[a] / rate[b], 3) for a, b in pairs if a in rate and b in rate}


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """ "full:VISEXTRACT_FACES_MAX_SIDE=0,VISEXTRACT_OCR_DETECTOR_SIDE=0" -> (name, environment)."""
    name, _, assignments = text.partition(":")
    env = dict(item.split("=", 1) for item in assignments.split(",") if item)
    return name, env


if __name__ == "__main__":
    main()
