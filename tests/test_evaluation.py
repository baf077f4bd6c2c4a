"""`visextract eval` / `vx.evaluate`: extraction scored against gold labels on real photos.

Databases are made by real runs (offline tools, or a scripted OpenAI-compatible server for exact values
and cross-check flags). Every expected metric is worked out by hand in the test.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Literal

import pytest
from conftest import save_sample
from pydantic import BaseModel

import visextract as vx
from visextract.config import Settings


def settings(db: str) -> Settings:
    return Settings(db=db, search_index=False)


def write_gold(path: Path, *entries: dict | str) -> Path:
    path.write_text("".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in entries))
    return path


def extract_one_by_one(db: str, schema, tools: list[str], server, answers: dict[Path, dict]) -> vx.Extractor:
    """One run per photo, each with its own scripted LLM answer (so each photo gets exactly its answer)."""
    ex = vx.Extractor(settings=settings(db), schema=schema, tools=tools, llm="openai")
    for photo, answer in answers.items():
        server.reply_json(answer)
        assert ex.run(photo).processed == 1
    return ex


@pytest.fixture(scope="module")
def tools_db(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The photos through the offline tools (classifier, faces, colors), as `visextract run` would."""
    db = f"sqlite:///{tmp_path_factory.mktemp('tools') / 'tools.db'}"
    summary = vx.Extractor(settings=settings(db), tools=["classifier", "faces", "colors"], llm=None).run(photos)
    assert summary.processed == 5
    return db


# ---- every field type, with the arithmetic written out ----------------------------------------------------


class Listing(BaseModel):
    """A product listing photo."""

    title: str | None = None
    count: int | None = None
    price: float | None = None
    tags: list[str] | None = None
    in_stock: bool | None = None
    size: Literal["small", "medium", "large"] | None = None


LISTINGS = {  # what the (scripted) LLM extracts from each photo
    "astronaut.png": {"title": "Space Suit", "count": 1, "price": 10.0, "tags": ["suit", "helmet", "boots"],
                      "in_stock": True, "size": "large"},
    "chelsea.png": {"title": "tabby cat", "count": 2, "price": 4.5, "tags": ["tabby", "cat"], "in_stock": False,
                    "size": "small"},
    "coffee.jpg": {"title": None, "count": 0, "price": None, "tags": ["cup", "saucer", "spoon"], "in_stock": True,
                   "size": "medium"},
    "page.png": {"title": "Region-based segmentation", "count": None, "price": 2.0, "tags": None,
                 "in_stock": None, "size": None},
}  # fmt: skip

LISTING_GOLD = [  # the truth, by file name
    {"path": "astronaut.png", "data": {"title": "space  suit", "count": 1, "price": 12.5,
                                       "tags": ["Suit", "helmet", "visor"], "in_stock": True, "size": "large"}},
    {"path": "chelsea.png", "data": {"title": "tabby cat!", "count": 3, "price": 4.5, "tags": ["Cat", "tabby"],
                                     "in_stock": True, "size": "small"}},
    {"path": "coffee.jpg", "data": {"title": "coffee", "count": None, "price": None, "tags": ["cup", "mug"],
                                    "in_stock": False, "size": "medium"}},
    {"path": "page.png", "data": {"title": None, "count": None, "price": 2, "tags": [], "in_stock": None,
                                  "size": "large"}},
    {"path": "not-extracted.png", "data": {"title": "anything", "count": 7}},
]  # fmt: skip


@pytest.fixture
def listing_db(server, photos: Path, any_db: str) -> str:
    """The four photos' listings as the LLM gave them, in SQLite and in PostgreSQL."""
    answers = {photos / name: data for name, data in LISTINGS.items()}
    extract_one_by_one(any_db, Listing, ["colors"], server, answers)
    return any_db


