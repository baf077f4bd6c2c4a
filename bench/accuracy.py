"""What the speed settings cost in accuracy: the default tools at their working sizes vs at full resolution.

    .venv/bin/python bench/accuracy.py [--faces-max-side 1024] [--ocr-detector-side 736]

On `examples/`, the test photos (scikit-image), the benchmark photos (640-1600 px) and two larger ones (a
group of faces at 1600 px, the scanned page enlarged 5x), it runs classifier, faces and OCR twice: at full
resolution (`faces_max_side=0, ocr_detector_side=0`: MTCNN and rapidocr as their packages run them) and
with the settings given (default: the defaults). It compares top-1 labels, face counts (and box IoU), and
the OCR character error rate (CER) on the scanned page against `page_reference.txt`, a transcription made by
reading the page. Ends with one JSON line. Targets: same top-1 labels, same face counts, CER no worse
than +0.02.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from _photos import make_photos
from accuracy_checks import PAGE_REFERENCE, cer, group_photo, iou

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("scanned-page.png", "page.png", "page-5x.png")


def photo_set(folder: Path) -> list[Path]:
    """Every photo the comparison runs on, written to `folder` where they are not files already."""
    import skimage.data

    paths = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix in (".jpg", ".png"))
    for name in ("astronaut", "chelsea", "coffee", "page", "rocket", "camera"):
        path = folder / f"{name}.png"
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(path)
        paths.append(path)
    page = Image.fromarray(skimage.data.page())
    page.resize((page.width * 5, page.height * 5), Image.Resampling.BICUBIC).save(folder / "page-5x.png")
    group_photo().save(folder / "group-1600.jpg", quality=92)
    paths += [folder / "page-5x.png", folder / "group-1600.jpg"]
    return paths + make_photos(folder / "bench", 24)


def run_tools(paths: list[Path], faces_max_side: int, ocr_detector_side: int) -> dict[str, dict[str, object]]:
    from visextract.images import decode_image, read_image_file
    from visextract.tools.base import ToolOptions
    from visextract.tools.registry import build_tools

    options = ToolOptions(faces_max_side=faces_max_side, ocr_detector_side=ocr_detector_side)
    tools = {tool.name: tool for tool in build_tools(["classifier", "faces", "ocr"], options)}
    found: dict[str, dict[str, object]] = {}
    for path in paths:
        image = decode_image(read_image_file(path), max_side=2048, max_pixels=120_000_000)
        results = {name: tool.run([image])[0] for name, tool in tools.items()}
        found[path.name] = {
            "top1": results["classifier"][0].label,
            "faces": [face.box for face in results["faces"]],
            "text": [line.text for line in results["ocr"]],
        }
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces-max-side", type=int, default=1024)
    parser.add_argument("--ocr-detector-side", type=int, default=736)
    args = parser.parse_args()
    reference = PAGE_REFERENCE.read_text()
    with tempfile.TemporaryDirectory(prefix="vx-accuracy-") as tmp:
        paths = photo_set(Path(tmp))
        full = run_tools(paths, 0, 0)
        fast = run_tools(paths, args.faces_max_side, args.ocr_detector_side)
    label_changes, face_changes, ious = [], [], []
    print(
        f"{len(paths)} photos; full resolution vs faces_max_side={args.faces_max_side}, "
        f"ocr_detector_side={args.ocr_detector_side}"
    )
    for name in full:
        a, b = full[name], fast[name]
        if a["top1"] != b["top1"]:
            label_changes.append((name, a["top1"], b["top1"]))
        if len(a["faces"]) != len(b["faces"]):  # type: ignore[arg-type]
            face_changes.append((name, len(a["faces"]), len(b["faces"])))  # type: ignore[arg-type]
        else:
            ious += [max(iou(x, y) for y in b["faces"]) for x in a["faces"]]  # type: ignore[union-attr]
    pages = {
        name: {
            "full": round(cer(reference, "\n".join(full[name]["text"])), 4),  # type: ignore[arg-type]
            "fast": round(cer(reference, "\n".join(fast[name]["text"])), 4),
        }  # type: ignore[arg-type]
        for name in PAGES
    }
    faces = sum(len(v["faces"]) for v in full.values())  # type: ignore[arg-type]
    print(f"top-1 labels changed: {len(label_changes)} {label_changes}")
    print(f"face counts changed: {len(face_changes)} {face_changes} ({faces} faces at full resolution)")
    if ious:
        print(f"face boxes, IoU with full resolution: min {min(ious):.2f}, mean {np.mean(ious):.2f}")
    for name, values in pages.items():
        print(
            f"OCR CER on {name}: full {values['full']:.3f}, with the settings {values['fast']:.3f} "
            f"({values['fast'] - values['full']:+.3f}; target <= +0.02)"
        )
    print(
        json.dumps(
            {
                "bench": "accuracy",
                "photos": len(paths),
                "faces_max_side": args.faces_max_side,
                "ocr_detector_side": args.ocr_detector_side,
                "top1_changed": label_changes,
                "face_counts_changed": face_changes,
                "faces_full": faces,
                "face_iou_min": round(min(ious), 3) if ious else None,
                "page_cer": pages,
            }
        )
    )


if __name__ == "__main__":
    main()
