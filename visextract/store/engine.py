"""Opening databases: SQLite (WAL, busy timeout, immediate write transactions) or any SQLAlchemy URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from visextract.errors import StoreError

SQLITE_BUSY_TIMEOUT_S = 60


def parse_db_url(url: str) -> URL:
    """The URL, or a StoreError naming what is wrong with it. A bare file path means SQLite."""
    if "://" not in url:
        url = f"sqlite:///{url}"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"invalid database URL {url!r}: expected e.g. sqlite:///photos.db") from None
    if parsed.get_backend_name() == "sqlite" and (parsed.host or parsed.port or parsed.username):
        raise StoreError(
            f"invalid SQLite URL {url!r}: a file is sqlite:///relative/path.db or sqlite:////absolute/path.db "
            "(three or four slashes)"
        )
    return parsed


def open_engine(url: str) -> Engine:
    """An engine for `url`. SQLite files get WAL mode, a busy timeout and `BEGIN IMMEDIATE` for writes.

    Write code uses `engine.execution_options(write=True)`, so two processes writing the same SQLite
    file queue up on the lock instead of failing with "database is locked".
    """
    parsed = parse_db_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed)
        return create_engine(parsed, pool_pre_ping=True)
    except NoSuchModuleError:
        raise StoreError(f"unsupported database URL {url!r}: no SQLAlchemy dialect for it") from None
    except ModuleNotFoundError as exc:
        raise StoreError(
            f"database driver {exc.name!r} is not installed for {parsed.drivername}: "
            "for PostgreSQL, pip install 'visextract[postgres]'"
        ) from None


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        folder = Path(database).expanduser().absolute().parent
        if not folder.is_dir():
            raise StoreError(f"cannot create database {database!r}: folder {folder} does not exist")
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let the "begin" hook below issue BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
        if database not in ("", ":memory:") and "mode=ro" not in database:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get("write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