def test_every_field_type_is_scored_as_worked_out_by_hand(listing_db, tmp_path):
    gold = write_gold(tmp_path / "gold.jsonl", *LISTING_GOLD)
    report = vx.evaluate(gold, db=listing_db, schema="listing")
    assert report.schema_name == "listing"
    assert (report.images.gold, report.images.matched, report.images.unmatched) == (5, 4, ["not-extracted.png"])
    fields = report.fields
    assert list(fields) == ["title", "count", "price", "tags", "in_stock", "size"]  # schema order
    assert {name: f.type for name, f in fields.items()} == {
        "title": "string", "count": "number", "price": "number", "tags": "list", "in_stock": "boolean",
        "size": "enum",
    }  # fmt: skip
    assert all(f.n == 4 for f in fields.values())  # the unmatched line is not scored

    # title: astronaut "space  suit" = "Space Suit" after case and whitespace; chelsea "tabby cat!" vs
    # "tabby cat" (1 edit); coffee "coffee" vs null (wrong, 6 edits); page null vs a title (wrong, no CER)
    assert fields["title"].accuracy == 1 / 4
    assert fields["title"].cer == pytest.approx((0 + 1 + 6) / (len("space suit") + len("tabby cat!") + len("coffee")))
    # count: 1=1 right, 3 vs 2 wrong, gold null vs 0 wrong, null=null right; MAE over the two number pairs
    assert fields["count"].accuracy == 2 / 4
    assert fields["count"].mae == pytest.approx((0 + 1) / 2)
    # price: 12.5 vs 10.0 wrong, 4.5 right, null=null right, 2 = 2.0 right; MAE over three pairs
    assert fields["price"].accuracy == 3 / 4
    assert fields["price"].mae == pytest.approx((2.5 + 0 + 0) / 3)
    # tags as sets: astronaut {suit, helmet, visor} vs {suit, helmet, boots}: TP 2, FP 1, FN 1;
    # chelsea [Cat, tabby] = [tabby, cat] as sets, without case: TP 2; coffee {cup, mug} vs {cup, saucer,
    # spoon}: TP 1, FP 2, FN 1; page [] vs null: wrong (a value against null) but no items either way
    tp, fp, fn = 2 + 2 + 1, 1 + 0 + 2, 1 + 0 + 1
    assert fields["tags"].accuracy == 1 / 4
    assert fields["tags"].precision == pytest.approx(tp / (tp + fp))  # 5/8
    assert fields["tags"].recall == pytest.approx(tp / (tp + fn))  # 5/7
    assert fields["tags"].f1 == pytest.approx(2 * tp / (2 * tp + fp + fn))  # 10/15
    # in_stock: True=True right, True vs False wrong, False vs True wrong, null=null right
    assert fields["in_stock"].accuracy == 2 / 4
    # size: three equal, "large" vs null wrong
    assert fields["size"].accuracy == 3 / 4
    # a type only gets its own metrics
    assert (fields["in_stock"].cer, fields["in_stock"].mae, fields["in_stock"].f1) == (None, None, None)
    # every value came from the LLM
    assert {name: list(f.by_source) for name, f in fields.items()} == {name: ["llm"] for name in fields}
    assert fields["tags"].by_source["llm"].f1 == fields["tags"].f1
    # no field was flagged (these fields have no cross-check): precision has nothing to divide by
    wrong = 3 + 2 + 1 + 3 + 2 + 1
    assert (report.review_flag.precision, report.review_flag.recall) == (None, 0 / wrong)
    assert report.review_flag.wrong == wrong


