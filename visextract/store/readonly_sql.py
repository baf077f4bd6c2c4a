"""Read-only SQL for users and the agent: one checked SELECT, on a read-only connection, with row and time limits.

Two independent layers stand between a query and a write (see DESIGN.md, "Query safety"):

1. `check_readonly_sql` parses the text with sqlglot in the database's dialect. It accepts exactly one statement
   whose root is a query (SELECT, WITH ... SELECT, UNION/INTERSECT/EXCEPT), with no DML/DDL/command node anywhere
   in the tree (a `WITH x AS (DELETE ... RETURNING *)` is found by walking it), no `SELECT ... INTO`, no
   `FOR UPDATE`/`FOR SHARE` and no function on the deny-list (`pg_sleep`, `set_config`, `lo_import`, `dblink`,
   `load_extension`, `writefile`...). What runs is the statement sqlglot regenerates from the checked tree
   (comments dropped), so the database executes exactly what was checked.
2. `readonly_connection` opens the database so that it cannot write even if the check were wrong:
   SQLite through a `file:...?mode=ro` URI with `PRAGMA query_only`, no ATTACH (`SQLITE_LIMIT_ATTACHED` = 0) and an
   authorizer that allows only reads, read-only pragmas and functions not on the deny-list; PostgreSQL in a
   `READ ONLY` transaction (plus `default_transaction_read_only` for the session) that is always rolled back,
   through a server-side cursor (`DECLARE ... CURSOR FOR` accepts only a query).

Rows are capped at `max_rows` (one more is fetched to report truncation) and time at `timeout_s` (SQLite: a
progress handler aborts the statement; PostgreSQL: `SET LOCAL statement_timeout`).

A read-only PostgreSQL transaction still lets a superuser signal other sessions, take advisory locks or read
server files; only the deny-list stops those, so give `visextract sql`/`ask` a role without those rights (e.g. one
with just `pg_read_all_data`). Because the regenerated text runs, SQLite names unaliased expression columns after
it (`COUNT(*)` for `count(*)`): alias them (`count(*) AS n`) for stable names.

    >>> result = run_readonly_sql("sqlite:///photos.db", "SELECT status, count(*) AS n FROM record GROUP BY status")
    >>> result.columns, result.rows[:1], result.truncated
    (['status', 'n'], [{'status': 'ok', 'n': 42}], False)
    >>> run_readonly_sql("sqlite:///photos.db", "DELETE FROM record")
    Traceback (most recent call last):
    visextract.errors.QueryRefusedError: only SELECT or WITH ... SELECT queries are allowed, not DELETE
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlglot
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, NoSuchModuleError
from sqlalchemy.pool import QueuePool
from sqlglot import exp
from sqlglot.errors import ParseError

from visextract.errors import QueryRefusedError, StoreError
from visextract.store.engine import parse_db_url

__all__ = [
    "DEFAULT_MAX_ROWS",
    "DEFAULT_TIMEOUT_S",
    "QueryResult",
    "ReadOnlyConnection",
    "check_readonly_sql",
    "dispose_readonly_engines",
    "is_denied_function",
    "readonly_connection",
    "run_readonly_sql",
]

DEFAULT_MAX_ROWS = 1000
DEFAULT_TIMEOUT_S = 10.0
MAX_SQL_CHARS = 100_000
MAX_BLOB_HEX_BYTES = 64  # longer blobs are shown as "<N bytes>"

# Functions with side effects, that run other SQL given as a string, or that read/write files on the server.
# SQLite: extension loading and the sqlite3 shell's fileio functions (if a build has them). PostgreSQL: sessions,
# locks, sequences, settings, large objects, server files, replication, backups, dblink, SQL-in-a-string.
DENIED_FUNCTIONS = frozenset(
    """
    load_extension writefile readfile edit fsdir zipfile fts3_tokenizer
    set_config nextval setval loread lowrite ts_stat ts_rewrite
    query_to_xml query_to_xmlschema query_to_xml_and_xmlschema cursor_to_xml cursor_to_xmlschema
    pg_notify pg_promote pg_export_snapshot pg_start_backup pg_stop_backup pg_stat_file pg_stat_statements_reset
    """.split()  # noqa: SIM905
)
DENIED_FUNCTION_PREFIXES = tuple(
    """
    pg_sleep pg_terminate pg_cancel pg_reload pg_rotate pg_read_ pg_ls_ pg_file_ pg_stat_reset pg_create_ pg_drop_
    pg_copy_ pg_replication_ pg_logical_ pg_advisory pg_try_advisory pg_backup_ pg_switch_ pg_wal_replay_ pg_log_
    pg_import_ pg_truncate_ pg_clear_ pg_restore_ lo_ dblink
    """.split()  # noqa: SIM905
)

# Statement kinds that never belong in a read-only query, wherever they appear in the tree. DML covers Insert,
# Update, Delete, Merge and Copy; DDL covers Create; Command is anything sqlglot keeps as raw text (VACUUM,
# EXPLAIN, LOAD, CALL, SHOW...).
_WRITE_NODE_NAMES = """
    DML DDL Drop Alter TruncateTable Command Pragma Attach Detach Set Transaction Commit Rollback Use Analyze Grant
    Revoke Comment LoadData Kill Cache Uncache Refresh Declare Execute Describe Summarize Show
