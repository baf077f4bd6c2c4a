"""Read-only SQL: SELECTs work, every kind of write is refused in one line, and the database is left unchanged.

Runs on SQLite, and on the PostgreSQL server of VISEXTRACT_TEST_POSTGRES_URL (`make test` starts one); the tests
create and drop their own database on that server.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import statistics
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from visextract.errors import QueryRefusedError, StoreError
from visextract.store.readonly_sql import (
    _execute_statement,
    _sqlite_authorizer,
    check_readonly_sql,
    dispose_readonly_engines,
    readonly_connection,
    run_readonly_sql,
)

LABELS = ["cat", "dog", "car"]
STATUSES = ["ok", "ok", "needs_review", "failed"]
RECORDS = 30


def _record_data(i: int) -> dict[str, Any]:
    return {"label": LABELS[i % 3], "count": i, "tags": ["outdoor", f"t{i % 2}"]}


@dataclass
class Database:
    """A small visextract-like database (image, record) on one backend, with a fingerprint of its whole state."""

    backend: str  # "sqlite" | "postgresql"
    url: str
    folder: Path  # where a query that manages to write a file would write it

    def snapshot(self) -> dict[str, Any]:
        files = sorted(p.name for p in self.folder.iterdir() if not p.name.endswith(("-wal", "-shm")))
        if self.backend == "sqlite":
            return {"files": files, **_sqlite_snapshot(Path(make_url(self.url).database or ""))}
        return {"files": files, **_postgres_snapshot(self.url)}


def _sqlite_snapshot(path: Path) -> dict[str, Any]:
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        master = connection.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
        tables = [row[1] for row in master if row[0] == "table" and not row[1].startswith("sqlite_")]
        contents = {table: connection.execute(f'SELECT * FROM "{table}" ORDER BY rowid').fetchall() for table in tables}
        counts = {table: len(rows) for table, rows in contents.items()}
        digest = hashlib.sha256(repr((master, contents)).encode()).hexdigest()
        pragmas = {
            name: connection.execute(f"PRAGMA {name}").fetchone()[0] for name in ("journal_mode", "user_version")
        }
    finally:
        connection.close()
    file_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()  # byte-for-byte: the main database file
    return {"file_sha256": file_sha256, "digest": digest, "counts": counts, "pragmas": pragmas}


def _postgres_snapshot(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            tables = connection.execute(
                text(
                    "SELECT table_schema, table_name, table_type FROM information_schema.tables "
                    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
                )
            ).all()
            contents = {
                name: [tuple(row) for row in connection.execute(text(f'SELECT * FROM "{name}" ORDER BY id'))]
                for schema, name, kind in tables
                if schema == "public" and kind == "BASE TABLE"
            }
            sequence = connection.execute(text("SELECT last_value, is_called FROM vx_seq")).one()
            large_objects = connection.execute(text("SELECT count(*) FROM pg_largeobject_metadata")).scalar_one()
    finally:
        engine.dispose()
    return {
        "tables": [tuple(row) for row in tables],
        "digest": hashlib.sha256(repr(contents).encode()).hexdigest(),
        "counts": {name: len(rows) for name, rows in contents.items()},
        "sequence": tuple(sequence),
        "large_objects": large_objects,
    }


def _make_sqlite(folder: Path) -> Database:
    path = folder / "photos.db"
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode = WAL")  # like visextract's own databases
    connection.executescript(
        """
        CREATE TABLE image (id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, width INTEGER, height INTEGER,
                            format TEXT, created_at TEXT, thumb BLOB);
        CREATE TABLE record (id INTEGER PRIMARY KEY, image_id INTEGER REFERENCES image(id), path TEXT NOT NULL,
                             status TEXT NOT NULL, data TEXT);
        CREATE INDEX record_status ON record (status);
        CREATE VIEW labelled AS SELECT id, path, json_extract(data, '$.label') AS label FROM record;
        """
    )
    connection.executemany(
        "INSERT INTO image VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(i, f"{i:064x}", 640 * i, 480 * i, "jpeg", f"2024-05-0{i} 10:00:00", bytes([i, 255])) for i in (1, 2, 3)],
    )
    connection.executemany(
        "INSERT INTO record VALUES (?, ?, ?, ?, ?)",
        [
            (i, i % 3 + 1, f"photos/img{i:02d}.jpg", STATUSES[i % 4], json.dumps(_record_data(i)))
            for i in range(1, RECORDS + 1)
        ],
    )
    connection.commit()
    connection.close()
    return Database("sqlite", f"sqlite:///{path}", folder)


@pytest.fixture(scope="module")
def postgres_database(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    name = f"vx_readonly_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    try:
        _fill_postgres(url)
        yield Database("postgresql", url, tmp_path_factory.mktemp("pg-files"))
    finally:
        dispose_readonly_engines()
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def _fill_postgres(url: str) -> None:
    setup = create_engine(url)
    try:
        with setup.begin() as connection:
            connection.execute(
                text(
                    "CREATE TABLE image (id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, width INTEGER, "
                    "height INTEGER, format TEXT, created_at TIMESTAMPTZ, thumb BYTEA)"
                )
            )
            connection.execute(
                text(
                    "CREATE TABLE record (id INTEGER PRIMARY KEY, image_id INTEGER REFERENCES image(id), "
                    "path TEXT NOT NULL, status TEXT NOT NULL, data JSONB)"
                )
            )
            connection.execute(text("CREATE SEQUENCE vx_seq"))
            connection.execute(text("CREATE VIEW labelled AS SELECT id, path, data->>'label' AS label FROM record"))
            for i in (1, 2, 3):
                connection.execute(
                    text("INSERT INTO image VALUES (:i, :sha, :w, :h, 'jpeg', :at, :thumb)"),
                    {"i": i, "sha": f"{i:064x}", "w": 640 * i, "h": 480 * i, "at": f"2024-05-0{i} 10:00:00+00"}
                    | {"thumb": bytes([i, 255])},
                )
            for i in range(1, RECORDS + 1):
                connection.execute(
                    text("INSERT INTO record VALUES (:i, :image, :path, :status, CAST(:data AS JSONB))"),
                    {
                        "i": i,
                        "image": i % 3 + 1,
                        "path": f"photos/img{i:02d}.jpg",
                        "status": STATUSES[i % 4],
                        "data": json.dumps(_record_data(i)),
                    },
                )
    finally:
        setup.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        return _make_sqlite(tmp_path)
    return request.getfixturevalue("postgres_database")


def _json_sql(database: Database) -> str:
    if database.backend == "sqlite":
        return (
            "SELECT json_extract(data, '$.label') AS label, count(*) AS n FROM record "
            "WHERE json_extract(data, '$.count') > 3 GROUP BY label ORDER BY label"
        )
    return (
        "SELECT data->>'label' AS label, count(*) AS n FROM record "
        "WHERE (data->>'count')::int > 3 GROUP BY label ORDER BY label"
    )


# ----------------------------------------------------------------------------------------------------------------
# SELECTs work


def test_selects_return_json_friendly_rows(database: Database) -> None:
    simple = run_readonly_sql(database.url, "SELECT id, path, status FROM record ORDER BY id LIMIT 3")
    assert simple.columns == ["id", "path", "status"]
    assert simple.rows[0] == {"id": 1, "path": "photos/img01.jpg", "status": "ok"}
    assert not simple.truncated and 0 <= simple.seconds < 5

    joined = run_readonly_sql(
        database.url,
        "SELECT r.path, i.width, i.format FROM record r JOIN image i ON i.id = r.image_id WHERE r.id = 2;",
    )
    assert joined.rows == [{"path": "photos/img02.jpg", "width": 640 * 3, "format": "jpeg"}]

    with_select = run_readonly_sql(
        database.url,
        "WITH failed AS (SELECT * FROM record WHERE status = 'failed') "
        "SELECT count(*) AS n, min(id) AS first_id FROM failed",
    )
    assert with_select.rows == [{"n": len([i for i in range(1, RECORDS + 1) if i % 4 == 3]), "first_id": 3}]

    grouped = run_readonly_sql(
        database.url, "SELECT status, count(*) AS n FROM record GROUP BY status HAVING count(*) > 1 ORDER BY status"
    )
    assert [row["status"] for row in grouped.rows] == ["failed", "needs_review", "ok"]
    assert sum(row["n"] for row in grouped.rows) == RECORDS

    labels = run_readonly_sql(database.url, _json_sql(database))
    expected = {label: sum(1 for i in range(4, RECORDS + 1) if LABELS[i % 3] == label) for label in LABELS}
    assert labels.rows == [{"label": label, "n": expected[label]} for label in sorted(LABELS)]

    view = run_readonly_sql(database.url, "SELECT path, label FROM labelled WHERE id = 1")  # like the typed views
    assert view.rows == [{"path": "photos/img01.jpg", "label": LABELS[1]}]

    union = run_readonly_sql(database.url, "SELECT id FROM record WHERE id = 1 UNION SELECT id FROM image WHERE id = 2")
    assert sorted(row["id"] for row in union.rows) == [1, 2]

    images = run_readonly_sql(database.url, "SELECT id, created_at, thumb FROM image ORDER BY id")
    json.dumps(images.rows)  # everything is JSON-friendly: timestamps, blobs
    assert images.rows[0]["thumb"] == "01ff"
    assert str(images.rows[0]["created_at"]).startswith("2024-05-01")


def test_sqlite_json_each_and_schema_introspection(tmp_path: Path) -> None:
    database = _make_sqlite(tmp_path)
    tags = run_readonly_sql(
        database.url, "SELECT j.value AS tag FROM record, json_each(record.data, '$.tags') AS j WHERE record.id = 1"
    )
    assert tags.rows == [{"tag": "outdoor"}, {"tag": "t1"}]
    columns = run_readonly_sql(database.url, "SELECT name FROM pragma_table_info('record') ORDER BY cid")
    assert [row["name"] for row in columns.rows] == ["id", "image_id", "path", "status", "data"]
    tables = run_readonly_sql(database.url, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    assert [row["name"] for row in tables.rows] == ["image", "record"]
    assert run_readonly_sql(database.url, "SELECT count(*) AS n FROM labelled").rows == [{"n": RECORDS}]


def test_row_limit_truncates_and_says_so(database: Database) -> None:
    series = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2500) SELECT x FROM c"
    default = run_readonly_sql(database.url, series)
    assert len(default.rows) == 1000 and default.truncated
    assert default.rows[-1] == {"x": 1000}
    assert run_readonly_sql(database.url, series, max_rows=2500).truncated is False
    small = run_readonly_sql(database.url, "SELECT id FROM record ORDER BY id", max_rows=5)
    assert [row["id"] for row in small.rows] == [1, 2, 3, 4, 5] and small.truncated


def test_duplicate_column_names_are_kept_apart(database: Database) -> None:
    result = run_readonly_sql(
        database.url, "SELECT r.id, i.id FROM record r JOIN image i ON i.id = r.image_id WHERE r.id = 1"
    )
    assert result.columns == ["id", "id_2"]
    assert result.rows == [{"id": 1, "id_2": 2}]


def test_check_readonly_sql_returns_one_normalised_statement() -> None:
    assert check_readonly_sql("select 1 ;", "sqlite") == "SELECT 1"
    assert check_readonly_sql("SELECT 1;; ", "postgres") == "SELECT 1"
    assert check_readonly_sql("select id -- the id\nfrom record /* all */", "sqlite") == "SELECT id FROM record"
    assert check_readonly_sql("WITH x AS (SELECT 1 AS a) SELECT a FROM x", "postgresql").startswith("WITH x AS")


def test_comments_cannot_smuggle_a_statement(database: Database) -> None:
    before = database.snapshot()
    # The whole tail is a line comment: the statement is SELECT 1, and comments are not re-emitted (so a "*/" in
    # one cannot end a block comment in the SQL that runs).
    result = run_readonly_sql(database.url, "SELECT 1 AS one -- x */ ; DROP TABLE record")
    assert result.rows == [{"one": 1}]
    assert database.snapshot() == before


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(StoreError, match="no database at"):
        run_readonly_sql(f"sqlite:///{missing}", "SELECT 1")
    with pytest.raises(StoreError, match="no database at"):
        run_readonly_sql(str(missing), "SELECT 1")
    assert not missing.exists()
    assert list(tmp_path.iterdir()) == []


def test_unreachable_postgres_is_a_store_error() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(StoreError, match="cannot open the database") as info:
        run_readonly_sql("postgresql+psycopg://nobody:secret@127.0.0.1:1/photos", "SELECT 1", timeout_s=2)
    assert "\n" not in str(info.value) and "secret" not in str(info.value)


def test_database_errors_are_one_line_refusals(database: Database) -> None:
    with pytest.raises(QueryRefusedError) as info:
        run_readonly_sql(database.url, "SELECT * FROM no_such_table")
    assert "no_such_table" in str(info.value) and "\n" not in str(info.value)


def test_store_created_database(tmp_path: Path) -> None:
    from visextract.store import Store

    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(url)
    store.close()
    result = run_readonly_sql(url, "SELECT count(*) AS n FROM record WHERE is_current")
    assert result.rows == [{"n": 0}]
    with pytest.raises(QueryRefusedError):
        run_readonly_sql(url, "DELETE FROM record")


# ----------------------------------------------------------------------------------------------------------------
# Writes of any form are refused, in one line, and change nothing

REFUSED = {
    "delete": ("DELETE FROM record", "not DELETE"),
    "delete_where": ("DELETE FROM record WHERE id = 1", "not DELETE"),
    "update": ("UPDATE record SET status = 'hacked'", "not UPDATE"),
    "insert": ("INSERT INTO record (id, path, status) VALUES (999, 'x.jpg', 'ok')", "not INSERT"),
    "insert_select": ("INSERT INTO record SELECT * FROM record", "not INSERT"),
    "replace": ("REPLACE INTO image (id, sha256) VALUES (1, 'x')", "not REPLACE|cannot parse"),
    "drop_table": ("DROP TABLE record", "not DROP"),
    "drop_index": ("DROP INDEX record_status", "not DROP"),
    "create_table": ("CREATE TABLE evil (x INTEGER)", "not CREATE"),
    "create_table_as": ("CREATE TABLE evil AS SELECT * FROM record", "not CREATE"),
    "create_temp_table": ("CREATE TEMP TABLE evil AS SELECT 1 AS x", "not CREATE"),
    "create_view": ("CREATE VIEW evil AS SELECT 1 AS x", "not CREATE"),
    "create_index": ("CREATE INDEX evil ON record (path)", "not CREATE"),
    "alter_table": ("ALTER TABLE record ADD COLUMN evil INTEGER", "not ALTER"),
    "truncate": ("TRUNCATE TABLE record", "not TRUNCATE"),
    "multi_select_drop": ("SELECT 1; DROP TABLE record", "one statement is allowed, found 2"),
    "multi_select_delete_lowercase": ("select * from record; delete from record", "one statement is allowed, found 2"),
    "multi_selects": ("SELECT 1; SELECT 2", "one statement is allowed, found 2"),
    "multi_after_comment": ("SELECT 1 /* harmless */; DELETE FROM record -- done", "one statement is allowed, found 2"),
    "cte_delete": ("WITH x AS (DELETE FROM record RETURNING *) SELECT * FROM x", "contains DELETE"),
    "cte_update": ("WITH x AS (UPDATE record SET status = 'x' RETURNING id) SELECT count(*) FROM x", "contains UPDATE"),
    "cte_insert": (
        "WITH x AS (INSERT INTO record (id, path, status) VALUES (9, 'x', 'ok') RETURNING id) SELECT 1",
        "contains INSERT",
    ),
    "with_then_delete": ("WITH x AS (SELECT 1 AS id) DELETE FROM record WHERE id IN (SELECT id FROM x)", "not DELETE"),
    "attach": ("ATTACH DATABASE '{folder}/other.db' AS other", "not ATTACH|cannot parse"),
    "detach": ("DETACH DATABASE main", "not DETACH|cannot parse"),
    "pragma_journal_mode": ("PRAGMA journal_mode=DELETE", "not PRAGMA"),
    "pragma_user_version": ("PRAGMA user_version = 7", "not PRAGMA"),
    "pragma_writable_schema": ("PRAGMA writable_schema = ON", "not PRAGMA|cannot parse"),
    "pragma_read": ("PRAGMA table_info(record)", "not PRAGMA"),
    "vacuum": ("VACUUM", "not VACUUM"),
    "vacuum_into": ("VACUUM INTO '{folder}/copy.db'", "not VACUUM"),
    "reindex": ("REINDEX", "not REINDEX"),
    "analyze": ("ANALYZE", "not ANALYZE"),
    "select_into": ("SELECT * INTO record_copy FROM record", "INTO creates a table"),
    "union_into": ("SELECT id FROM record UNION SELECT id FROM image INTO evil", "INTO"),
    "with_select_into": ("WITH x AS (SELECT 1 AS a) SELECT * INTO evil FROM x", "INTO creates a table"),
    "copy_to": ("COPY record TO '{folder}/out.csv'", "not COPY"),
    "copy_from": ("COPY record FROM '{folder}/in.csv'", "not COPY"),
    "copy_program": ("COPY record TO PROGRAM 'touch {folder}/pwned'", "not COPY"),
    "set": ("SET statement_timeout = 0", "not SET"),
    "set_session": ("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", "not SET"),
    "reset": ("RESET ALL", "not RESET"),
    "load": ("LOAD 'plpgsql'", "not LOAD"),
    "begin": ("BEGIN", "not a transaction statement"),
    "commit": ("COMMIT", "not a transaction statement"),
    "explain_analyze": ("EXPLAIN ANALYZE DELETE FROM record", "not EXPLAIN"),
    "do_block": ("DO $$ BEGIN DELETE FROM record; END $$", "not DO|cannot parse"),
    "call": ("CALL evil()", "not CALL"),
    "grant": ("GRANT ALL ON record TO PUBLIC", "not GRANT"),
    "lock": ("LOCK TABLE record", "not LOCK|cannot parse"),
    "for_update": ("SELECT * FROM record FOR UPDATE", "FOR UPDATE/SHARE"),
    "pg_terminate_backend": (
        "SELECT pg_terminate_backend(pg_backend_pid())",
        "function pg_terminate_backend\\(\\) is not allowed",
    ),
    "pg_cancel_backend": ("SELECT pg_cancel_backend(1)", "function pg_cancel_backend\\(\\) is not allowed"),
    "lo_import": ("SELECT lo_import('/etc/hostname')", "function lo_import\\(\\) is not allowed"),
    "lo_export": ("SELECT lo_export(1, '{folder}/out.bin')", "function lo_export\\(\\) is not allowed"),
    "set_config": (
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        "function set_config\\(\\) is not allowed",
    ),
    "pg_sleep": ("SELECT pg_sleep(30)", "function pg_sleep\\(\\) is not allowed"),
    "pg_sleep_qualified": ("SELECT pg_catalog.pg_sleep(30)", "function pg_sleep\\(\\) is not allowed"),
    "pg_sleep_quoted": ('SELECT "pg_sleep"(30)', "function pg_sleep\\(\\) is not allowed"),
    "pg_sleep_in_subquery": (
        "SELECT * FROM record WHERE id IN (SELECT pg_sleep(30))",
        "function pg_sleep\\(\\) is not allowed",
    ),
    "pg_advisory_lock": ("SELECT pg_advisory_lock(1)", "function pg_advisory_lock\\(\\) is not allowed"),
    "pg_read_file": ("SELECT pg_read_file('/etc/passwd')", "function pg_read_file\\(\\) is not allowed"),
    "nextval": ("SELECT nextval('vx_seq')", "function nextval\\(\\) is not allowed"),
    "dblink": (
        "SELECT * FROM dblink('dbname=postgres', 'DELETE FROM record') AS t(x text)",
        "function dblink\\(\\) is not allowed",
    ),
    "dblink_exec": (
        "SELECT dblink_exec('dbname=postgres', 'DROP TABLE record')",
        "function dblink_exec\\(\\) is not allowed",
    ),
    "query_to_xml": (
        "SELECT query_to_xml('DELETE FROM record RETURNING 1', true, false, '')",
        "function query_to_xml\\(\\) is not allowed",
    ),
    "load_extension": ("SELECT load_extension('{folder}/evil.so')", "function load_extension\\(\\) is not allowed"),
    "writefile": ("SELECT writefile('{folder}/out.txt', 'x')", "function writefile\\(\\) is not allowed"),
    "readfile": ("SELECT readfile('/etc/passwd')", "function readfile\\(\\) is not allowed"),
    "fts3_tokenizer": ("SELECT fts3_tokenizer('simple')", "function fts3_tokenizer\\(\\) is not allowed"),
    "load_extension_upper_in_cte": (
        "WITH x AS (SELECT LOAD_EXTENSION('evil') AS y) SELECT * FROM x",
        "function load_extension\\(\\) is not allowed",
    ),
    "values": ("VALUES (1)", "not VALUES"),
    "unparseable": ("SELEC * FROM record", "cannot parse the SQL: incomplete or invalid syntax"),
    "unterminated_string": ("SELECT 'abc FROM record", "cannot parse"),
    "unbalanced": ("SELECT (1 FROM record", "cannot parse"),
    "empty": ("", "empty query"),
    "only_semicolons": (" ; ; ", "empty query"),
    "only_comment": ("-- nothing here", "empty query"),
}


REFUSED_SQL = {name: sql for name, (sql, _) in REFUSED.items()}


@pytest.mark.parametrize("sql", list(REFUSED_SQL.values()), ids=list(REFUSED_SQL))
def test_writes_are_refused_in_one_line_and_change_nothing(database: Database, sql: str) -> None:
    before = database.snapshot()
    with pytest.raises(QueryRefusedError) as info:
        run_readonly_sql(database.url, sql.format(folder=database.folder), timeout_s=2)
    message = str(info.value)
    assert message.strip() and "\n" not in message and len(message) < 300, message
    assert database.snapshot() == before


# ----------------------------------------------------------------------------------------------------------------
# Layer 1 on its own: the parser check refuses every write, with its reason, without any database behind it


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
@pytest.mark.parametrize(("sql", "reason"), list(REFUSED.values()), ids=list(REFUSED))
def test_the_parser_check_alone_refuses_every_write(sql: str, reason: str, dialect: str) -> None:
    with pytest.raises(QueryRefusedError, match=reason) as info:
        check_readonly_sql(sql.format(folder="/tmp/visextract-test"), dialect)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------------------------------
# The read-only connection is a real second layer: writes that skip the parser check are refused by the database

SQLITE_BYPASS = [
    "DELETE FROM record",
    "UPDATE record SET status = 'x'",
    "INSERT INTO record (id, path, status) VALUES (999, 'x', 'ok')",
    "DROP TABLE record",
    "CREATE TABLE evil (x INTEGER)",
    "CREATE TEMP TABLE evil (x INTEGER)",
    "ATTACH DATABASE '{folder}/other.db' AS other",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA user_version = 7",
    "PRAGMA query_only = OFF",
    "VACUUM",
    "VACUUM INTO '{folder}/copy.db'",
    "REINDEX",
    "BEGIN IMMEDIATE",
    "SELECT load_extension('{folder}/evil.so')",
    "SELECT 1; DELETE FROM record",
]

POSTGRES_BYPASS = [
    "DELETE FROM record",
    "UPDATE record SET status = 'x'",
    "INSERT INTO record (id, path, status) VALUES (999, 'x', 'ok')",
    "DROP TABLE record",
    "CREATE TABLE evil (x INTEGER)",
    "CREATE TEMP TABLE evil (x INTEGER)",
    "SELECT nextval('vx_seq')",
    "WITH x AS (DELETE FROM record RETURNING *) SELECT * FROM x",
    "SELECT * FROM record FOR UPDATE",
    "SET TRANSACTION READ WRITE",
    "SELECT set_config('transaction_read_only', 'off', true)",
    "SELECT pg_sleep(30)",
]


@pytest.mark.parametrize("sql", SQLITE_BYPASS)
def test_sqlite_readonly_connection_refuses_writes_without_the_parser(tmp_path: Path, sql: str) -> None:
    database = _make_sqlite(tmp_path)
    before = database.snapshot()
    with readonly_connection(database.url) as ro, pytest.raises((sqlite3.DatabaseError, sqlite3.Warning)):
        ro.dbapi.execute(sql.format(folder=database.folder))
    assert database.snapshot() == before


@pytest.mark.postgres
@pytest.mark.parametrize("sql", POSTGRES_BYPASS)
def test_postgres_readonly_connection_refuses_writes_without_the_parser(postgres_database: Database, sql: str) -> None:
    import psycopg

    before = postgres_database.snapshot()
    with (
        readonly_connection(postgres_database.url, timeout_s=1) as ro,
        pytest.raises(psycopg.Error),
        ro.dbapi.cursor() as cursor,
    ):
        cursor.execute(sql)
    assert postgres_database.snapshot() == before


WRITES = ["DELETE FROM record", "UPDATE record SET status = 'x'", "DROP TABLE record", "CREATE TABLE evil (x INTEGER)"]


def test_sqlite_read_only_file_mode_alone_refuses_writes(tmp_path: Path) -> None:
    """mode=ro on its own: with the authorizer removed and query_only switched off, the file still cannot be
    written."""
    database = _make_sqlite(tmp_path)
    before = database.snapshot()
    with readonly_connection(database.url) as ro:
        ro.dbapi.set_authorizer(None)
        ro.dbapi.execute("PRAGMA query_only = OFF")
        assert ro.dbapi.execute("PRAGMA query_only").fetchone() == (0,)
        for sql in [*WRITES, "PRAGMA user_version = 7"]:
            with pytest.raises(sqlite3.OperationalError, match="attempt to write a readonly database"):
                ro.dbapi.execute(sql)
        ro.dbapi.execute("PRAGMA query_only = ON")  # hand the pooled connection back as it was
    assert database.snapshot() == before


def test_sqlite_query_only_alone_refuses_temporary_writes(tmp_path: Path) -> None:
    """query_only on its own: with the authorizer removed, even the temporary database (which mode=ro does not
    cover) cannot be written."""
    database = _make_sqlite(tmp_path)
    with readonly_connection(database.url) as ro:
        ro.dbapi.set_authorizer(None)
        for sql in ("CREATE TEMP TABLE evil (x INTEGER)", "CREATE TEMP VIEW evil AS SELECT 1 AS x"):
            with pytest.raises(sqlite3.OperationalError, match="attempt to write a readonly database"):
                ro.dbapi.execute(sql)
        assert ro.dbapi.execute("SELECT count(*) FROM sqlite_temp_master").fetchone() == (0,)


@pytest.mark.parametrize("sql", [sql for sql in SQLITE_BYPASS if ";" not in sql])  # sqlite3 refuses those itself
def test_sqlite_authorizer_alone_refuses_writes(tmp_path: Path, sql: str) -> None:
    """The authorizer on its own, on an ordinary read-write connection to the same file."""
    database = _make_sqlite(tmp_path)
    before = database.snapshot()
    connection = sqlite3.connect(Path(make_url(database.url).database or ""), isolation_level=None)
    try:
        connection.set_authorizer(_sqlite_authorizer)
        with pytest.raises(sqlite3.DatabaseError, match=r"not authorized|authorization denied|prohibited"):
            connection.execute(sql.format(folder=database.folder))
        # reads still work through it
        assert connection.execute("SELECT count(*) FROM record").fetchone() == (RECORDS,)
    finally:
        connection.close()
    assert database.snapshot() == before


@pytest.mark.postgres
def test_postgres_read_only_transaction_alone_refuses_writes(postgres_database: Database) -> None:
    """SET TRANSACTION READ ONLY on its own, on a session whose read-only default was lost (as behind a pooler
    that drops startup options): writes are still refused."""
    import psycopg

    before = postgres_database.snapshot()
    dispose_readonly_engines()  # one fresh pooled connection, handed back and out again below
    try:
        with readonly_connection(postgres_database.url) as ro, ro.dbapi.cursor() as cursor:
            ro.dbapi.rollback()
            cursor.execute("SET SESSION default_transaction_read_only = off")
            ro.dbapi.commit()
        for sql in WRITES:
            with readonly_connection(postgres_database.url, timeout_s=2) as ro, ro.dbapi.cursor() as cursor:
                cursor.execute("SHOW default_transaction_read_only")
                assert cursor.fetchone() == ("off",)  # the same session, its default really off
                cursor.execute("SHOW transaction_read_only")
                assert cursor.fetchone() == ("on",)
                with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                    cursor.execute(sql)
    finally:
        dispose_readonly_engines()  # never hand that session to a later test
    assert postgres_database.snapshot() == before


@pytest.mark.postgres
def test_postgres_read_only_session_default_alone_refuses_writes(postgres_database: Database) -> None:
    """default_transaction_read_only on its own: the read-only transaction ended, a new one starts read-only."""
    import psycopg

    before = postgres_database.snapshot()
    for sql in WRITES:
        with readonly_connection(postgres_database.url, timeout_s=2) as ro, ro.dbapi.cursor() as cursor:
            ro.dbapi.rollback()  # ends the SET TRANSACTION READ ONLY transaction
            cursor.execute("SHOW default_transaction_read_only")
            assert cursor.fetchone() == ("on",)
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                cursor.execute(sql)
    assert postgres_database.snapshot() == before


@pytest.mark.parametrize("sql", ["DELETE FROM record", "DROP TABLE record", "UPDATE record SET status = 'x'"])
def test_unchecked_execution_path_is_still_refused_in_one_line(database: Database, sql: str) -> None:
    before = database.snapshot()
    with pytest.raises(QueryRefusedError, match="the database refused the query") as info:
        _execute_statement(database.url, sql, max_rows=10, timeout_s=2)
    assert "\n" not in str(info.value)
    assert database.snapshot() == before


# ----------------------------------------------------------------------------------------------------------------
# Time limit

SLOW = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


def test_slow_query_is_stopped_by_the_timeout(database: Database) -> None:
    started = time.monotonic()
    with pytest.raises(QueryRefusedError, match=r"query took longer than 0\.5 s") as info:
        run_readonly_sql(database.url, SLOW, timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert "\n" not in str(info.value)
    # the pooled connection is still good, with a fresh time limit
    assert run_readonly_sql(database.url, "SELECT count(*) AS n FROM record", timeout_s=0.5).rows == [{"n": RECORDS}]


@pytest.mark.postgres
def test_postgres_sleep_past_the_timeout_is_stopped(postgres_database: Database) -> None:
    started = time.monotonic()
    with pytest.raises(QueryRefusedError, match=r"longer than 0\.5 s"):
        _execute_statement(postgres_database.url, "SELECT pg_sleep(30)", max_rows=1, timeout_s=0.5)
    assert time.monotonic() - started < 5


# ----------------------------------------------------------------------------------------------------------------
# Speed: the project's target is p50 < 50 ms for simple queries over 100k rows


def test_simple_queries_over_100k_rows_are_fast(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE record (id INTEGER PRIMARY KEY, path TEXT, status TEXT, data TEXT)")
    connection.execute("CREATE INDEX record_status ON record (status)")
    connection.executemany(
        "INSERT INTO record (path, status, data) VALUES (?, ?, ?)",
        ((f"photos/{i}.jpg", STATUSES[i % 4], json.dumps(_record_data(i))) for i in range(100_000)),
    )
    connection.commit()
    connection.close()
    url = f"sqlite:///{path}"
    for sql in (
        "SELECT count(*) AS n FROM record",
        "SELECT path FROM record WHERE status = 'failed' LIMIT 50",
        "SELECT * FROM record",
    ):
        run_readonly_sql(url, sql)  # warm the engine cache
        timings = []
        for _ in range(15):
            started = time.perf_counter()
            run_readonly_sql(url, sql)
            timings.append(time.perf_counter() - started)
        assert statistics.median(timings) < 0.05, (sql, timings)