def test_json_output_is_exactly_the_documented_shape(listing_db, tmp_path, cli):
    gold = write_gold(tmp_path / "gold.jsonl", *LISTING_GOLD)
    result = cli("eval", gold, "--db", listing_db, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout is one JSON document and nothing else
    assert set(report) == {"schema", "images", "fields", "review_flag"}
    assert report["schema"] == "listing"  # the only schema in the database: no --schema needed
    assert report["images"] == {"gold": 5, "matched": 4, "unmatched": ["not-extracted.png"]}
    assert report["review_flag"] == {"precision": None, "recall": 0.0}
    common = {"n", "accuracy", "type", "by_source"}
    expected_keys = {
        "title": common | {"cer"}, "count": common | {"mae"}, "price": common | {"mae"},
        "tags": common | {"precision", "recall", "f1"}, "in_stock": common, "size": common,
    }  # fmt: skip
    assert {name: set(f) for name, f in report["fields"].items()} == expected_keys
    tags = report["fields"]["tags"]
    assert (tags["n"], tags["accuracy"], tags["precision"], tags["recall"]) == (4, 0.25, 5 / 8, 5 / 7)
    assert set(tags["by_source"]["llm"]) == {"n", "accuracy", "precision", "recall", "f1"}
    assert report["fields"]["title"]["cer"] == pytest.approx(7 / 26)


def test_the_table_shows_each_field_its_sources_and_the_unmatched_entries(listing_db, tmp_path, cli):
    gold = write_gold(tmp_path / "gold.jsonl", *LISTING_GOLD)
    result = cli("eval", gold, "--db", listing_db)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "listing: 4 of 5 gold images matched" in lines[0]
    (tags,) = [line for line in lines if "│ tags" in line]
    assert [cell.strip() for cell in tags.split("│")[2:8]] == ["list", "4", "0.250", "0.625", "0.714", "0.667"]
    assert "review flag (verified: false): precision - (0 of 0 flagged fields were wrong)" in result.stdout
    assert "recall 0.000 (0 of 12 wrong fields were flagged)" in result.stdout
    assert "not-extracted.png: no record of this image" in result.stdout


# ---- the review flag and the sources, on the built-in scene schema -------------------------------------


SCENE_ANSWERS = {
    "astronaut.png": {"labels": ["astronaut", "flag"], "face_count": 2, "text": "NASA",
                      "dominant_colors": ["white", "purple"]},
    "coffee.jpg": {"labels": ["espresso"], "face_count": 0, "text": None, "dominant_colors": ["brown"]},
}  # fmt: skip


@pytest.fixture
def mixed_db(server, photos: Path, any_db: str) -> str:
    """Two photos answered by the LLM (cross-checked against classifier, faces and colours) and one made
    by the tools alone, in SQLite and in PostgreSQL."""
    db = any_db
    tools = ["classifier", "faces", "colors"]
    ex = extract_one_by_one(db, "scene", tools, server, {photos / n: a for n, a in SCENE_ANSWERS.items()})
    vx.Extractor(settings=settings(db), tools=tools, llm=None).run(photos / "chelsea.png")
    flags = {
        (Path(r.path).name, name): p.verified for r in ex.records() for name, p in r.provenance.items()
    }  # the cross-checks' verdicts this test relies on:
    assert flags[("astronaut.png", "face_count")] is False  # the LLM says 2, MTCNN finds 1
    assert flags[("astronaut.png", "dominant_colors")] is False  # no purple in the photo
    assert flags[("coffee.jpg", "labels")] is True  # the classifier agrees: espresso
    assert [name for name, verified in flags.items() if verified is False] == [
        ("astronaut.png", "face_count"), ("astronaut.png", "dominant_colors"),
    ]  # fmt: skip
    return db


def test_the_review_flag_is_scored_against_the_fields_that_were_wrong(mixed_db, tmp_path):
    gold = write_gold(
        tmp_path / "gold.jsonl",
        # flagged and wrong (face_count), flagged but right (the photo's colours, as the LLM said)
        {"path": "astronaut.png", "data": {"face_count": 1, "dominant_colors": ["purple", "white"]}},
        # wrong but not flagged: labels (the classifier agreed with the LLM) and text (nothing to check)
        {"path": "coffee.jpg", "data": {"labels": ["cup"], "text": "ESPRESSO", "face_count": 0}},
    )
    report = vx.evaluate(gold, db=mixed_db)
    flagged, wrong, flagged_wrong = 2, 3, 1
    assert report.review_flag.precision == flagged_wrong / flagged  # 1/2
    assert report.review_flag.recall == flagged_wrong / wrong  # 1/3
    assert (report.review_flag.flagged, report.review_flag.wrong) == (flagged, wrong)


def test_scores_are_broken_down_by_the_source_of_each_field(mixed_db, tmp_path):
    gold = write_gold(
        tmp_path / "gold.jsonl",
        {"path": "astronaut.png", "data": {"face_count": 1, "text": "NASA"}},  # llm: wrong, right
        {"path": "coffee.jpg", "data": {"face_count": 0, "text": None}},  # llm: right, right
        {"path": "chelsea.png", "data": {"face_count": 0, "text": None}},  # tool:faces right; text: no source
    )
    report = vx.evaluate(gold, db=mixed_db, schema="scene")
    faces = report.fields["face_count"]
    assert faces.accuracy == 2 / 3
    assert {source: (s.n, s.accuracy) for source, s in faces.by_source.items()} == {
        "llm": (2, 1 / 2), "tool:faces": (1, 1.0),
    }  # fmt: skip
    assert faces.by_source["llm"].mae == (1 + 0) / 2 and faces.by_source["tool:faces"].mae == 0
    text = report.fields["text"]
    assert {source: (s.n, s.accuracy) for source, s in text.by_source.items()} == {"llm": (2, 1.0), "none": (1, 1.0)}
    assert text.cer == 0 / len("nasa")


def test_against_scores_a_second_database_side_by_side(mixed_db, tools_db, tmp_path, cli):
    gold = write_gold(
        tmp_path / "gold.jsonl",
        {"path": "astronaut.png", "data": {"face_count": 1}},
        {"path": "coffee.jpg", "data": {"face_count": 0}},
        {"path": "chelsea.png", "data": {"face_count": 0}},
        {"path": "rocket.jpg", "data": {"face_count": 0}},  # only the tools database has the rocket
    )
    both = vx.evaluate(gold, db=mixed_db, against=tools_db)
    # mixed: astronaut wrong (2 for 1), coffee and chelsea right; the rocket is not in it
    assert (both.db.images.matched, both.db.fields["face_count"].accuracy) == (3, 2 / 3)
    assert both.db.images.unmatched == ["rocket.jpg"]
    # tools: MTCNN counts every face right
    assert (both.against.images.matched, both.against.fields["face_count"].accuracy) == (4, 1.0)
    assert both.difference.images == {"matched": 4 - 3}
    assert both.difference.fields["face_count"].accuracy == pytest.approx(1.0 - 2 / 3)
    assert both.difference.fields["face_count"].mae == pytest.approx(0.0 - (1 + 0 + 0) / 3)

    printed = cli("eval", gold, "--db", mixed_db, "--against", tools_db, "--format", "json")
    assert printed.exit_code == 0, printed.output
    shown = json.loads(printed.stdout)
    assert set(shown) == {"db", "against", "difference"}
    assert set(shown["db"]) == set(shown["against"]) == {"schema", "images", "fields", "review_flag"}
    assert shown["difference"]["fields"]["face_count"]["accuracy"] == pytest.approx(1 / 3)
    assert shown["difference"]["review_flag"] == {"precision": None, "recall": None}  # no wrong field in `against`

    table = cli("eval", gold, "--db", mixed_db, "--against", tools_db)
    assert table.exit_code == 0, table.output
    (accuracy,) = [line for line in table.stdout.splitlines() if "accuracy" in line]
    assert [cell.strip() for cell in accuracy.split("│")[1:-1]] == ["", "accuracy", "0.667", "1.000", "+0.333"]
    assert "rocket.jpg: no record of this image" in table.stdout


# ---- matching gold entries to records ----------------------------------------------------------------


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Real photos in a folder tree with one file name used twice for different photos, one photo stored
    twice under the same name (same bytes), and a file that is not an image, extracted with the colours tool."""
    folder = tmp_path_factory.mktemp("layout")
    save_sample("astronaut", folder / "astronaut.png")
    (folder / "nested").mkdir()
    save_sample("rocket", folder / "nested" / "rocket.jpg")
    for sub, sample in (("a", "chelsea"), ("b", "coffee")):
        (folder / sub).mkdir()
        save_sample(sample, folder / sub / "photo.png")  # "photo.png" names two different images
    for sub in ("copy1", "copy2"):
        (folder / sub).mkdir()
        save_sample("page", folder / sub / "page.png")  # "page.png" names one image twice
    save_sample("page", folder / "copy2" / "page-copy.png")  # and the same image a third time
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    db = f"sqlite:///{folder / 'layout.db'}"
    summary = vx.Extractor(settings=settings(db), tools=["colors"], llm=None).run(folder)
    assert (summary.processed, summary.failed) == (5, 1)
    return db, folder


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_gold_matches_by_sha256_absolute_path_relative_path_and_unique_file_name(layout, tmp_path):
    db, folder = layout
    gold = write_gold(
        folder / "gold.jsonl",  # relative paths are taken from the gold file's folder
        {"sha256": sha256_of(folder / "astronaut.png"), "data": {"face_count": None}},
        {"path": str(folder / "b" / "photo.png"), "data": {"face_count": None}},
        {"path": "a/photo.png", "data": {"face_count": None}},  # its file name alone is ambiguous
        {"path": "/somewhere/else/rocket.jpg", "data": {"face_count": None}},  # by its unique file name
        {"path": "page.png", "data": {"face_count": None}},  # two paths, one image: unique
        {"path": "broken.jpg", "data": {"face_count": 0}},  # its record failed: no value, so wrong
    )
    report = vx.evaluate(gold, db=db)
    assert (report.images.gold, report.images.matched, report.images.unmatched) == (6, 6, [])
    assert (report.fields["face_count"].n, report.fields["face_count"].accuracy) == (6, 5 / 6)


def test_every_path_of_a_duplicate_image_finds_its_record(layout, tmp_path):
    db, folder = layout
    for path in (folder / "copy1" / "page.png", folder / "copy2" / "page.png", folder / "copy2" / "page-copy.png"):
        gold = write_gold(tmp_path / "gold.jsonl", {"path": str(path), "data": {"face_count": None}})
        assert vx.evaluate(gold, db=db).images.matched == 1, path


def test_records_read_by_lookups_in_chunks_equal_those_read_in_one_scan(layout, monkeypatch):
    """Few gold lines look their records up by subject, many read the schema's records in one pass."""
    from visextract.evaluation import matching
    from visextract.query import open_store

    db, _ = layout
    monkeypatch.setattr(matching, "_CHUNK", 2)  # three lookups for five subjects
    store = open_store(db)
    listed = matching._listed_subjects(store, "scene")
    assert len(listed) == 6  # astronaut, rocket, a/photo.png, b/photo.png, page (twice), broken.jpg
    some = set(sorted(listed)[:5])
    by_lookup = matching._records(store, "scene", some, ["face_count", "labels"], scan=False)
    by_scan = matching._records(store, "scene", some, ["face_count", "labels"], scan=True)
    assert set(by_lookup) == some and by_lookup == by_scan


def test_an_image_whose_file_is_gone_is_not_matched(tmp_path):
    folder = tmp_path / "gone"
    folder.mkdir()
    save_sample("coffee", folder / "coffee.jpg")
    save_sample("rocket", folder / "rocket.jpg")
    for sub, sample in (("a", "chelsea"), ("b", "astronaut")):
        (folder / sub).mkdir()
        save_sample(sample, folder / sub / "photo.png")
    db = f"sqlite:///{tmp_path / 'gone.db'}"
    ex = vx.Extractor(settings=settings(db), tools=["colors"], llm=None)
    ex.run(folder)
    rocket_sha = sha256_of(folder / "rocket.jpg")
    (folder / "rocket.jpg").unlink()
    (folder / "a" / "photo.png").unlink()
    ex.run(folder)  # the run over the folder marks both paths missing
    gold = write_gold(
        tmp_path / "gold.jsonl",
        {"sha256": rocket_sha, "data": {"face_count": None}},
        {"path": str(folder / "rocket.jpg"), "data": {"face_count": None}},
        {"path": "rocket.jpg", "data": {"face_count": None}},
        {"path": "coffee.jpg", "data": {"face_count": None}},
        {"path": "photo.png", "data": {"face_count": None}},  # only b/photo.png is left: unique now
    )
    report = vx.evaluate(gold, db=db)
    assert report.images.matched == 2
    assert report.images.unmatched == [rocket_sha, str(folder / "rocket.jpg"), "rocket.jpg"]


def test_an_ambiguous_file_name_or_an_unknown_image_is_listed_as_unmatched(layout, tmp_path):
    db, _ = layout
    unknown_sha = "0" * 64
    gold = write_gold(
        tmp_path / "gold.jsonl",
        {"path": "photo.png", "data": {"face_count": 0}},  # a/photo.png or b/photo.png?
        {"sha256": unknown_sha, "data": {"face_count": 0}},
        {"path": "astronaut.png", "data": {"face_count": None}},
        {"path": str(tmp_path / "nowhere.png"), "data": {"face_count": 0}},
    )
    report = vx.evaluate(gold, db=db)
    assert (report.images.gold, report.images.matched) == (4, 1)
    assert report.images.unmatched == ["photo.png", unknown_sha, str(tmp_path / "nowhere.png")]
    assert "'photo.png' is not unique: 2 images have it" in report.images.unmatched_reasons[0]
    assert report.fields["face_count"].n == 1


def test_a_gold_line_with_a_stale_sha256_falls_back_to_its_path(layout, tmp_path):
    db, folder = layout
    gold = write_gold(tmp_path / "gold.jsonl", {"sha256": "f" * 64, "path": str(folder / "astronaut.png"),
                                                "data": {"face_count": None}})  # fmt: skip
    assert vx.evaluate(gold, db=db).images.matched == 1


def test_two_gold_lines_for_one_image_are_refused(layout, tmp_path, cli):
    db, folder = layout
    gold = write_gold(
        tmp_path / "gold.jsonl",
        {"path": str(folder / "copy1" / "page.png"), "data": {"face_count": 0}},
        {"path": "astronaut.png", "data": {"face_count": 0}},
        {"path": str(folder / "copy2" / "page.png"), "data": {"face_count": 1}},
    )
    result = cli("eval", gold, "--db", db)
    assert result.exit_code == 2
    assert "lines 1 and 3 are the same image" in result.stderr and "Traceback" not in result.stderr


def test_gold_can_be_given_as_dicts_from_python(layout):
    db, folder = layout
    report = vx.evaluate([{"path": str(folder / "astronaut.png"), "data": {"dominant_colors": []}}], db=db)
    assert (report.images.matched, report.fields["dominant_colors"].accuracy) == (1, 0.0)
    with pytest.raises(vx.VisextractError, match=r"gold entry 1: field 'colour' is not in schema 'scene'"):
        vx.evaluate([{"path": "x.png", "data": {"colour": "red"}}], db=db)


# ---- bad input: one clear line each, no traceback ---------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"path": "a.png", "data": {"face_count": 1}}', '{"path": "b.png", "data": {"face_count": 1}'],
         "gold.jsonl line 2: not valid JSON (EOF while parsing an object at column"),
        (["[1, 2]"], 'gold.jsonl line 1: expected a JSON object like {"path": "...", "data": {...}}'),
        (['{"path": "a.png", "data": {"colour": "red"}}'],
         "gold.jsonl line 1: field 'colour' is not in schema 'scene' "
         "(its fields: labels, face_count, text, dominant_colors)"),
        (["", '{"path": "a.png", "data": {"face_count": "three"}}'],
         "gold.jsonl line 2: field 'face_count': input should be a valid integer, got \"three\""),
        (['{"path": "a.png", "data": {"face_count": "3"}}'],  # JSON types, no coercion
         "gold.jsonl line 1: field 'face_count': input should be a valid integer, got \"3\""),
        (['{"path": "a.png", "data": {"labels": ["cat", 3]}}'],
         "gold.jsonl line 1: field 'labels'[1]: input should be a valid string, got 3"),
        (['{"path": "a.png", "data": {"face_count": -1}}'],
         "gold.jsonl line 1: field 'face_count': input should be greater than or equal to 0, got -1"),
        (['{"data": {"face_count": 1}}'], 'gold.jsonl line 1: needs "path" or "sha256" to name its image'),
        (['{"path": "a.png"}'], 'gold.jsonl line 1: needs a "data" object with the true values'),
        (['{"sha256": "abc", "data": {"face_count": 1}}'], 'line 1: "sha256" must be 64 hexadecimal digits'),
        (["", "  "], "gold.jsonl has no gold entries: write one JSON object a line"),
    ],
)  # fmt: skip
def test_a_bad_gold_file_stops_with_one_line_naming_the_line(layout, tmp_path, cli, lines, message):
    db, _ = layout
    gold = tmp_path / "gold.jsonl"
    gold.write_text("\n".join(lines) + "\n")
    result = cli("eval", gold, "--db", db)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert message in line.replace(str(tmp_path) + "/", "")
    assert result.stdout == "" and "Traceback" not in result.stderr


