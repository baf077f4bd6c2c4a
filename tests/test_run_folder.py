"""Running the bundled offline tools over a folder of real photos, from the CLI and the Python API."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from sqlmodel import select

import visextract as vx
from visextract.store import Store
from visextract.store.tables import ToolResultRow

EXPORT_KEYS = {
    "path", "sha256", "width", "height", "status", "error", "schema", "schema_version",
    "data", "provenance", "tools", "llm", "version", "review",
}  # fmt: skip


@pytest.fixture(scope="module")
def extracted(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, list[dict]]:
    """The photos plus one corrupt file, run once through `visextract run`; returns (db, folder, export)."""
    from typer.testing import CliRunner

    from visextract.cli import app

    folder = tmp_path_factory.mktemp("run")
    shutil.copytree(photos, folder, dirs_exist_ok=True)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    db = f"sqlite:///{folder / 'records.db'}"
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(folder), "--db", db], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert summary_counts(result.stdout) == {"processed": 5, "skipped": 0, "failed": 1}
    exported = runner.invoke(app, ["export", "--format", "jsonl", "--db", db], catch_exceptions=False)
    assert exported.exit_code == 0
    return db, folder, [json.loads(line) for line in exported.stdout.splitlines()]


def summary_counts(stdout: str) -> dict[str, int]:
    """The counts of the run's summary line: `5 processed, 0 skipped, 1 failed in 3.2 s ...` ->
    {"processed": 5, "skipped": 0, "failed": 1}."""
    (line,) = [line for line in stdout.splitlines() if re.match(r"\d+ processed, ", line)]
    counts = line.split(" in ", 1)[0]
    return {kind: int(n) for n, kind in re.findall(r"(\d+) ([a-z ]+?)(?:,|$)", counts)}


def by_name(records: list[dict], name: str) -> dict:
    (record,) = [r for r in records if Path(r["path"]).name == name]
    return record


def labels(record: dict) -> list[str]:
    return [c["label"] for c in record["tools"]["classifier"]]


def test_the_cat_photo_has_a_cat_label_in_the_top_five(extracted):
    _, _, records = extracted
    chelsea = by_name(records, "chelsea.png")
    assert len(chelsea["tools"]["classifier"]) == 5
    assert any("cat" in label for label in labels(chelsea)), labels(chelsea)


def test_the_coffee_photo_is_espresso_or_a_cup(extracted):
    _, _, records = extracted
    top = labels(by_name(records, "coffee.jpg"))
    assert {"espresso", "cup", "coffee mug"} & set(top), top


def test_the_astronaut_has_exactly_one_face_inside_the_image(extracted):
    _, _, records = extracted
    astronaut = by_name(records, "astronaut.png")
    (face,) = astronaut["tools"]["faces"]
    x1, y1, x2, y2 = face["box"]
    assert 0 <= x1 < x2 <= astronaut["width"] and 0 <= y1 < y2 <= astronaut["height"]
    assert face["score"] > 0.95
    assert astronaut["data"]["face_count"] == 1
    assert by_name(records, "chelsea.png")["data"]["face_count"] == 0


def test_the_scanned_page_is_read(extracted):
    _, _, records = extracted
    page = by_name(records, "page.png")
    text = page["data"]["text"]
    assert "markers" in text and "background" in text  # words printed on scikit-image's page.png
    assert all(0.5 <= line["score"] <= 1 for line in page["tools"]["ocr"])
    assert page["provenance"]["text"]["source"] == "tool:ocr"
    assert len(page["provenance"]["text"]["evidence"]) == len(page["tools"]["ocr"])


def test_export_has_the_documented_shape_with_provenance_for_every_field(extracted):
    _, folder, records = extracted
    assert len(records) == 6
    for record in records:
        assert set(record) == EXPORT_KEYS
        assert Path(record["path"]).is_absolute() and Path(record["path"]).is_relative_to(folder)
        assert record["schema"] == "scene"
        assert set(record["provenance"]) == {"labels", "face_count", "text", "dominant_colors"}
        for provenance in record["provenance"].values():
            assert {"source", "evidence", "verified"} <= set(provenance)
    rocket = by_name(records, "rocket.jpg")  # found in a nested folder
    assert rocket["status"] == "ok" and rocket["error"] is None
    assert (rocket["width"], rocket["height"]) == (640, 427)
    assert len(rocket["sha256"]) == 64
    assert rocket["llm"] is None
    colors = rocket["tools"]["colors"]
    assert colors and abs(sum(c["fraction"] for c in colors) - 1) < 0.1
    assert all(c["hex"].startswith("#") and len(c["hex"]) == 7 for c in colors)
    assert rocket["data"]["dominant_colors"]


def test_a_corrupt_file_fails_with_a_reason_while_the_rest_succeed(extracted):
    _, _, records = extracted
    corrupt = by_name(records, "corrupt.jpg")
    assert corrupt["status"] == "failed"
    assert "image" in corrupt["error"]
    assert corrupt["data"] is None
    assert [r["status"] for r in records if r is not corrupt] == ["ok"] * 5


def test_a_second_run_skips_everything_and_does_no_model_work(extracted, cli):
    db, folder, records = extracted
    store = Store(db)
    with store.read() as session:
        tool_rows_before = len(session.exec(select(ToolResultRow)).all())
    result = cli("run", folder, "--db", db)
    assert result.exit_code == 0
    assert summary_counts(result.stdout) == {"processed": 0, "skipped": 6, "failed": 0}
    with store.read() as session:
        assert len(session.exec(select(ToolResultRow)).all()) == tool_rows_before
    again = [json.loads(line) for line in cli("export", "--db", db).stdout.splitlines()]
    assert again == records


def test_status_and_show(extracted, cli):
    db, folder, _ = extracted
    status = cli("status", "--db", db, "--list")
    assert status.exit_code == 0
    assert "scene" in status.stdout and "corrupt.jpg" in status.stdout
    shown = cli("show", folder / "astronaut.png", "--db", db)
    assert shown.exit_code == 0
    record = json.loads(shown.stdout)
    assert record["tools"]["faces"] and record["paths"] == [str(folder / "astronaut.png")]
    by_sha = json.loads(cli("show", record["sha256"][:12], "--db", db).stdout)
    assert by_sha["path"] == record["path"]
    missing = cli("show", "nope.jpg", "--db", db)
    assert missing.exit_code != 0 and "no record" in missing.stderr


def test_csv_export(extracted, cli, tmp_path):
    db, _, records = extracted
    target = tmp_path / "records.csv"
    result = cli("export", "--format", "csv", "-o", target, "--db", db)
    assert result.exit_code == 0
    import csv

    rows = list(csv.DictReader(target.open()))
    assert [row["path"] for row in rows] == [record["path"] for record in records]  # the jsonl export's order
    for row, record in zip(rows, records, strict=True):
        for key in ("sha256", "width", "status", "error", "schema"):  # CSV writes None as an empty cell
            assert row[key] == ("" if record[key] is None else str(record[key])), (record["path"], key)
        data = record["data"] or {}
        for field in ("labels", "face_count", "text", "dominant_colors"):  # the scene schema's fields
            value = data.get(field)
            expected = "" if value is None else json.dumps(value) if isinstance(value, list) else str(value)
            assert row[f"data.{field}"] == expected, (record["path"], field)
        assert json.loads(row["tools"]) == record["tools"]
    astronaut = next(r for r in rows if r["path"].endswith("astronaut.png"))
    assert astronaut["data.face_count"] == "1"


def test_python_api_returns_a_summary_and_typed_records(photos, tmp_path):
    ex = vx.Extractor(db=f"sqlite:///{tmp_path / 'api.db'}", tools=["classifier", "colors"])
    summary = ex.run(photos / "chelsea.png", photos / "coffee.jpg")
    assert (summary.processed, summary.skipped, summary.failed) == (2, 0, 0)
    assert summary.seconds > 0
    records = {Path(r.path).name: r for r in ex.records()}
    chelsea = records["chelsea.png"]
    assert chelsea.data.labels and chelsea.data.face_count is None  # faces were not run
    assert chelsea.provenance["face_count"].source is None
    assert chelsea.tools["classifier"][0].label == chelsea.data.labels[0]
    assert chelsea.status == "ok" and chelsea.width == 451


def test_adding_a_tool_reuses_the_stored_results_of_the_others(photos, tmp_path):
    db = f"sqlite:///{tmp_path / 'reuse.db'}"
    vx.Extractor(db=db, tools=["classifier"]).run(photos / "coffee.jpg")
    store = Store(db)
    first = {(r.tool, r.id) for r in store.read().exec(select(ToolResultRow))}
    summary = vx.Extractor(db=db, tools=["classifier", "colors"]).run(photos / "coffee.jpg")
    assert summary.processed == 1  # the tool set changed, so the record is redone...
    after = {(r.tool, r.id) for r in store.read().exec(select(ToolResultRow))}
    assert first < after and {tool for tool, _ in after - first} == {"colors"}  # ...but classifier did not rerun


def test_force_redoes_and_keeps_history(photos, tmp_path, cli):
    db = f"sqlite:///{tmp_path / 'force.db'}"
    assert cli("run", photos / "coffee.jpg", "--db", db, "--tools", "colors").exit_code == 0
    forced = cli("run", photos / "coffee.jpg", "--db", db, "--tools", "colors", "--force")
    assert summary_counts(forced.stdout) == {"processed": 1, "skipped": 0, "failed": 0}
    history = [json.loads(line) for line in cli("export", "--db", db, "--all-versions").stdout.splitlines()]
    assert [r["is_current"] for r in history] == [False, True]


def test_force_redoes_a_duplicated_image_once(photos, tmp_path, cli):
    """Two copies of one image: --force makes one new version (from whichever copy comes first), not one
    per copy."""
    folder = tmp_path / "copies"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        shutil.copy(photos / "coffee.jpg", folder / name)
    db = f"sqlite:///{tmp_path / 'copies.db'}"
    first = cli("run", folder, "--db", db, "--tools", "colors")
    assert "1 processed" in first.stdout and "1 skipped" in first.stdout
    forced = cli("run", folder, "--db", db, "--tools", "colors", "--force")
    assert "1 processed" in forced.stdout and "1 skipped" in forced.stdout
    history = [json.loads(line) for line in cli("export", "--db", db, "--all-versions").stdout.splitlines()]
    assert sorted((r["version"], r["is_current"]) for r in history) == [(1, False), (2, True)]
    assert {Path(r["path"]).name for r in history} <= {"a.jpg", "b.jpg"}  # copies run side by side


def test_a_run_stores_one_record_per_image_even_when_two_workers_race(photos, tmp_path):
    """The store alone: a second save of the same image in the same run (a retried batch, a copy on another
    worker) keeps the run's first record and only remembers the path."""
    from visextract.schemas.registry import load_schema
    from visextract.store import RecordDraft

    store = Store(f"sqlite:///{tmp_path / 'race.db'}")
    schema = load_schema("scene")
    run_id = store.start_run(schema, {}, {})

    def draft(path: Path) -> RecordDraft:
        return RecordDraft(path=str(path), schema_name="scene", schema_version=schema.version, status="ok",
                           subject="0" * 64, data={}, run_id=run_id)  # fmt: skip

    first, second = store.save(draft(tmp_path / "a.jpg")), store.save(draft(tmp_path / "b.jpg"))
    assert second == first
    assert [r.path for r in store.current_records(all_versions=True)] == [str(tmp_path / "a.jpg")]
    assert store.paths_of("0" * 64) == [str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")]
    assert store.is_done("0" * 64, schema, "another tool set", run_id=run_id, force=True)
    assert not store.is_done("0" * 64, schema, "another tool set", run_id=run_id + 1)


def test_limit_processes_only_that_many(photos, tmp_path, cli):
    db = f"sqlite:///{tmp_path / 'limit.db'}"
    result = cli("run", photos, "--db", db, "--tools", "colors", "--limit", "2")
    assert summary_counts(result.stdout) == {"processed": 2, "skipped": 0, "failed": 0}
    # files are taken in order: sorted within a folder, the top folder first
    first_two = sorted(str(p) for p in photos.iterdir() if p.is_file())[:2]
    assert sorted(json.loads(line)["path"] for line in cli("export", "--db", db).stdout.splitlines()) == first_two
    rest = cli("run", photos, "--db", db, "--tools", "colors")
    assert summary_counts(rest.stdout) == {"processed": 3, "skipped": 2, "failed": 0}


def test_usage_errors_are_one_line(cli, tmp_path, photos):
    db = f"sqlite:///{tmp_path / 'x.db'}"
    for args, message in [
        (("run", tmp_path / "missing", "--db", db), "no such file or folder"),
        (("run", tmp_path / "photos[ray]", "--db", db), "photos[ray]"),  # printed as is, not as Rich markup
        (("run", photos, "--db", db, "--tools", "classifier,telepathy"), "unknown tool 'telepathy'"),
        (("run", photos, "--db", db, "--schema", "nonsense"), "unknown schema 'nonsense'"),
        (("run", photos, "--db", "sqlite:////no/such/dir/x.db"), "does not exist"),
        (("export", "--db", db, "--format", "xml"), "unknown export format"),
    ]:
        result = cli(*args)
        assert result.exit_code != 0
        assert message in result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
