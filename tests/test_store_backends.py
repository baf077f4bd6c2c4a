"""The same user journey on SQLite and on a real PostgreSQL server: run, re-run, export, show, status,
typed views through read-only SQL, search, ask; and upgrading a database made by an older version."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from openai_test_server import OpenAITestServer
from PIL import Image
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

import visextract as vx
import visextract.store.store as store_module
from visextract.errors import QueryRefusedError, StoreError
from visextract.store import Store
from visextract.store.export import export_dicts
from visextract.store.migrations import MIGRATIONS, current_version


def test_run_export_show_status_sql_and_search(any_db, photos, cli):
    first = cli("run", photos, "--db", any_db, "--tools", "classifier,faces,colors")
    assert first.exit_code == 0 and "5 processed" in first.stdout, first.output
    assert "5 skipped" in cli("run", photos, "--db", any_db, "--tools", "classifier,faces,colors").stdout
    records = [json.loads(line) for line in cli("export", "--db", any_db).stdout.splitlines()]
    assert len(records) == 5 and {r["status"] for r in records} == {"ok"}
    astronaut = next(r for r in records if r["path"].endswith("astronaut.png"))
    assert list(astronaut["data"]) == ["labels", "face_count", "text", "dominant_colors"]  # order as written
    assert json.loads(cli("show", photos / "astronaut.png", "--db", any_db).stdout)["data"]["face_count"] == 1
    assert "scene" in cli("status", "--db", any_db).stdout
    rows = json.loads(
        cli(
            "sql", "SELECT path, face_count FROM scene WHERE face_count >= 1", "--db", any_db, "--format", "json"
        ).stdout
    )
    assert [Path(r["path"]).name for r in rows] == ["astronaut.png"] and rows[0]["face_count"] == 1
    refused = cli("sql", "DELETE FROM record", "--db", any_db)
    assert refused.exit_code != 0 and len(cli("export", "--db", any_db).stdout.splitlines()) == 5
    (hit,) = vx.search("a cup of coffee", db=any_db, k=1)
    assert hit.path.endswith("coffee.jpg")


def test_ask_runs_its_sql_on_the_same_backend(any_db, photos, monkeypatch):
    vx.Extractor(db=any_db, tools=["faces"], llm=None).run(photos / "astronaut.png", photos / "coffee.jpg")
    with OpenAITestServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "k")
        server.reply_tool_calls([("run_sql", {"query": "SELECT path FROM scene WHERE face_count = 1"})])
        server.reply_text("The astronaut photo has one face.")
        answer = vx.ask("which photo has a face?", db=any_db)
    assert [Path(p).name for p in answer.paths] == ["astronaut.png"]
    assert '"rows"' in server.requests[1].messages[-1]["content"]


def test_a_database_made_by_an_older_version_is_upgraded_in_place(any_db, photos):
    # what version 1 created: the first tables, stamped with migration 1 only
    store = Store(any_db)
    with store.engine.begin() as connection:
        connection.execute(text("DROP TABLE record_embedding"))
        connection.execute(text("DROP TABLE llm_call"))
        connection.execute(text("DROP INDEX ix_image_path_sha256"))
        connection.execute(text("ALTER TABLE image_path DROP COLUMN sha256"))
        connection.execute(text("DELETE FROM schema_migration WHERE version > 1"))
    store.engine.dispose()
    old = Store(any_db)  # opening it again upgrades it
    assert current_version(old.engine) == len(MIGRATIONS)
    summary = vx.Extractor(db=any_db, tools=["colors"], llm=None).run(photos / "coffee.jpg")
    assert summary.processed == 1
    (hit,) = vx.search("a cup of coffee", db=any_db, k=1)
    assert hit.path.endswith("coffee.jpg")


def test_opening_a_database_again_applies_nothing_twice(any_db):
    Store(any_db)
    again = Store(any_db)  # idempotent: nothing re-applied, nothing fails
    with again.engine.connect() as connection:
        versions = [row[0] for row in connection.execute(text("SELECT version FROM schema_migration ORDER BY version"))]
    assert versions == list(range(1, len(MIGRATIONS) + 1))


@pytest.mark.parametrize("url", ["postgresql+psycopg://nobody@127.0.0.1:1/none", "mysql://x@localhost/db"])
def test_an_unusable_database_url_is_one_line(cli, photos, url):
    result = cli("run", photos, "--db", url, "--tools", "colors")
    assert result.exit_code != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error:") and "Traceback" not in result.stderr


def test_python_sql_returns_columns_rows_and_truncation(any_db, photos):
    names = ["astronaut.png", "chelsea.png", "coffee.jpg"]
    vx.Extractor(db=any_db, tools=["colors"], llm=None).run(*(photos / name for name in names))
    sizes = {}
    for name in names:
        with Image.open(photos / name) as image:
            sizes[str(photos / name)] = image.size
    query = (
        "SELECT r.path, i.width, i.height, s.dominant_colors FROM record r JOIN image i ON i.id = r.image_id "
        "JOIN scene s ON s.record_id = r.id ORDER BY r.path"
    )
    result = vx.sql(query, db=any_db)
    assert result.columns == ["path", "width", "height", "dominant_colors"] and result.truncated is False
    assert [(row["path"], (row["width"], row["height"])) for row in result.rows] == sorted(sizes.items())
    exported = {r["path"]: r["data"]["dominant_colors"] for r in export_dicts(Store(any_db))}
    if any_db.startswith("sqlite"):  # SQLite has no JSON type: a list column of a typed view is JSON text
        exported = {path: json.dumps(colors, separators=(",", ":")) for path, colors in exported.items()}
    assert {row["path"]: row["dominant_colors"] for row in result.rows} == exported
    assert isinstance(result.seconds, float) and 0 <= result.seconds < 10

    first_two = vx.sql(query, db=any_db, max_rows=2)
    assert first_two.rows == result.rows[:2] and first_two.truncated is True
    with pytest.raises(QueryRefusedError):
        vx.sql("DELETE FROM record", db=any_db)
    assert vx.sql("SELECT count(*) AS n FROM record", db=any_db).rows == [{"n": 3}]


def _locked(statement: str = "BEGIN IMMEDIATE") -> OperationalError:
    return OperationalError(statement, {}, sqlite3.OperationalError("database is locked"))


def test_opening_a_database_others_are_creating_waits_out_sqlite_lock_answers(tmp_path, monkeypatch):
    """SQLite skips its busy timeout where waiting could deadlock, as when several processes open one new
    file at once (a `status` polling a run that is starting, Ray workers): opening retries instead of
    failing with "database is locked"."""
    real_migrate = store_module.migrate
    attempts: list[int] = []

    def locked_twice(engine):
        attempts.append(1)
        if len(attempts) <= 2:
            raise _locked()
        return real_migrate(engine)

    monkeypatch.setattr(store_module, "migrate", locked_twice)
    store = Store(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        assert len(attempts) == 3
        assert current_version(store.engine) == len(MIGRATIONS)
    finally:
        store.close()


def test_a_lock_that_does_not_clear_is_still_one_line_and_other_errors_are_not_retried(tmp_path, monkeypatch):
    attempts: list[str] = []

    def failing(answer: str):
        def migrate(engine):
            attempts.append(answer)
            raise OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError(answer))

        return migrate

    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    monkeypatch.setattr(store_module, "migrate", failing("database is locked"))
    with pytest.raises(StoreError, match=r"^cannot open database .*: .*database is locked") as held:
        Store(f"sqlite:///{tmp_path / 'held.db'}")
    assert "\n" not in str(held.value)
    assert 1 < len(attempts) < 30  # retried with growing pauses, then gave up

    attempts.clear()
    monkeypatch.setattr(store_module, "migrate", failing("disk I/O error"))
    with pytest.raises(StoreError, match="disk I/O error"):
        Store(f"sqlite:///{tmp_path / 'broken.db'}")
    assert attempts == ["disk I/O error"]
