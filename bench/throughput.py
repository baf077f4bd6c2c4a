"""Tool-stage throughput on real photos: `visextract run` vs a naive per-image loop vs the compute floor.

    .venv/bin/python bench/throughput.py [--images 48] [--tools classifier,faces,ocr,colors]

1. pipeline: `Extractor.run` end to end (decode, tools, records, search embeddings, SQLite), after a
   warm-up run so model loading is not counted; start-up (imports + model loads) is measured
   separately in a fresh process.
2. naive: the same models called one after another per image, the way the packages' READMEs show
   (open, orient, classify, detect faces, OCR, colours).
3. floor: the sum of each model's own forward time per image (from the naive loop).
Prints images/s, the ratios pipeline/naive and pipeline/floor, the re-run speed-up, and peak RSS.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _photos import SIZES, make_photos, peak_rss_mb


def naive_loop(paths: list[Path], tools: list[str]) -> tuple[float, dict[str, float]]:
    """Per-image sequential calls; returns (seconds, model-only seconds per tool)."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    from visextract.local_models.bundled import imagenet_labels, load_efficientnet_lite0
    from visextract.tools.classifier import preprocess
    from visextract.tools.colors import dominant_colors

    classifier = load_efficientnet_lite0()
    labels = imagenet_labels()
    from facenet_pytorch import MTCNN
    from rapidocr_onnxruntime import RapidOCR

    mtcnn = MTCNN(keep_all=True, device="cpu")
    ocr = RapidOCR()
    model_seconds = dict.fromkeys(tools, 0.0)
    started = time.perf_counter()
    for path in paths:
        image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        if "classifier" in tools:
            x = torch.from_numpy(preprocess(image))[None]
            t = time.perf_counter()
            with torch.inference_mode():
                top = classifier(x).softmax(-1)[0].topk(5)
            model_seconds["classifier"] += time.perf_counter() - t
            _ = [labels[int(i)] for i in top.indices]
        if "faces" in tools:
            t = time.perf_counter()
            _boxes, _ = mtcnn.detect(image)
            model_seconds["faces"] += time.perf_counter() - t
        if "ocr" in tools:
            t = time.perf_counter()
            ocr(np.asarray(image)[:, :, ::-1])
            model_seconds["ocr"] += time.perf_counter() - t
        if "colors" in tools:
            t = time.perf_counter()
            dominant_colors(image)
            model_seconds["colors"] += time.perf_counter() - t
    return time.perf_counter() - started, model_seconds


def pipeline(paths: list[Path], warm: list[Path], tools: list[str], db: str) -> tuple[float, float]:
    """Seconds for a first run (models already loaded) and for a re-run of the same folder."""
    import visextract as vx

    vx.Extractor(db=db + ".warm", tools=tools, llm=None).run(*warm)  # loads every model
    extractor = vx.Extractor(db=db, tools=tools, llm=None)
    started = time.perf_counter()
    summary = extractor.run(*paths)
    first = time.perf_counter() - started
    assert summary.processed == len(paths), summary
    started = time.perf_counter()
    again = extractor.run(*paths)
    rerun = time.perf_counter() - started
    assert again.skipped == len(paths), again
    return first, rerun


def startup_seconds(tools: list[str], folder: Path) -> float:
    """A fresh `visextract run` on one image, minus that image's share: imports + model loads."""
    one = folder / "one"
    one.mkdir(exist_ok=True)
    make_photos(one, 1)
    code = (
        "import time; t=time.perf_counter(); import visextract as vx; "
        f"s=vx.Extractor(db='sqlite:///{folder}/startup.db', tools={tools!r}, llm=None).run('{one}'); "
        "print(time.perf_counter()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--tools", default="classifier,faces,ocr,colors")
    args = parser.parse_args()
    tools = args.tools.split(",")
    with tempfile.TemporaryDirectory(prefix="vx-bench-") as tmp:
        folder = Path(tmp)
        paths = make_photos(folder / "photos", args.images)
        warm = make_photos(folder / "warm", 4)
        sizes = ", ".join(f"{w}x{h}" for w, h in SIZES)
        print(f"{len(paths)} photos ({sizes}), tools: {args.tools}")
        startup = startup_seconds(tools, folder)
        naive_seconds, model_seconds = naive_loop(paths, tools)
        floor_seconds = sum(model_seconds.values())
        first, rerun = pipeline(paths, warm, tools, f"sqlite:///{folder}/bench.db")
        n = len(paths)
        pipeline_ips, naive_ips, floor_ips = n / first, n / naive_seconds, n / floor_seconds
        print(f"start-up (fresh process, imports + model loads): {startup:.1f} s")
        print("model time per image: " + ", ".join(f"{k} {1000 * v / n:.0f} ms" for k, v in model_seconds.items()))
        print(f"pipeline  {pipeline_ips:6.2f} img/s   ({first:.1f} s)")
        print(f"naive     {naive_ips:6.2f} img/s   ({naive_seconds:.1f} s)")
        print(f"floor     {floor_ips:6.2f} img/s   ({floor_seconds:.1f} s of model time)")
        print(f"pipeline / naive = {pipeline_ips / naive_ips:.2f}x   (target >= 1.0)")
        print(f"pipeline / floor = {pipeline_ips / floor_ips:.2f}x   (target >= 0.9)")
        speedup = first / rerun
        print(f"re-run of the finished folder: {rerun:.2f} s = {speedup:.0f}x faster than the first run (target >= 5)")
        print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