def test_a_missing_gold_file_is_one_line(layout, tmp_path, cli):
    db, _ = layout
    result = cli("eval", tmp_path / "nope.jsonl", "--db", db)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: gold file {tmp_path / 'nope.jsonl'} does not exist"


def test_several_schemas_need_schema_and_an_unknown_one_is_named(photos, tmp_path, cli):
    db = f"sqlite:///{tmp_path / 'two.db'}"
    for schema in ("scene", "product"):
        vx.Extractor(settings=settings(db), schema=schema, tools=["colors"], llm=None).run(photos / "coffee.jpg")
    gold = write_gold(tmp_path / "gold.jsonl", {"path": "coffee.jpg", "data": {"colors": ["brown"]}})
    result = cli("eval", gold, "--db", db)
    assert result.exit_code == 2
    assert "has records of several schemas (product, scene): pass --schema NAME" in result.stderr
    result = cli("eval", gold, "--db", db, "--schema", "vehicle")
    assert "no records of schema 'vehicle'" in result.stderr and "(schemas here: scene, product)" in result.stderr
    result = cli("eval", gold, "--db", db, "--schema", "product", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"]["matched"] == 1
    scene_only = f"sqlite:///{tmp_path / 'scene-only.db'}"
    vx.Extractor(settings=settings(scene_only), tools=["colors"], llm=None).run(photos / "coffee.jpg")
    result = cli("eval", gold, "--db", db, "--schema", "product", "--against", scene_only)
    assert result.exit_code == 2 and result.stdout == ""
    assert f"no records of schema 'product' in {scene_only}" in result.stderr


def test_eval_never_creates_a_database(tmp_path, cli):
    gold = write_gold(tmp_path / "gold.jsonl", {"path": "a.png", "data": {"face_count": 0}})
    result = cli("eval", gold, "--db", f"sqlite:///{tmp_path / 'typo.db'}")
    assert result.exit_code != 0
    (line,) = result.stderr.strip().splitlines()
    assert "typo.db" in line
    assert not (tmp_path / "typo.db").exists()


def test_eval_help_has_examples(cli):
    result = cli("eval", "--help")
    assert result.exit_code == 0
    assert "visextract eval gold.jsonl --db sqlite:///photos.db" in result.stdout
    assert "--against" in result.stdout


def test_a_database_made_elsewhere_is_matched_when_its_photos_move(tools_db, photos, tmp_path):
    """Gold written for another copy of the photos still finds them by file name (when unique)."""
    moved = tmp_path / "moved"
    shutil.copytree(photos, moved)
    gold = write_gold(moved / "gold.jsonl", {"path": "astronaut.png", "data": {"face_count": 1}},
                      {"path": "nested/rocket.jpg", "data": {"face_count": 0}})  # fmt: skip
    report = vx.evaluate(gold, db=tools_db)
    assert (report.images.matched, report.fields["face_count"].accuracy) == (2, 1.0)


# ---- reviews turned into gold ---------------------------------------------------------------------------


def review_by_hand(db: str, photo: Path, changes: dict, by: str = "ana") -> None:
    """What a review stores (DESIGN.md, "Human review"), written through the Store: edited fields get the
    human value and source, the others are accepted as verified, and `review` says who did it."""
    from sqlmodel import col, select

    from visextract.store import Store
    from visextract.store.tables import RecordRow

    store = Store(db)
    with store.write() as session:
        row = session.exec(select(RecordRow).where(RecordRow.path == str(photo), col(RecordRow.is_current))).one()
        row.data = {**row.data, **changes}
        row.provenance = {
            name: {"source": "human", "evidence": [], "verified": True} if name in changes else {**p, "verified": True}
            for name, p in row.provenance.items()
        }
        row.review = {"by": by, "at": "2026-11-23T12:00:00+00:00", "fields": sorted(changes)}
        session.add(row)
        session.commit()
    store.close()


def test_reviewed_records_export_as_gold_and_score_the_run_they_corrected(photos, tmp_path, cli):
    db = f"sqlite:///{tmp_path / 'reviewed.db'}"
    vx.Extractor(settings=settings(db), tools=["faces", "colors"], llm=None).run(
        photos / "astronaut.png", photos / "chelsea.png", photos / "coffee.jpg"
    )
    review_by_hand(db, photos / "astronaut.png", {"labels": ["astronaut"], "face_count": 1})
    review_by_hand(db, photos / "coffee.jpg", {})  # accepted as it was
    result = cli("export", "--db", db, "--format", "gold", "-o", tmp_path / "gold.jsonl")
    assert result.exit_code == 0, result.output
    assert "wrote 2 records" in result.stderr
    lines = [json.loads(line) for line in (tmp_path / "gold.jsonl").read_text().splitlines()]
    assert lines == [
        {
            "path": str(photos / "astronaut.png"),
            "sha256": sha256_of(photos / "astronaut.png"),
            "data": {
                "labels": ["astronaut"],
                "face_count": 1,
                "text": None,
                "dominant_colors": lines[0]["data"]["dominant_colors"],
            },
        },
        {
            "path": str(photos / "coffee.jpg"),
            "sha256": sha256_of(photos / "coffee.jpg"),
            "data": {
                "labels": None,
                "face_count": 0,
                "text": None,
                "dominant_colors": lines[1]["data"]["dominant_colors"],
            },
        },
    ]  # fmt: skip  (chelsea was not reviewed; the colours are the colour tool's, accepted)
    assert lines[0]["data"]["dominant_colors"] and lines[1]["data"]["dominant_colors"]

    report = vx.evaluate(tmp_path / "gold.jsonl", db=db)  # the reviewed run is right by definition
    assert (report.images.matched, {f.accuracy for f in report.fields.values()}) == (2, {1.0})
    assert set(report.fields["labels"].by_source) == {"human", "none"}  # astronaut edited, coffee: no labeller
    # the run before the review, scored on the reviews: its labels were missing on the astronaut
    before = f"sqlite:///{tmp_path / 'before.db'}"
    vx.Extractor(settings=settings(before), tools=["faces", "colors"], llm=None).run(photos / "astronaut.png")
    scored = vx.evaluate(tmp_path / "gold.jsonl", db=before)
    assert scored.images.unmatched == [str(photos / "coffee.jpg")]
    assert scored.fields["labels"].accuracy == 0.0 and scored.fields["face_count"].accuracy == 1.0


def test_gold_export_needs_one_schema_and_current_records(photos, tmp_path, cli):
    db = f"sqlite:///{tmp_path / 'two.db'}"
    for schema in ("scene", "product"):
        vx.Extractor(settings=settings(db), schema=schema, tools=["colors"], llm=None).run(photos / "coffee.jpg")
    result = cli("export", "--db", db, "--format", "gold", "-o", tmp_path / "gold.jsonl")
    assert result.exit_code == 2 and "a gold file holds one schema's records: pass --schema" in result.stderr
    assert not (tmp_path / "gold.jsonl").exists()
    result = cli("export", "--db", db, "--format", "gold", "--schema", "scene", "--all-versions")
    assert result.exit_code == 2 and "leave out --all-versions" in result.stderr
    result = cli("export", "--db", db, "--format", "gold", "--schema", "scene")
    assert result.exit_code == 0 and result.stdout == ""  # nothing reviewed yet
