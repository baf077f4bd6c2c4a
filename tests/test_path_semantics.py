"""A path shows the content it holds now: changed files, replaced failures, deleted and returning files,
and databases made by the oldest layout upgraded in place (DESIGN.md, "Run semantics")."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from conftest import save_sample
from sqlalchemy import text

import visextract as vx
from visextract.store import Store
from visextract.store.migrations import MIGRATIONS, current_version
from visextract.store.tables import GALLERY_INDEXES, SEARCH_INDEXES

TOOLS = "classifier,colors"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export(cli, db: str, *extra: str) -> list[dict]:
    result = cli("export", "--db", db, *extra)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def listed_rows(db: str, sql: str) -> list:
    store = Store(db)
    try:
        with store.engine.connect() as connection:
            return connection.execute(text(sql)).all()
    finally:
        store.close()


def test_a_changed_file_shows_only_its_new_content_and_a_deleted_one_goes_missing(cli, tmp_path, any_db):
    folder = tmp_path / "mod"
    folder.mkdir()
    a, b = save_sample("chelsea", folder / "a.png"), save_sample("coffee", folder / "b.png")
    old_a = sha256_of(a)
    assert cli("run", folder, "--db", any_db, "--tools", TOOLS).exit_code == 0

    save_sample("astronaut", a)  # other bytes at the same path
    b.unlink()
    second = cli("run", folder, "--db", any_db, "--tools", TOOLS)
    assert second.exit_code == 0 and "1 processed" in second.stdout and "1 path missing" in second.stdout

    records = export(cli, any_db)
    assert [(Path(r["path"]).name, r["sha256"]) for r in records] == [("a.png", sha256_of(a))]
    shown = json.loads(cli("show", a, "--db", any_db).stdout)
    assert shown["sha256"] == sha256_of(a) and shown["paths"] == [str(a)]
    listing = cli("status", "--list", "--db", any_db).stdout
    assert listing.count("a.png") == 1 and "b.png" not in listing
    assert records[0]["tools"]["classifier"][0]["label"] in listing  # the new content's label, not the cat's
    hits = json.loads(cli("search", "a cat", "--db", any_db, "--format", "json").stdout)
    assert old_a not in {hit["sha256"] for hit in hits} and {Path(h["path"]).name for h in hits} == {"a.png"}
    assert (
        listed_rows(
            any_db, "SELECT path FROM record WHERE is_current AND NOT missing GROUP BY path HAVING count(*) > 1"
        )
        == []
    )
    assert [Path(row.path).name for row in listed_rows(any_db, "SELECT path FROM scene")] == ["a.png"]

    no_llm = listed_rows(any_db, "SELECT count(*) FROM record WHERE llm IS NULL AND review IS NULL")
    assert no_llm[0][0] == len(history_rows := listed_rows(any_db, "SELECT id FROM record")) and history_rows
    history = export(cli, any_db, "--all-versions")
    assert old_a in {r["sha256"] for r in history}  # the older content's record stays in the history
    missing = export(cli, any_db, "--include-missing")
    assert sorted(Path(r["path"]).name for r in missing) == ["a.png", "b.png"]
    assert "missing" in cli("status", "--db", any_db).stdout
    rows = cli("status", "--list", "--include-missing", "--db", any_db).stdout.splitlines()
    (a_row,), (b_row,) = [r for r in rows if "a.png" in r], [r for r in rows if "b.png" in r]
    assert "(missing)" in b_row and "(missing)" not in a_row  # a listing that brings them back marks them
    counts = Store(any_db).status_counts()["scene"]
    assert counts == {"ok": 1, "missing": 1}
    assert {Path(h["path"]).name for h in json.loads(
        cli("search", "coffee", "--db", any_db, "--format", "json", "--include-missing").stdout
    )} == {"a.png", "b.png"}  # fmt: skip


def test_a_failed_file_replaced_by_a_good_one_stops_counting_as_failed(cli, tmp_path, db_url):
    folder = tmp_path / "inbox"
    folder.mkdir()
    broken = folder / "photo.png"
    broken.write_text("<html>not a photo</html>")
    first = cli("run", folder, "--db", db_url, "--tools", TOOLS)
    assert "1 failed" in first.stdout
    save_sample("coffee", broken)
    assert "1 processed" in cli("run", folder, "--db", db_url, "--tools", TOOLS).stdout
    assert Store(db_url).status_counts() == {"scene": {"ok": 1}}
    (record,) = export(cli, db_url)
    assert record["status"] == "ok" and record["sha256"] == sha256_of(broken)
    assert "photo.png" not in cli("status", "--list", "--failed", "--db", db_url).stdout


def test_a_file_that_comes_back_is_listed_again_without_redoing_it(cli, tmp_path, db_url):
    folder = tmp_path / "album"
    folder.mkdir()
    save_sample("chelsea", folder / "cat.png")
    save_sample("coffee", folder / "cup.png")
    cli("run", folder, "--db", db_url, "--tools", TOOLS)
    kept = folder.parent / "cup.png"
    (folder / "cup.png").rename(kept)
    assert "1 path missing" in cli("run", folder, "--db", db_url, "--tools", TOOLS).stdout
    assert [Path(r["path"]).name for r in export(cli, db_url)] == ["cat.png"]
    kept.rename(folder / "cup.png")
    back = cli("run", folder, "--db", db_url, "--tools", TOOLS)
    assert "0 processed" in back.stdout and "2 skipped" in back.stdout
    assert sorted(Path(r["path"]).name for r in export(cli, db_url)) == ["cat.png", "cup.png"]
    assert Store(db_url).status_counts() == {"scene": {"ok": 2}}


def test_a_moved_file_keeps_its_record_under_the_new_path(cli, tmp_path, db_url):
    folder = tmp_path / "album"
    folder.mkdir()
    save_sample("coffee", folder / "old-name.png")
    cli("run", folder, "--db", db_url, "--tools", TOOLS)
    (folder / "old-name.png").rename(folder / "new-name.png")
    moved = cli("run", folder, "--db", db_url, "--tools", TOOLS)
    assert "0 processed" in moved.stdout and "1 skipped" in moved.stdout and "1 path missing" in moved.stdout
    (record,) = export(cli, db_url)
    assert Path(record["path"]).name == "new-name.png"
    assert json.loads(cli("show", folder / "new-name.png", "--db", db_url).stdout)["paths"] == [
        str(folder / "new-name.png")
    ]


def test_only_a_complete_listing_marks_paths_missing(cli, tmp_path, db_url):
    folder = tmp_path / "album"
    folder.mkdir()
    for name in ("astronaut", "chelsea", "coffee"):
        save_sample(name, folder / f"{name}.png")
    cli("run", folder, "--db", db_url, "--tools", TOOLS)
    (folder / "astronaut.png").unlink()
    limited = cli("run", folder, "--db", db_url, "--tools", TOOLS, "--limit", "1")
    assert "missing" not in limited.stdout
    assert len(export(cli, db_url)) == 3  # --limit saw one file: it cannot know what else is gone
    one_file = cli("run", folder / "coffee.png", "--db", db_url, "--tools", TOOLS)
    assert "missing" not in one_file.stdout and len(export(cli, db_url)) == 3  # a file argument is not a folder
    assert "1 path missing" in cli("run", folder, "--db", db_url, "--tools", TOOLS).stdout
    assert len(export(cli, db_url)) == 2


def test_python_records_show_current_content_only(tmp_path, db_url):
    folder = tmp_path / "album"
    folder.mkdir()
    photo = save_sample("chelsea", folder / "x.png")
    extractor = vx.Extractor(db=db_url, tools=["colors"], llm=None)
    extractor.run(folder)
    save_sample("coffee", photo)
    extractor.run(folder)
    assert [(Path(r.path).name, r.sha256) for r in extractor.records()] == [("x.png", sha256_of(photo))]


def test_a_database_with_records_made_by_the_oldest_layout_is_upgraded_in_place(cli, tmp_path, any_db):
    """What version 1 left behind: no path hashes, no versions, and two current records for one path
    after its file changed. The upgrade must keep every record and restore the path semantics."""
    folder = tmp_path / "old"
    folder.mkdir()
    a = save_sample("chelsea", folder / "a.png")
    save_sample("coffee", folder / "b.png")
    cli("run", folder, "--db", any_db, "--tools", TOOLS)
    old_a = sha256_of(a)
    save_sample("astronaut", a)
    cli("run", folder, "--db", any_db, "--tools", TOOLS)
    store = Store(any_db)
    with store.engine.begin() as connection:
        # version 1 kept the older content current too, and had none of the later tables and columns
        connection.execute(text("UPDATE record SET is_current = true WHERE subject = :s"), {"s": old_a})
        connection.execute(text("UPDATE record SET llm = 'null'"))  # version 1 wrote None as the JSON text 'null'
        connection.execute(text("DROP VIEW scene"))  # version 1's view; the upgrade recreates it
        connection.execute(text("DROP TABLE record_embedding"))
        connection.execute(text("DROP TABLE llm_call"))
        field_indexes = [  # the typed views' field indexes came later too
            row[0]
            for row in connection.execute(
                text("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'vx!_%' ESCAPE '!'")
                if connection.dialect.name == "postgresql"
                else text("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'vx!_%' ESCAPE '!'")
            )
        ]
        labels_before = dict(connection.execute(text("SELECT id, label FROM record")).all())
        for index in (
            "ix_image_path_sha256",
            "record_by_subject",
            *(i.name for i in GALLERY_INDEXES + SEARCH_INDEXES),
            *field_indexes,
        ):
            connection.execute(text(f"DROP INDEX {index}"))
        for table, column in [
            ("image_path", "sha256"), ("image_path", "missing_at"), ("image_path", "seen_run_id"),
            ("record", "version"), ("record", "review"), ("record", "missing"), ("record", "label"),
            ("run", "heartbeat_at"),
        ]:  # fmt: skip
            connection.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        connection.execute(text("DELETE FROM schema_migration WHERE version > 1"))
        records_before = connection.execute(text("SELECT count(*) FROM record")).scalar_one()
    store.close()

    upgraded = Store(any_db)
    assert current_version(upgraded.engine) == len(MIGRATIONS)
    with upgraded.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM record")).scalar_one() == records_before
        versions = connection.execute(text("SELECT subject, version FROM record ORDER BY id")).all()
    assert all(version >= 1 for _, version in versions)
    with upgraded.engine.connect() as connection:  # the gallery's top labels were backfilled from tool results
        assert dict(connection.execute(text("SELECT id, label FROM record")).all()) == labels_before
    assert set(labels_before.values()) >= {"tiger cat", "espresso"}
    assert upgraded.paths_of(sha256_of(a)) == [str(a)]  # path hashes were backfilled from image ids
    assert upgraded.paths_of(sha256_of(folder / "b.png")) == [str(folder / "b.png")]
    assert upgraded.find_records(str(a))[0].subject == sha256_of(a)
    records = export(cli, any_db)
    assert sorted((Path(r["path"]).name, r["sha256"]) for r in records) == sorted(
        [("a.png", sha256_of(a)), ("b.png", sha256_of(folder / "b.png"))]
    )
    assert old_a not in {r["sha256"] for r in records}
    assert old_a in {r["sha256"] for r in export(cli, any_db, "--all-versions")}
    with upgraded.engine.connect() as connection:  # JSON null became SQL NULL: `IS NULL` finds them
        assert connection.execute(text("SELECT count(*) FROM record WHERE llm IS NOT NULL")).scalar_one() == 0
    rows = json.loads(cli("sql", "SELECT path FROM scene ORDER BY path", "--db", any_db, "--format", "json").stdout)
    assert [Path(r["path"]).name for r in rows] == ["a.png", "b.png"]  # the views were recreated
