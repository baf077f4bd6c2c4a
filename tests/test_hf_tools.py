"""Transformers tools (detector, classifier, captioner, zeroshot, openvocab, vqa, depth) on tiny
random-weight models built from configs and loaded by path, exactly as a downloaded model would be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tiny_models
from PIL import Image

import visextract as vx
from visextract.images import ImageFile, decode_image
from visextract.tools.base import ToolOptions
from visextract.tools.registry import build_tools

HF_TOOLS = ["classifier", "detector", "captioner", "zeroshot", "openvocab", "vqa", "depth"]
QUERIES = ["a cat", "a dog"]
QUESTION = "what colour is it?"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every tiny model, saved with save_pretrained into a temporary folder."""
    return tiny_models.build_all(tmp_path_factory.mktemp("tiny-models"))


def model_flags(tiny: dict[str, Path]) -> list[str]:
    chosen = {
        "classifier": "vit", "detector": "detr", "captioner": "blip", "zeroshot": "clip",
        "openvocab": "owlvit", "vqa": "vilt", "depth": "dpt",
    }  # fmt: skip
    return [arg for tool, name in chosen.items() for arg in ("--model", f"{tool}={tiny[name]}")]


@pytest.fixture(scope="module")
def odd_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Non-square, EXIF-rotated and larger-than-working-size photos."""
    import skimage.data

    folder = tmp_path_factory.mktemp("odd")
    cat = Image.fromarray(skimage.data.chelsea())  # 451 x 300
    cat.save(folder / "wide-cat.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": stored 451x300, shown 300x451
    cat.save(folder / "rotated-cat.jpg", exif=exif.tobytes())
    Image.fromarray(skimage.data.rocket()).resize((3000, 1000)).save(folder / "panorama.jpg")
    return folder


@pytest.fixture(scope="module")
def hf_export(tiny, odd_photos, tmp_path_factory, cli) -> dict[str, dict]:
    db = f"sqlite:///{tmp_path_factory.mktemp('hfdb') / 'hf.db'}"
    result = cli(
        "run", odd_photos, "--db", db, "--tools", ",".join(HF_TOOLS), *model_flags(tiny),
        "--labels", ",".join(QUERIES), "--question", QUESTION, "--detector-threshold", "0.0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 processed" in result.stdout, result.stdout
    records = [json.loads(line) for line in cli("export", "--db", db).stdout.splitlines()]
    return {Path(r["path"]).name: r for r in records}


@pytest.fixture(scope="module")
def cli():
    from typer.testing import CliRunner

    from visextract.cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_inside(box: list[float], width: int, height: int) -> None:
    x1, y1, x2, y2 = box
    assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height, (box, width, height)


def test_every_tool_lands_in_the_export_with_its_documented_shape(hf_export):
    record = hf_export["wide-cat.png"]
    assert record["status"] == "ok"
    assert list(record["tools"]) == HF_TOOLS
    tools = record["tools"]

    assert len(tools["classifier"]) == 5
    assert {c["label"] for c in tools["classifier"]} <= set(tiny_models.IMAGE_CLASSIFICATION_LABELS.values())
    assert tools["detector"], "threshold 0 keeps every box"
    for detection in tools["detector"]:
        assert detection["label"] in tiny_models.DETECTION_LABELS.values()
        assert set(detection) == {"label", "score", "box"}
    (caption,) = tools["captioner"]
    assert isinstance(caption["text"], str) and caption["text"]
    assert {z["label"] for z in tools["zeroshot"]} == set(QUERIES)
    assert sum(z["score"] for z in tools["zeroshot"]) == pytest.approx(1, abs=1e-3)
    assert tools["openvocab"] and {d["label"] for d in tools["openvocab"]} <= set(QUERIES)
    (answer,) = tools["vqa"]
    assert answer["question"] == QUESTION and answer["answer"] in tiny_models.VQA_LABELS.values()
    (depth,) = tools["depth"]
    assert depth["min"] <= depth["median"] <= depth["max"]
    depth_map = Image.open(depth["map_path"])
    assert depth_map.size == (451, 300) and depth_map.mode.startswith("I")


def test_boxes_are_in_pixels_of_the_upright_original_image(hf_export):
    rotated = hf_export["rotated-cat.jpg"]
    assert (rotated["width"], rotated["height"]) == (300, 451)  # EXIF orientation applied
    panorama = hf_export["panorama.jpg"]
    assert (panorama["width"], panorama["height"]) == (3000, 1000)
    for record in (hf_export["wide-cat.png"], rotated, panorama):
        for tool in ("detector", "openvocab"):
            for detection in record["tools"][tool]:
                assert_inside(detection["box"], record["width"], record["height"])
    # the tools saw a 2048-px working copy; boxes were mapped back to the 3000-px original
    assert max(d["box"][2] for d in panorama["tools"]["detector"]) > 2048


@pytest.mark.parametrize("architecture", ["conditional_detr", "yolos", "rt_detr"])
def test_any_object_detection_architecture_works_as_the_detector(architecture, tiny, odd_photos, tmp_path):
    ex = vx.Extractor(
        db=f"sqlite:///{tmp_path / 'det.db'}",
        tools=["detector"],
        models={"detector": str(tiny[architecture])},
        detector_threshold=0.0,
    )
    assert ex.run(odd_photos / "wide-cat.png").processed == 1
    (record,) = ex.records()
    detections = record.tools["detector"]
    assert detections and all(d.label in tiny_models.DETECTION_LABELS.values() for d in detections)
    for detection in detections:
        assert_inside(detection.box, 451, 300)


def test_batches_give_the_same_results_as_one_image_at_a_time(tiny, odd_photos):
    import skimage.data

    arrays = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut(), skimage.data.rocket()]
    images = []
    for i, array in enumerate(arrays):  # two share a size, the others differ
        pil = Image.fromarray(array).resize((320, 240)) if i < 2 else Image.fromarray(array)
        file = ImageFile(path=Path(f"{i}.png"), data=b"x", sha256=f"{i:064d}")
        images.append(decode_image_from_pil(pil, file))
    options = ToolOptions(
        models={
            "classifier": str(tiny["vit"]), "detector": str(tiny["detr"]), "captioner": str(tiny["blip"]),
            "zeroshot": str(tiny["clip"]), "openvocab": str(tiny["owlvit"]), "vqa": str(tiny["vilt"]),
            "depth": str(tiny["dpt"]),
        },
        labels=tuple(QUERIES), question=QUESTION, detector_threshold=0.0,
    )  # fmt: skip
    for tool in build_tools(HF_TOOLS, options):
        batched = tool.run(images)
        one_by_one = [tool.run([image])[0] for image in images]
        assert len(batched) == len(images)
        for together, alone in zip(batched, one_by_one, strict=True):
            assert [type(r) for r in together] == [type(r) for r in alone], tool.name
            for a, b in zip(together, alone, strict=True):
                assert a.model_dump(exclude={"score", "box", "min", "median", "max"}) == b.model_dump(
                    exclude={"score", "box", "min", "median", "max"}
                ), tool.name
                for key in ("score", "min", "median", "max"):
                    if hasattr(a, key):
                        assert getattr(a, key) == pytest.approx(getattr(b, key), abs=2e-3), tool.name
                if hasattr(a, "box"):
                    assert a.box == pytest.approx(b.box, abs=0.5), tool.name


def decode_image_from_pil(pil: Image.Image, file: ImageFile):
    import io

    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return decode_image(
        ImageFile(path=file.path, data=buffer.getvalue(), sha256=file.sha256), max_side=2048, max_pixels=10**8
    )


def test_a_missing_model_is_one_clear_line_before_any_work(cli, photos, tmp_path):
    db_file = tmp_path / "missing.db"
    result = cli("run", photos, "--db", f"sqlite:///{db_file}", "--tools", "classifier,detector")
    assert result.exit_code != 0
    (line,) = result.stderr.strip().splitlines()
    assert "tool detector" in line and "microsoft/conditional-detr-resnet-50" in line
    assert "hf download microsoft/conditional-detr-resnet-50" in line and "--model" in line
    assert not db_file.exists()  # nothing was started


def test_skip_missing_tools_runs_the_rest(cli, photos, tmp_path):
    db = f"sqlite:///{tmp_path / 'skip.db'}"
    result = cli("run", photos / "coffee.jpg", "--db", db, "--tools", "colors,captioner", "--skip-missing-tools")
    assert result.exit_code == 0 and "1 processed" in result.stdout
    assert "skipping tool captioner" in result.stderr
    (record,) = [json.loads(line) for line in cli("export", "--db", db).stdout.splitlines()]
    assert list(record["tools"]) == ["colors"]


def test_a_model_folder_that_does_not_exist_is_named(cli, photos, tmp_path):
    result = cli("run", photos, "--db", f"sqlite:///{tmp_path / 'x.db'}", "--model", "classifier=/no/such/vit")
    assert result.exit_code != 0 and "model folder /no/such/vit does not exist" in result.stderr


def test_models_lists_every_tool_truthfully(cli, tiny):
    listing = cli("models").stdout
    for tool in ("classifier", "faces", "ocr", "colors", "nsfw", *HF_TOOLS[1:]):
        assert tool in listing
    rows = {
        line.split("│")[1].strip(): line
        for line in listing.splitlines()
        if line.startswith("│ ") and line.split("│")[1].strip()
    }
    assert "yes" in rows["faces"] and "yes" in rows["ocr"] and "yes" in rows["classifier"]
    assert "no" in rows["detector"] and "not in the local Hugging Face cache" in listing
    swapped = cli("models", "--model", f"detector={tiny['detr']}").stdout
    detector_row = next(line for line in swapped.splitlines() if line.startswith("│ detector"))
    assert "yes" in detector_row


def test_tools_that_need_labels_or_a_question_say_so(cli, photos, tmp_path, tiny):
    db = f"sqlite:///{tmp_path / 'x.db'}"
    for tools, message in [("zeroshot", "--labels"), ("openvocab", "--labels"), ("vqa", "--question")]:
        result = cli("run", photos, "--db", db, "--tools", tools)
        assert result.exit_code != 0 and message in result.stderr
    result = cli("run", photos, "--db", db, "--model", "faces=/some/model")
    assert result.exit_code != 0 and "cannot be swapped" in result.stderr
