"""Human review from Python and the CLI: a review is a new version (edited fields human, the rest verified),
bad values and stale versions are refused with nothing stored, and human values survive re-runs (forced, or
under a changed schema) until `run --discard-reviews`. On SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import save_sample
from pydantic import BaseModel, Field
from web_library import CAR

import visextract as vx
from visextract.errors import UsageError
from visextract.schemas.scene import SCENE, fill_scene
from visextract.store.review import RecordNotFoundError, ReviewConflictError, ReviewRefusedError


@pytest.fixture
def lib(web_library, tmp_path) -> tuple[str, Path]:
    """A copy of the web library: (database URL, its photos folder)."""
    db = web_library.copy(tmp_path / "lib")
    return db, tmp_path / "lib" / "photos"


def fingerprint(db: str) -> list[tuple]:
    with sqlite3.connect(db.removeprefix("sqlite:///")) as connection:
        return connection.execute("SELECT * FROM record ORDER BY id").fetchall()


def export(cli, db: str, *extra: str) -> dict[str, dict]:
    """{file name + schema: record} from `visextract export`."""
    lines = cli("export", "--db", db, *extra).stdout.splitlines()
    return {f"{Path(r['path']).name}/{r['schema']}": r for r in map(json.loads, lines)}


def versions(db: str, name: str, schema: str = "scene") -> list[tuple]:
    with sqlite3.connect(db.removeprefix("sqlite:///")) as connection:
        return connection.execute(
            "SELECT version, is_current, status, data FROM record WHERE path LIKE ? AND schema_name = ? ORDER BY id",
            (f"%/{name}", schema),
        ).fetchall()


# ---- a review is a new version --------------------------------------------------------------------------


def test_an_edit_makes_a_new_version_with_human_provenance(lib, cli):
    db, photos = lib
    before = export(cli, db)["astronaut.png/scene"]
    record = vx.review(str(photos / "astronaut.png"), {"face_count": 2}, by="ann", db=db)
    assert record.version == 2 and record.status == "ok" and record.data.face_count == 2
    assert record.provenance["face_count"].source == "human" and record.provenance["face_count"].verified is True
    assert record.review.by == "ann" and record.review.fields == ["face_count"]
    assert abs(datetime.fromisoformat(record.review.at) - datetime.now(UTC)) < timedelta(minutes=1)
    after = export(cli, db)["astronaut.png/scene"]
    assert after["provenance"]["face_count"] == {"source": "human", "evidence": [], "verified": True}
    for field in ("labels", "text", "dominant_colors"):  # accepted unchanged: same value and source, verified
        assert after["data"][field] == before["data"][field]
        assert after["provenance"][field]["source"] == before["provenance"][field]["source"]
        assert after["provenance"][field]["verified"] is True
    assert after["version"] == 2 and after["review"]["fields"] == ["face_count"] and after["review"]["by"] == "ann"
    assert [(v, current) for v, current, *_ in versions(db, "astronaut.png")] == [(1, 0), (2, 1)]
    assert json.loads(versions(db, "astronaut.png")[0][3])["face_count"] == 1  # the old version is history
    (row,) = [r for r in csv.DictReader(io.StringIO(cli("export", "--db", db, "--format", "csv").stdout))
              if r["path"].endswith("astronaut.png") and r["schema"] == "scene"]  # fmt: skip
    assert row["version"] == "2" and json.loads(row["review"]) == after["review"]  # the CSV says so too


def test_accepting_keeps_every_value_and_source_and_clears_review(lib, cli):
    db, photos = lib
    before = export(cli, db)["coffee.jpg/vehicle"]
    assert before["status"] == "needs_review" and before["provenance"]["type"]["verified"] is False
    record = vx.review(str(photos / "coffee.jpg"), accept=True, schema="vehicle", by="bo", db=db)
    after = export(cli, db)["coffee.jpg/vehicle"]
    assert record.status == "ok" and after["status"] == "ok" and after["error"] is None
    assert after["data"] == before["data"] == CAR
    assert {f: p["source"] for f, p in after["provenance"].items()} == dict.fromkeys(CAR, "llm")
    assert all(p["verified"] is True for p in after["provenance"].values())
    assert after["review"]["fields"] == [] and after["llm"] == before["llm"]  # the LLM usage stays with it
    assert cli("status", "--db", db).stdout.count("needs_review") == 1  # one left: chelsea


def test_extractor_review_uses_the_schema_it_was_made_with(lib):
    db, photos = lib
    ex = vx.Extractor(db=db, llm=None)
    record = ex.review(str(photos / "page.png"), {"text": "Region-based segmentation"}, by="cy")
    assert isinstance(record.data, SCENE.model) and record.data.text == "Region-based segmentation"
    assert record.provenance["text"].source == "human" and record.schema_name == "scene"
    (listed,) = [r for r in ex.records() if r.path.endswith("page.png")]
    assert listed.version == 2 and listed.review.fields == ["text"]


def test_invalid_values_are_refused_with_every_field_error_and_nothing_stored(lib):
    db, photos = lib
    before = fingerprint(db)
    with pytest.raises(ReviewRefusedError) as refused:
        vx.review(str(photos / "astronaut.png"), {"face_count": -1, "labels": "cat"}, db=db)
    assert {error.field for error in refused.value.errors} == {"face_count", "labels"}
    assert "greater than or equal to 0" in str(refused.value)
    with pytest.raises(ReviewRefusedError) as unknown:
        vx.review(str(photos / "astronaut.png"), {"colour": "red"}, db=db)
    assert unknown.value.errors[0].field == "colour" and "not a field" in unknown.value.errors[0].message
    assert fingerprint(db) == before


def test_a_review_of_a_version_that_is_no_longer_current_is_a_conflict(lib):
    db, photos = lib
    vx.review(str(photos / "chelsea.png"), {"labels": ["cat"]}, schema="scene", version=1, db=db)
    before = fingerprint(db)
    with pytest.raises(ReviewConflictError) as conflict:
        vx.review(str(photos / "chelsea.png"), {"labels": ["dog"]}, schema="scene", version=1, db=db)
    assert conflict.value.current.version == 2 and conflict.value.current.data["labels"] == ["cat"]
    assert "changed since version 1" in str(conflict.value)
    assert fingerprint(db) == before


def test_what_to_review_must_be_clear(lib):
    db, photos = lib
    with pytest.raises(RecordNotFoundError):
        vx.review(str(photos / "nope.jpg"), accept=True, db=db)
    with pytest.raises(UsageError, match=r"several schemas.*scene, vehicle"):
        vx.review(str(photos / "coffee.jpg"), accept=True, db=db)
    with pytest.raises(UsageError, match="nothing to review"):
        vx.review(str(photos / "coffee.jpg"), schema="scene", db=db)
    with pytest.raises(ReviewRefusedError, match="no values to accept"):
        vx.review(str(photos / "broken.jpg"), accept=True, db=db)


def test_a_failed_record_can_be_filled_in_by_hand(lib, cli):
    db, photos = lib
    record = vx.review(str(photos / "broken.jpg"), {"text": "unreadable scan", "face_count": 0}, db=db)
    assert record.status == "ok" and record.data.text == "unreadable scan" and record.data.labels is None
    assert record.review.fields == ["face_count", "text"]
    assert export(cli, db)["broken.jpg/scene"]["status"] == "ok"


def test_search_finds_what_a_reviewer_wrote(lib):
    db, photos = lib
    vx.review(str(photos / "coffee.jpg"), {"text": "a golden retriever puppy on a lawn"}, schema="scene", db=db)
    assert Path(vx.search("a golden retriever puppy", db=db, k=1)[0].path).name == "coffee.jpg"


def test_accepting_reuses_the_search_embedding(lib):
    db, photos = lib
    vx.review(str(photos / "chelsea.png"), accept=True, schema="scene", db=db)
    with sqlite3.connect(db.removeprefix("sqlite:///")) as connection:
        rows = connection.execute(
            "SELECT e.segments, e.vector FROM record_embedding e JOIN record r ON r.id = e.record_id "
            "WHERE r.path LIKE '%/chelsea.png' AND r.schema_name = 'scene' ORDER BY r.id"
        ).fetchall()
    assert len(rows) == 2 and rows[0] == rows[1]


# ---- human values survive re-runs ------------------------------------------------------------------------


def test_a_forced_rerun_keeps_reviewed_values_with_their_provenance(lib, cli):
    db, photos = lib
    vx.review(str(photos / "astronaut.png"), {"face_count": 2}, by="ann", db=db)
    reviewed = export(cli, db)["astronaut.png/scene"]
    result = cli("run", photos / "astronaut.png", "--db", db, "--force", "--llm", "none")
    assert result.exit_code == 0, result.output
    rerun = export(cli, db)["astronaut.png/scene"]
    assert rerun["version"] == 3 and rerun["data"] == reviewed["data"] and rerun["data"]["face_count"] == 2
    assert rerun["provenance"] == reviewed["provenance"]  # human, and the accepted fields' verdicts
    assert rerun["review"] == reviewed["review"]
    other = export(cli, db)["chelsea.png/scene"]
    assert other["version"] == 1 and other["review"] is None  # a record nobody reviewed is untouched


def test_a_rerun_of_a_reviewed_llm_record_stays_ok_whatever_the_llm_says(lib, cli, server):
    db, photos = lib
    edited = {"type": None, "license": None, "make": None, "model": None}
    vx.review(str(photos / "coffee.jpg"), edited, schema="vehicle", by="ann", db=db)
    server.reply_json(CAR)  # the LLM repeats its mistake
    cars = photos.parent / "cars"
    result = cli("run", cars / "coffee.jpg", "--db", db, "--schema", "vehicle", "--llm", "openai", "--force")
    assert result.exit_code == 0, result.output
    rerun = export(cli, db)["coffee.jpg/vehicle"]
    assert rerun["status"] == "ok" and rerun["data"] == edited | {"color": "brown"}
    assert rerun["provenance"]["type"]["source"] == "human" and rerun["provenance"]["color"]["verified"] is True


class SceneV2(BaseModel):
    """The scene schema, changed: at most one face, no colours, and the weather."""

    labels: list[str] | None = None
    face_count: int | None = Field(None, ge=0, le=1)
    text: str | None = None
    weather: str | None = None


def fill_scene_v2(evidence):
    filled = fill_scene(evidence)
    filled.values.pop("dominant_colors")
    filled.provenance.pop("dominant_colors")
    filled.leave_empty(["weather"], "no tool reads the weather")
    return filled


def test_a_changed_schema_keeps_the_human_values_that_still_fit(lib):
    db, photos = lib
    vx.review(str(photos / "astronaut.png"), {"face_count": 2, "text": "NASA"}, by="ann", db=db)
    scene_v2 = dataclasses.replace(SCENE, model=SceneV2, fill_from_tools=fill_scene_v2)
    assert scene_v2.version != SCENE.version
    ex = vx.Extractor(db=db, schema=scene_v2, llm=None)
    assert ex.run(photos / "astronaut.png").processed == 1  # the schema changed: redone without --force
    (record,) = [r for r in ex.records() if r.path.endswith("astronaut.png")]
    assert record.data.text == "NASA" and record.provenance["text"].source == "human"
    assert record.data.face_count == 1 and record.provenance["face_count"].source == "tool:faces"  # 2 > le=1
    assert record.data.weather is None and record.provenance["weather"].source is None
    assert record.review.fields == ["text"] and record.review.accepted == ["labels"]
    assert record.provenance["labels"].verified is True


def test_discard_reviews_drops_human_values_for_good(lib, cli):
    db, photos = lib
    vx.review(str(photos / "astronaut.png"), {"face_count": 2}, by="ann", db=db)
    result = cli("run", photos, "--db", db, "--llm", "none", "--discard-reviews")
    assert result.exit_code == 0, result.output
    assert "1 processed" in result.stdout  # only the reviewed record is redone
    record = export(cli, db)["astronaut.png/scene"]
    assert record["data"]["face_count"] == 1 and record["provenance"]["face_count"]["source"] == "tool:faces"
    assert record["review"] is None and record["version"] == 3
    cli("run", photos / "astronaut.png", "--db", db, "--llm", "none", "--force")
    assert export(cli, db)["astronaut.png/scene"]["data"]["face_count"] == 1  # nothing comes back


# ---- PostgreSQL too, and reviews racing each other --------------------------------------------------------


def test_reviews_and_reruns_on_both_databases(any_db, tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    save_sample("astronaut", folder / "astronaut.png")
    ex = vx.Extractor(db=any_db, llm=None, tools=["faces", "colors"])
    ex.run(folder)
    path = str(folder / "astronaut.png")
    outcomes: list[object] = []

    def review(count: int) -> None:
        try:
            outcomes.append(ex.review(path, {"face_count": count}, by=f"r{count}", version=1))
        except ReviewConflictError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=review, args=(n,)) for n in (2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if not isinstance(o, ReviewConflictError)]
    assert len(winners) == 1 and len(outcomes) == 2  # one review wins, the other is told it changed
    ex.run(folder, force=True)
    (record,) = ex.records()
    assert record.version == 3 and record.data.face_count == winners[0].data.face_count
    assert record.provenance["face_count"].source == "human"
