"""Bad options, bad URLs and bad output paths: one clear line before any work, and never a changed record.
Each safety layer is tested on its own: options are checked before work (layer 1), a model that fails to
load during a run stops it without touching records (layer 2), and the store never lets a failed attempt
replace a usable record (layer 3)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import save_sample
from sqlalchemy import text

import visextract as vx
from visextract.errors import StoreError, UsageError
from visextract.store import RecordDraft, Store

TOOLS = "classifier,colors"


@pytest.fixture
def done(tmp_path, photos, cli):
    """A database whose records are all ok, and a snapshot of its record table."""
    db = f"sqlite:///{tmp_path / 'good.db'}"
    assert cli("run", photos, "--db", db, "--tools", TOOLS).exit_code == 0
    return db


def record_table(db: str) -> list[tuple]:
    store = Store(db)
    try:
        with store.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text("SELECT id, status, is_current FROM record"))]
    finally:
        store.close()


def run_count(db: str) -> int:
    store = Store(db)
    try:
        with store.engine.connect() as connection:
            return connection.execute(text("SELECT count(*) FROM run")).scalar_one()
    finally:
        store.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--device", "cuda"], "CUDA is not available"),
        (["--batch-size", "0"], "--batch-size 0"),
        (["--batch-size", "-3"], "--batch-size -3"),
        (["--concurrency", "0"], "--concurrency must be 1 or more"),
        (["--limit", "0"], "--limit must be 1 or more"),
        (["--detector-threshold", "2"], "--detector-threshold must be between 0 and 1"),
        (["--model", "classifier=/no/such/model"], "does not exist"),
        (["--tools", ""], "--tools '' names no tool"),
        (["--tools", " , "], "names no tool"),
    ],
)
def test_a_bad_option_is_one_line_before_any_work_and_changes_no_record(done, photos, cli, options, message):
    before, runs = record_table(done), run_count(done)
    result = cli("run", photos, "--db", done, "--tools", TOOLS, "--force", "--limit", "1", *options)
    assert result.exit_code == 2 if "model" not in options[0] else result.exit_code != 0
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert record_table(done) == before and run_count(done) == runs


def test_a_model_that_fails_to_load_mid_run_stops_the_run_and_keeps_good_records(tmp_path, photos, cli):
    """Layer 2 alone: the model folder passes the up-front check (it has a config.json) but cannot load."""
    import tiny_models

    model = tiny_models.build_tiny_vit(tmp_path / "vit")
    db = f"sqlite:///{tmp_path / 'x.db'}"
    assert cli("run", photos, "--db", db, "--tools", "classifier", "--model", f"classifier={model}").exit_code == 0
    before = record_table(db)
    broken = Path(shutil.copytree(model, tmp_path / "vit-broken"))  # a new copy: the loaded one is memory-mapped
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    result = cli("run", photos, "--db", db, "--tools", "classifier", "--model", f"classifier={broken}", "--force")
    assert result.exit_code == 1 and "cannot load model" in result.stderr
    assert record_table(db) == before  # no record was replaced by a failure
    assert Store(db).recent_runs(1)[0].status == "failed"


def test_the_store_never_lets_a_failed_attempt_replace_a_usable_record(done, photos):
    """Layer 3 alone, through the Store API: a failure or an unfinished record is kept as history."""
    store = Store(done)
    (record,) = store.find_records(str(photos / "coffee.jpg"))
    attempts = [
        RecordDraft(path=record.path, schema_name="scene", schema_version=record.schema_version, status="failed",
                    subject=record.subject, error="tool faces failed: out of memory", complete=False),
        RecordDraft(path=record.path, schema_name="scene", schema_version=record.schema_version,
                    status="needs_review", subject=record.subject, data=record.data, complete=False,
                    error="LLM unavailable"),
    ]  # fmt: skip
    for attempt in attempts:
        saved = store.save(attempt)
        assert not saved.current
        (current,) = store.find_records(str(photos / "coffee.jpg"))
        assert (current.id, current.status) == (record.id, "ok")
    finished = store.save(
        RecordDraft(path=record.path, schema_name="scene", schema_version=record.schema_version, status="ok",
                    subject=record.subject, data=record.data)
    )  # fmt: skip
    assert finished.current and store.find_records(str(photos / "coffee.jpg"))[0].version == record.version + 3


def test_output_and_database_problems_are_one_line_not_tracebacks(done, cli, tmp_path):
    cases = [
        (("export", "--db", done, "-f", "csv", "-o", "/nonexistent/dir/out.csv"), "/nonexistent/dir does not exist"),
        (("export", "--db", done, "-f", "parquet", "-o", tmp_path), "it is a folder"),
    ]
    not_a_db = tmp_path / "notadb.db"
    not_a_db.write_text("these are my notes, not a database\n")
    for command in ("status", "run"):
        args = (
            (command, tmp_path, "--db", f"sqlite:///{not_a_db}")
            if command == "run"
            else (command, "--db", f"sqlite:///{not_a_db}")
        )
        cases.append((args, "cannot open database"))
    for args, message in cases:
        result = cli(*args)
        assert result.exit_code != 0 and message in result.stderr, (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not_a_db.read_text() == "these are my notes, not a database\n"


@pytest.mark.parametrize(
    "command",
    [["status"], ["search", "a cat"], ["export"], ["show", "x.jpg"], ["sql", "SELECT 1"], ["status", "--list"]],
)
def test_read_commands_never_create_a_database(cli, tmp_path, command):
    nope = tmp_path / "nope.db"
    result = cli(*command, "--db", f"sqlite:///{nope}")
    assert result.exit_code == 1 and ("no visextract database" in result.stderr or "no database" in result.stderr)
    assert not nope.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["status"], ["search", "a cat"], ["export"], ["show", "x.jpg"]])
def test_read_commands_leave_a_sqlite_file_that_is_not_theirs_byte_for_byte_unchanged(cli, tmp_path, command):
    """Another program's database, and an empty file: one line, and neither file is changed (no WAL mode,
    no tables, not even a header written into the empty one)."""
    other, empty = tmp_path / "other.db", tmp_path / "empty.db"
    with contextlib.closing(sqlite3.connect(other)) as connection:
        connection.execute("CREATE TABLE notes (text)")
        connection.commit()
    empty.touch()
    before = {path: path.read_bytes() for path in (other, empty)}
    for path in (other, empty):
        result = cli(*command, "--db", f"sqlite:///{path}")
        assert result.exit_code == 1 and "no visextract database" in result.stderr, result.output
    assert {path: path.read_bytes() for path in (other, empty)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db", "other.db"]  # no -wal or -shm files


@pytest.mark.parametrize("command", [["status"], ["run", "."], ["sql", "SELECT 1"], ["serve"]])
def test_a_sqlite_url_with_two_slashes_is_one_line_naming_the_right_form(cli, command):
    result = cli(*command, "--db", "sqlite://photos.db")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.stderr.strip() == (
        "error: invalid SQLite URL 'sqlite://photos.db': a file is sqlite:///relative/path.db or "
        "sqlite:////absolute/path.db (three or four slashes)"
    )


@pytest.mark.parametrize("query", ["", "   "])
def test_an_empty_search_is_one_line_not_an_empty_table(done, cli, query):
    result = cli("search", query, "--db", done)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip() == "error: search needs a query: say what to look for, e.g. 'a red car'"
    with pytest.raises(UsageError, match="search needs a query"):
        vx.search(query, db=done)


def test_python_read_functions_never_create_a_database(tmp_path):
    nope = tmp_path / "nope.db"
    with pytest.raises(StoreError, match="no visextract database"):
        vx.search("a cat", db=f"sqlite:///{nope}")
    assert not nope.exists()


def test_ask_without_an_llm_is_a_clean_usage_error(done):
    with pytest.raises(UsageError, match="ask needs an LLM") as caught:
        vx.ask("how many photos?", db=done)
    assert caught.value.__context__ is None and caught.value.__cause__ is None  # not chained to asyncio's error


def test_chat_without_an_llm_names_chat(done, cli):
    result = cli("chat", "--db", done, input="hello\n")
    assert result.exit_code == 2 and "chat needs an LLM" in result.stderr


def test_python_errors_name_python_arguments(done):
    with pytest.raises(UsageError) as caught:
        vx.Extractor(db=done, schema="vehicle", llm=None)
    assert "llm_model" in str(caught.value) and "--llm" not in str(caught.value)


def test_an_empty_folder_says_no_images_were_found(cli, tmp_path, db_url):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no photos here")
    result = cli("run", empty, "--db", db_url, "--tools", TOOLS)
    assert result.exit_code == 0 and "no image files found" in result.stderr


def test_an_unknown_schema_filter_is_an_error_naming_the_schemas(done, cli):
    for command in (["status"], ["export"], ["search", "cat"], ["show", "x", "--schema", "nosuch"]):
        args = [*command, "--db", done] + ([] if "--schema" in command else ["--schema", "nosuch"])
        result = cli(*args)
        assert result.exit_code == 2 and "no records of schema 'nosuch'" in result.stderr and "scene" in result.stderr


def test_an_unreachable_llm_server_is_reported_at_once_and_in_the_summary(tmp_path, photos, monkeypatch):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "OPENAI_API_KEY": "k", "VISEXTRACT_LLM_MAX_ATTEMPTS": "2", "VISEXTRACT_LLM_RETRY_INITIAL_WAIT": "0.01",
    }  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "visextract.cli", "run", photos / "coffee.jpg", "--db", f"sqlite:///{tmp_path / 'x.db'}",
         "--schema", "vehicle", "--tools", "colors", "--llm", "openai"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr and "is not answering" in result.stderr
    assert "1 need review" in result.stdout and "LLM unavailable" in result.stdout


def test_verbose_works_after_the_command_and_version_is_printed(done):
    def visextract(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "visextract.cli", *args], capture_output=True, text=True)

    assert visextract("status", "--db", done, "-v").returncode == 0
    version = visextract("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"visextract {vx.__version__}"


def test_show_prints_one_json_document_for_an_image_with_two_schemas(tmp_path, cli, server):
    db = f"sqlite:///{tmp_path / 'two.db'}"
    photo = save_sample("coffee", tmp_path / "cup.png")
    cli("run", photo, "--db", db, "--tools", "colors", "--llm", "none")
    server.reply_json({"type": None, "license": None, "make": None, "model": None, "color": "brown"})
    assert cli("run", photo, "--db", db, "--tools", "colors", "--schema", "vehicle", "--llm", "openai").exit_code == 0
    both = json.loads(cli("show", photo, "--db", db).stdout)
    assert sorted(record["schema"] for record in both) == ["scene", "vehicle"]
    one = json.loads(cli("show", photo, "--db", db, "--schema", "vehicle").stdout)
    assert one["schema"] == "vehicle" and one["paths"] == [str(photo)]


def test_a_newline_in_a_file_name_does_not_break_the_status_table(tmp_path, cli, db_url):
    folder = tmp_path / "odd"
    folder.mkdir()
    save_sample("coffee", folder / "two\nlines.png")
    cli("run", folder, "--db", db_url, "--tools", TOOLS)
    listing = cli("status", "--list", "--db", db_url).stdout
    assert "two\\nlines.png" in listing
    assert not any(line.startswith("lines.png") for line in listing.splitlines())


def test_visextract_db_selects_the_database(tmp_path, photos, monkeypatch):
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    monkeypatch.setenv("VISEXTRACT_DB", url)
    vx.Extractor(tools=["colors"], llm=None).run(photos / "coffee.jpg")
    assert Path(tmp_path / "from-env.db").is_file()
    assert [Path(row["path"]).name for row in vx.sql("SELECT path FROM scene").rows] == ["coffee.jpg"]
    monkeypatch.setenv("VISEXTRACT_DB", f"sqlite:///{tmp_path / 'other.db'}")
    with pytest.raises(StoreError):
        vx.search("coffee")
