"""The tools' working sizes (MTCNN at 1024 px, the OCR detector at a 736 px short side) are faster and read
the same things as full resolution: same faces with boxes in original pixels, the page read as well."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
from accuracy_checks import PAGE_REFERENCE, cer, group_photo, iou
from PIL import Image

import visextract as vx
from visextract.config import Settings
from visextract.images import decode_image, read_image_file
from visextract.store.export import export_dicts
from visextract.tools.base import ToolOptions
from visextract.tools.faces import MtcnnFaces
from visextract.tools.ocr import RapidOcr, detector_preprocess


def faces_found(folder: Path, db: str, faces_max_side: int) -> list[list[float]]:
    settings = Settings(db=db, faces_max_side=faces_max_side, search_index=False)
    extractor = vx.Extractor(settings=settings, tools=["faces"], llm=None)
    assert extractor.run(folder).processed == 1
    (record,) = extractor.records()
    assert (record.width, record.height) == (1600, 1067)
    (exported,) = export_dicts(extractor.store)
    return [face["box"] for face in exported["tools"]["faces"]]


def test_faces_at_the_working_size_are_in_original_pixels_and_match_full_resolution(tmp_path):
    folder = tmp_path / "group"
    folder.mkdir()
    group_photo().save(folder / "group.jpg", quality=92)
    full = faces_found(folder, f"sqlite:///{tmp_path / 'full.db'}", faces_max_side=0)
    working = faces_found(folder, f"sqlite:///{tmp_path / 'working.db'}", faces_max_side=1024)
    assert len(full) == len(working) == 2
    for box in full:
        assert max(iou(box, other) for other in working) > 0.8
    astronaut = min(working, key=lambda box: box[0])  # pasted at x 100-330, y 300-530
    assert 100 < astronaut[0] < astronaut[2] < 330 and 300 < astronaut[1] < astronaut[3] < 530


def test_the_faces_working_size_is_part_of_what_identifies_the_results():
    default = MtcnnFaces(ToolOptions())
    assert default.options.faces_max_side == 1024
    assert default.cache_key != MtcnnFaces(ToolOptions(faces_max_side=0)).cache_key  # a change re-runs faces


def test_a_thin_strip_keeps_enough_pixels_for_the_face_pyramid():
    strip = Image.fromarray(skimage.data.astronaut()).resize((2000, 30))
    assert MtcnnFaces(ToolOptions(faces_max_side=1024)).predict([strip]) == [[]]


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The scanned page as scikit-image ships it (384 x 191) and enlarged 5x (1920 x 955)."""
    folder = tmp_path_factory.mktemp("pages")
    page = Image.fromarray(skimage.data.page())
    page.save(folder / "page.png")
    page.resize((page.width * 5, page.height * 5), Image.Resampling.BICUBIC).save(folder / "page-5x.png")
    return {"page": folder / "page.png", "page-5x": folder / "page-5x.png"}


@pytest.mark.parametrize("name", ["page", "page-5x"])
def test_ocr_reads_the_page_as_well_at_the_detector_working_size(pages, name):
    image = decode_image(read_image_file(pages[name]), max_side=2048, max_pixels=10**8)
    reference = PAGE_REFERENCE.read_text()
    read = {}
    for side in (0, 736):
        (lines,) = RapidOcr(ToolOptions(ocr_detector_side=side)).run([image])
        read[side] = cer(reference, "\n".join(line.text for line in lines))
    assert read[736] <= read[0] + 0.02
    assert read[736] < 0.5  # PP-OCR reads 4-5 of the page's 7 lines, at any of these sizes


def test_the_ocr_detector_sees_the_short_side_it_is_given():
    photo = np.zeros((1067, 1600, 3), dtype=np.uint8)
    assert detector_preprocess(736)(photo).shape == (1, 3, 736, 1088)  # 1600 x 1067 scaled to 736 px high
    assert detector_preprocess(0)(photo).shape == (1, 3, 1056, 1600)  # rapidocr's own: large images whole
    small = np.zeros((191, 384, 3), dtype=np.uint8)
    assert detector_preprocess(736)(small).shape == (1, 3, 736, 1472)  # small ones enlarged, as rapidocr does


def test_the_ocr_detector_input_is_rapidocrs_normalisation_in_float32():
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

    page = np.asarray(Image.fromarray(skimage.data.page()).convert("RGB"))[:, :, ::-1]
    ours, theirs = detector_preprocess(0)(page), DetPreProcess(736, "min")(page)
    assert ours.dtype == theirs.dtype == np.float32
    assert np.abs(ours - theirs).max() < 1e-6


def test_the_ocr_sessions_keep_their_working_memory_between_photos():
    """rapidocr builds its onnxruntime sessions with the CPU memory arena off (every call allocates its
    activations afresh); the tool rebuilds them with it on: about 20% faster, the same text."""
    engine = RapidOcr(ToolOptions())._engine()
    sessions = [engine.text_det.infer.session, engine.text_cls.infer.session, engine.text_rec.session.session]
    assert [session.get_session_options().enable_cpu_mem_arena for session in sessions] == [True, True, True]
