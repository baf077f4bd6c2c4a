"""Schema creation and upgrades: small ordered functions, applied once each, recorded in `schema_migration`.

A new database gets the current tables and is stamped with every migration. An older database gets the
migrations it lacks, in order, inside one write transaction (so concurrent first runs do not race).
To change the tables, edit `tables.py` and append a function here that upgrades an existing database.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Engine, inspect, text
from sqlmodel import SQLModel

from visextract.store import tables  # registers the tables on SQLModel.metadata


def _create_tables(connection: Connection) -> None:
    SQLModel.metadata.create_all(connection, checkfirst=True)


def _add_llm_call_log(connection: Connection) -> None:
    tables.LlmCallRow.__table__.create(connection, checkfirst=True)  # type: ignore[attr-defined]


def _add_record_embeddings(connection: Connection) -> None:
    tables.RecordEmbeddingRow.__table__.create(connection, checkfirst=True)  # type: ignore[attr-defined]


def _add_image_path_sha256(connection: Connection) -> None:
    if "sha256" not in {column["name"] for column in inspect(connection).get_columns("image_path")}:
        connection.exec_driver_sql("ALTER TABLE image_path ADD COLUMN sha256 VARCHAR")
    connection.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_image_path_sha256 ON image_path (sha256)")
    connection.exec_driver_sql(
        "UPDATE image_path SET sha256 = (SELECT sha256 FROM image WHERE image.id = image_path.image_id)"
    )


def _add_presence_versions_reviews_heartbeats(connection: Connection) -> None:
    """Paths can go missing, records have versions and reviews, runs renew a heartbeat. Records that an
    older version left claiming a path whose file now holds other content stop being current."""
    from visextract.store.paths import reconcile_records

    _add_columns(connection, "image_path", {"seen_run_id": "INTEGER", "missing_at": "TIMESTAMP"})
    _add_columns(connection, "run", {"heartbeat_at": "TIMESTAMP"})
    _add_columns(
        connection,
        "record",
        {"version": "INTEGER NOT NULL DEFAULT 1", "review": "JSON", "missing": "BOOLEAN NOT NULL DEFAULT false"},
    )
    connection.exec_driver_sql("CREATE INDEX IF NOT EXISTS record_by_subject ON record (subject, schema_name)")
    connection.exec_driver_sql(
        "UPDATE record SET version = (SELECT count(*) FROM record older"
        " WHERE older.subject = record.subject AND older.schema_name = record.schema_name AND older.id <= record.id)"
    )
    reconcile_records(connection)


def _add_columns(connection: Connection, table: str, columns: dict[str, str]) -> None:
    existing = {column["name"] for column in inspect(connection).get_columns(table)}
    for name, sql_type in columns.items():
        if name not in existing:
            connection.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")


MIGRATIONS: list[tuple[str, Callable[[Connection], None]]] = [
    ("create tables", _create_tables),
    ("add llm_call log", _add_llm_call_log),
    ("add record embeddings", _add_record_embeddings),
    ("add image_path.sha256", _add_image_path_sha256),
    ("add path presence, record versions and reviews, run heartbeats", _add_presence_versions_reviews_heartbeats),
]

_PG_LOCK_ID = 0x76697378  # "visx"


def migrate(engine: Engine) -> list[int]:
    """Bring the database at `engine` up to the current table layout; returns the migrations it applied to
    an existing database (empty for a new one, or one already current)."""
    with engine.execution_options(write=True).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
        connection.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS schema_migration "
            "(version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
            " applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"
        )
        applied = {row[0] for row in connection.exec_driver_sql("SELECT version FROM schema_migration")}
        upgraded: list[int] = []
        if not applied and not inspect(connection).has_table("record"):
            _create_tables(connection)
            applied_now: list[int] = list(range(1, len(MIGRATIONS) + 1))
        else:
            applied_now = upgraded
            for version, (_name, upgrade) in enumerate(MIGRATIONS, start=1):
                if version not in applied:
                    upgrade(connection)
                    applied_now.append(version)
        for version in applied_now:
            connection.execute(
                text("INSERT INTO schema_migration (version, name) VALUES (:v, :n)"),
                {"v": version, "n": MIGRATIONS[version - 1][0]},
            )
    return upgraded


def current_version(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.exec_driver_sql("SELECT COALESCE(MAX(version), 0) FROM schema_migration").scalar_one()