""".split()  # noqa: SIM905
_WRITE_NODES: tuple[type[exp.Expression], ...] = tuple(
    getattr(exp, name) for name in _WRITE_NODE_NAMES if isinstance(getattr(exp, name, None), type)
)
_QUERY_ROOTS: tuple[type[exp.Expression], ...] = (exp.Select, exp.SetOperation, exp.Subquery)

_SQLGLOT_DIALECTS = {"sqlite": "sqlite", "postgres": "postgres", "postgresql": "postgres"}


@dataclass(frozen=True)
class QueryResult:
    """The rows of a read-only query, as JSON-friendly values.

    Datetimes and dates become ISO strings, Decimal becomes float, blobs up to 64 bytes become hex (longer ones
    "<N bytes>"), JSON documents stay dicts/lists. Duplicate column names get a suffix (`id`, `id_2`).
    """

    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool  # True when the query had more than max_rows rows
    seconds: float


# ---------------------------------------------------------------------------------------------------------------
# Layer 1: the parser check


class _QuietUnsupportedSyntax(logging.Filter):
    """Drop sqlglot's log records (e.g. "... Falling back to parsing as a 'Command'") while this module parses.

    Those statements are refused with one line; the warning would add a second line on stderr. Other code's use
    of sqlglot, and other threads, still log as usual.
    """

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "active", False)


_quiet_sqlglot = _QuietUnsupportedSyntax()
logging.getLogger("sqlglot").addFilter(_quiet_sqlglot)


def check_readonly_sql(sql: str, dialect: str) -> str:
    """The single read-only statement in `sql`, normalised by sqlglot; or QueryRefusedError with a one-line reason.

    `dialect` is "sqlite" or "postgres" ("postgresql" also works; other sqlglot dialect names are parsed with that
    dialect). A trailing semicolon is accepted.

        >>> check_readonly_sql("select status, count(*) from record group by status;", "sqlite")
        'SELECT status, COUNT(*) FROM record GROUP BY status'
        >>> check_readonly_sql("SELECT 1; DROP TABLE record", "sqlite")
        Traceback (most recent call last):
        visextract.errors.QueryRefusedError: only one statement is allowed, found 2
    """
    read = _SQLGLOT_DIALECTS.get(dialect.lower(), dialect.lower())
    if not sql or not sql.strip():
        raise QueryRefusedError("empty query: write one SELECT statement")
    if len(sql) > MAX_SQL_CHARS:
        raise QueryRefusedError(f"query is too long ({len(sql)} characters, at most {MAX_SQL_CHARS})")
    tree = _parse_one(sql, read)
    _check_tree(tree, sql, read)
    try:
        statement = tree.sql(dialect=read, comments=False)
    except Exception as exc:  # sqlglot cannot write it back: refuse rather than run something else
        raise QueryRefusedError(_one_line(f"cannot normalise the SQL: {exc}")) from None
    # What runs is the regenerated text: parse it again so the statement executed is itself the one checked.
    _check_tree(_parse_one(statement, read), statement, read)
    return statement


def _parse_one(sql: str, read: str) -> exp.Expression:
    _quiet_sqlglot.local.active = True
    try:
        statements = [tree for tree in sqlglot.parse(sql, dialect=read) if tree is not None]
    except ParseError as exc:
        raise QueryRefusedError(_one_line(f"cannot parse the SQL: {_parse_error_reason(exc)}")) from None
    except RecursionError:
        raise QueryRefusedError("cannot parse the SQL: it is nested too deeply") from None
    except Exception as exc:  # TokenError, unknown dialect, or a sqlglot bug: never run what was not understood
        raise QueryRefusedError(_one_line(f"cannot parse the SQL: {exc}")) from None
    finally:
        _quiet_sqlglot.local.active = False
    if not statements:
        raise QueryRefusedError("empty query: write one SELECT statement")
    if len(statements) > 1:
        raise QueryRefusedError(f"only one statement is allowed, found {len(statements)}")
    return statements[0]


def _parse_error_reason(exc: ParseError) -> str:
    if exc.errors:
        first = exc.errors[0]
        description = str(first.get("description") or "invalid syntax")
        if description.startswith("Required keyword") or "<class " in description:
            description = "incomplete or invalid syntax"  # sqlglot names its internal classes here
        where = f" at line {first.get('line')}, column {first.get('col')}" if first.get("line") else ""
        near = str(first.get("highlight") or "").strip()
        return f"{description}{where}" + (f" near {near!r}" if near else "")
    return str(exc)


def _check_tree(tree: exp.Expression, sql: str, read: str) -> None:
    if not isinstance(tree, _QUERY_ROOTS):
        if isinstance(tree, (*_WRITE_NODES, exp.Values)):
            kind = _kind(tree)
        else:  # a statement sqlglot does not know, parsed as something else (REINDEX -> Column, RESET -> Alias)
            kind = _first_word(sql, read) or tree.key.upper()
        raise QueryRefusedError(f"only SELECT or WITH ... SELECT queries are allowed, not {kind}")
    for node in tree.walk():
        if isinstance(node, _WRITE_NODES):
            raise QueryRefusedError(f"only read-only queries are allowed: the query contains {_kind(node)}")
        if isinstance(node, exp.Into):
            raise QueryRefusedError("SELECT ... INTO creates a table: only read-only queries are allowed")
        if isinstance(node, exp.Lock):
            raise QueryRefusedError("SELECT ... FOR UPDATE/SHARE locks rows: only read-only queries are allowed")
        if isinstance(node, exp.Func):
            for name in _function_names(node):
                if is_denied_function(name):
                    raise QueryRefusedError(f"function {name}() is not allowed in read-only queries")


def _function_names(node: exp.Func) -> set[str]:
    if isinstance(node, exp.Anonymous):
        return {str(node.name).lower()}
    names = {node.key.lower(), node.sql_name().lower()}
    names.update(name.lower() for name in node.sql_names())
    return names


def is_denied_function(name: str) -> bool:
    """True for functions that write, sleep, signal other sessions, touch files or run SQL given as a string."""
    name = name.lower().strip('"`[]')
    return name in DENIED_FUNCTIONS or name.startswith(DENIED_FUNCTION_PREFIXES)


def _kind(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        return str(node.this or "a command").upper()
    if isinstance(node, exp.TruncateTable):
        return "TRUNCATE"
    if isinstance(node, exp.Transaction | exp.Commit | exp.Rollback):
        return "a transaction statement"
    return node.key.upper()


def _first_word(sql: str, read: str) -> str:
    try:
        tokens = sqlglot.Dialect.get_or_raise(read).tokenize(sql)
    except Exception:
        return ""
    return tokens[0].text.upper() if tokens else ""


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "unknown error"


# ---------------------------------------------------------------------------------------------------------------
# Layer 2: the read-only connection


@dataclass
class ReadOnlyConnection:
    """A pooled DB-API connection inside its read-only guards, as yielded by `readonly_connection`."""

    backend: str  # "sqlite" | "postgresql"
    dbapi: Any  # sqlite3.Connection or psycopg.Connection
    timeout_s: float
    timed_out: bool = field(default=False)


def readonly_connection(
    db_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> AbstractContextManager[ReadOnlyConnection]:
    """A context manager yielding a `ReadOnlyConnection`: the second layer on its own.

    Statements executed on `.dbapi` are NOT parser-checked; the connection itself refuses writes. Use
    `run_readonly_sql` for user or agent SQL.

        with readonly_connection("sqlite:///photos.db") as ro:
            ro.dbapi.execute("DELETE FROM record")  # sqlite3.OperationalError: not authorized
    """
    if timeout_s <= 0:
        raise ValueError("timeout_s must be positive")
    target = _target(db_url)
    if target.backend == "sqlite":
        return _sqlite_readonly(target, timeout_s)
    return _postgres_readonly(target, timeout_s)


@dataclass(frozen=True)
class _Target:
    backend: str
    key: str  # engine cache key
    url: URL
    path: Path | None = None


def _target(db_url: str) -> _Target:
    url = parse_db_url(db_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = _sqlite_path(url)
        try:
            stat = path.stat()
        except OSError:
            stat = None
        if stat is None or not path.is_file():
            raise StoreError(f"no database at {path}")
        # The inode is part of the key: a database deleted and created again gets fresh connections.
        return _Target("sqlite", f"sqlite:{path}:{stat.st_dev}:{stat.st_ino}", url, path)
    if backend == "postgresql":
        return _Target("postgresql", url.render_as_string(hide_password=False), url)
    raise StoreError(f"read-only SQL supports SQLite and PostgreSQL databases, not {backend!r}")


def _sqlite_path(url: URL) -> Path:
    database = url.database or ""
    if database.startswith("file:"):
        database = database.removeprefix("file:").split("?", 1)[0]
        if database.startswith("//"):  # file:///abs/path
            database = database[2:]
    if database in ("", ":memory:") or "mode=memory" in str(url):
        raise StoreError("no database to query: an in-memory SQLite database is empty to a new connection")
    return Path(database).expanduser().absolute()


_ENGINES: OrderedDict[str, Engine] = OrderedDict()
_ENGINES_LOCK = threading.Lock()
_MAX_ENGINES = 8


def _engine(target: _Target) -> Engine:
    """A pooled engine per database, so repeated queries skip connecting (and SQLite's schema parse)."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(target.key)
        if engine is not None:
            _ENGINES.move_to_end(target.key)
            return engine
        engine = _make_sqlite_engine(target) if target.backend == "sqlite" else _make_postgres_engine(target)
        _ENGINES[target.key] = engine
        while len(_ENGINES) > _MAX_ENGINES:
            _, old = _ENGINES.popitem(last=False)
            old.dispose()
        return engine


def dispose_readonly_engines() -> None:
    """Close every pooled read-only connection (tests, or before deleting a database file)."""
    with _ENGINES_LOCK:
        while _ENGINES:
            _, engine = _ENGINES.popitem()
            engine.dispose()


def _make_sqlite_engine(target: _Target) -> Engine:
    assert target.path is not None
    uri = f"{target.path.as_uri()}?mode=ro"

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        connection.setlimit(getattr(sqlite3, "SQLITE_LIMIT_ATTACHED", 7), 0)
        connection.execute("PRAGMA query_only = ON")
        return connection

    return create_engine("sqlite://", creator=connect, poolclass=QueuePool, pool_size=4, max_overflow=8)


def _make_postgres_engine(target: _Target) -> Engine:
    options = str(target.url.query.get("options") or "")
    options = f"{options} -c default_transaction_read_only=on".strip()
    try:
        return create_engine(target.url, pool_pre_ping=True, connect_args={"options": options})
    except NoSuchModuleError:
        raise StoreError(f"unsupported database URL: no SQLAlchemy dialect for {target.url.drivername}") from None
    except ModuleNotFoundError as exc:
        raise StoreError(
            f"database driver {exc.name!r} is not installed: for PostgreSQL, pip install 'visextract[postgres]'"
        ) from None


def _checkout(target: _Target) -> Any:
    try:
        return _engine(target).raw_connection()
    except (DBAPIError, *_dbapi_errors(target.backend)) as exc:
        error = exc.orig if isinstance(exc, DBAPIError) else exc
        lines = str(error).splitlines()
        reason = _one_line(lines[0] if lines else type(error).__name__)
        where = target.path if target.path is not None else target.url.render_as_string(hide_password=True)
        raise StoreError(f"cannot open the database at {where}: {reason}") from None


# Read-only pragmas, reachable only through their table-valued functions: SELECT * FROM pragma_table_info('record')
_SQLITE_READ_PRAGMAS = frozenset(
    """
    table_info table_xinfo table_list index_list index_info index_xinfo foreign_key_list function_list module_list
    pragma_list collation_list database_list compile_options
    """.split()  # noqa: SIM905
)
_SQLITE_SELECT = sqlite3.SQLITE_SELECT
_SQLITE_READ = sqlite3.SQLITE_READ
_SQLITE_FUNCTION = sqlite3.SQLITE_FUNCTION
_SQLITE_RECURSIVE = getattr(sqlite3, "SQLITE_RECURSIVE", 33)
_SQLITE_PRAGMA = sqlite3.SQLITE_PRAGMA
_SQLITE_UPDATE = sqlite3.SQLITE_UPDATE


def _sqlite_authorizer(action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
    """Allow reads only; everything else (writes, ATTACH, most PRAGMAs, transactions, temp tables) is denied."""
    if action in (_SQLITE_SELECT, _SQLITE_READ, _SQLITE_RECURSIVE):
        return sqlite3.SQLITE_OK
    if action == _SQLITE_FUNCTION:
        return sqlite3.SQLITE_DENY if is_denied_function(arg2 or "") else sqlite3.SQLITE_OK
    if action == _SQLITE_PRAGMA:
        return sqlite3.SQLITE_OK if (arg1 or "").lower() in _SQLITE_READ_PRAGMAS else sqlite3.SQLITE_DENY
    if action == _SQLITE_UPDATE and arg1 in ("sqlite_master", "sqlite_temp_master"):
        # SQLite asks this when it registers an eponymous virtual table (json_each, pragma_*) for a SELECT.
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


@contextmanager
def _sqlite_readonly(target: _Target, timeout_s: float) -> Iterator[ReadOnlyConnection]:
    pooled = _checkout(target)
    connection: sqlite3.Connection = pooled.driver_connection
    state = ReadOnlyConnection("sqlite", connection, timeout_s)
    deadline = time.monotonic() + timeout_s

    def progress() -> int:
        if time.monotonic() > deadline:
            state.timed_out = True
            return 1  # non-zero aborts the running statement with "interrupted"
        return 0

    try:
        connection.execute(f"PRAGMA busy_timeout = {max(1, int(timeout_s * 1000))}")
        connection.set_progress_handler(progress, 1000)
        connection.set_authorizer(_sqlite_authorizer)
        yield state
    finally:
        try:
            connection.set_authorizer(None)
            connection.set_progress_handler(None, 0)
            if connection.in_transaction:
                connection.rollback()
        except sqlite3.Error:
            pooled.invalidate()
        pooled.close()


@contextmanager
def _postgres_readonly(target: _Target, timeout_s: float) -> Iterator[ReadOnlyConnection]:
    pooled = _checkout(target)
    connection = pooled.driver_connection
    state = ReadOnlyConnection("postgresql", connection, timeout_s)
    try:
        connection.rollback()  # start clean: the next statement opens the read-only transaction
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION READ ONLY")
            cursor.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}")
            # After the first query takes a snapshot, PostgreSQL refuses to switch the transaction back to
            # read-write ("transaction read-write mode must be set before any query").
            cursor.execute("SELECT 1")
        yield state
    finally:
        try:
            connection.rollback()  # never commit anything
        except Exception:
            pooled.invalidate()
        pooled.close()


# ---------------------------------------------------------------------------------------------------------------
# Running a query


def run_readonly_sql(
    db_url: str, sql: str, *, max_rows: int = DEFAULT_MAX_ROWS, timeout_s: float = DEFAULT_TIMEOUT_S
) -> QueryResult:
    """Run one read-only SELECT and return at most `max_rows` rows, or raise QueryRefusedError / StoreError.

    `db_url` is a SQLAlchemy URL (`sqlite:///photos.db`, `postgresql+psycopg://user@host/db`) or a SQLite path.
    A SQLite file that does not exist is not created: StoreError "no database at ...".

        >>> result = run_readonly_sql("sqlite:///photos.db", "SELECT path FROM record", max_rows=2)
        >>> result.rows, result.truncated
        ([{'path': 'a.jpg'}, {'path': 'b.jpg'}], True)
    """
    if max_rows < 0:
        raise ValueError("max_rows must be 0 or more")
    if timeout_s <= 0:
        raise ValueError("timeout_s must be positive")
    started = time.perf_counter()
    url = parse_db_url(db_url)
    statement = check_readonly_sql(sql, url.get_backend_name())
    return _execute_statement(db_url, statement, max_rows=max_rows, timeout_s=timeout_s, started=started)


def _execute_statement(
    db_url: str, statement: str, *, max_rows: int, timeout_s: float, started: float | None = None
) -> QueryResult:
    """Run `statement` on a read-only connection WITHOUT the parser check (callers check it first)."""
    started = time.perf_counter() if started is None else started
    with readonly_connection(db_url, timeout_s=timeout_s) as ro:
        errors = _dbapi_errors(ro.backend)
        # PostgreSQL: a server-side cursor (DECLARE ... CURSOR FOR accepts only a query; FETCH reads only max_rows+1)
        cursor = ro.dbapi.cursor(name="visextract_readonly") if ro.backend == "postgresql" else ro.dbapi.cursor()
        try:
            cursor.execute(statement)
            description = cursor.description or []
            fetched = cursor.fetchmany(max_rows + 1)
        except errors as exc:
            raise _refusal(ro, exc) from None
        finally:
            with suppress(*errors):
                cursor.close()
    columns = _unique_columns([str(column[0]) for column in description])
    rows = [dict(zip(columns, (_jsonable(value) for value in row), strict=False)) for row in fetched[:max_rows]]
    return QueryResult(columns, rows, len(fetched) > max_rows, round(time.perf_counter() - started, 6))


def _dbapi_errors(backend: str) -> tuple[type[BaseException], ...]:
    if backend == "postgresql":
        import psycopg

        return (psycopg.Error,)
    return (sqlite3.Error, sqlite3.Warning)


def _refusal(ro: ReadOnlyConnection, exc: BaseException) -> QueryRefusedError:
    if ro.timed_out or _is_statement_timeout(exc):
        return QueryRefusedError(f"query took longer than {ro.timeout_s:g} s and was stopped")
    diag = getattr(exc, "diag", None)
    message = getattr(diag, "message_primary", None) or (str(exc).splitlines() or [""])[0] or type(exc).__name__
    if message == "not authorized":
        message = "not authorized on the read-only connection"
    return QueryRefusedError(_one_line(f"the database refused the query: {message}"))


def _is_statement_timeout(exc: BaseException) -> bool:
    return type(exc).__name__ == "QueryCanceled" or getattr(exc, "sqlstate", None) == "57014"


def _unique_columns(names: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    unique: list[str] = []
    for name in names:
        candidate, n = name, 1
        while candidate in seen:
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate)
        unique.append(candidate)
    return unique


def _jsonable(value: Any) -> Any:
    """A value `json.dumps` can write, without losing what matters for reading the result."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        number = float(value)
        return number if math.isfinite(number) else str(value)
    if isinstance(value, datetime | date | time_of_day):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        blob = bytes(value)
        return blob.hex() if len(blob) <= MAX_BLOB_HEX_BYTES else f"<{len(blob)} bytes>"
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(item) for item in value]
    return str(value)  # UUID, IP addresses, ranges...


RISKY_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program", "pg_signal_backend")
_warned_urls: set[str] = set()
log = logging.getLogger("visextract")


def risky_privileges(db_url: str) -> list[str]:
    """What the connected PostgreSQL role can do that a read-only transaction does not stop (superuser, or
    membership in a server-file/program/signal role); empty for SQLite and for plain roles."""
    target = _target(db_url)
    if target.backend != "postgresql":
        return []
    with _engine(target).connect() as connection:
        superuser = connection.exec_driver_sql("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").scalar()
        if superuser:  # holds every role
            return ["superuser"]
        held = [
            role
            for role in RISKY_ROLES
            if connection.exec_driver_sql("SELECT pg_has_role(current_user, %s, 'MEMBER')", (role,)).scalar()
        ]
    return held


def warn_about_privileges(db_url: str) -> str | None:
    """Once per database URL per process: log a warning when the role can do more than read (see
    DESIGN.md, "Query safety"), and return it. Read surfaces (sql, ask, chat, serve, mcp) call this at start."""
    if db_url in _warned_urls:
        return None
    _warned_urls.add(db_url)
    try:
        rights = risky_privileges(db_url)
    except Exception as exc:  # the check is advice; the query itself reports real connection problems
        log.debug("could not check the role's privileges: %s", exc)
        return None
    if not rights:
        return None
    message = (
        f"the database role is {' and '.join(rights)}: a read-only transaction does not stop those rights, only "
        "the function deny-list does; use a role with just pg_read_all_data for sql/ask/serve/mcp"
    )
    log.warning(message)
    return message
