"""DESIGN.md, "Query safety": on PostgreSQL, read surfaces warn once at start when the connected role can do
more than a read-only transaction stops (superuser, server files, programs, signals)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy.engine import make_url

import visextract as vx
from visextract.store.readonly_sql import _warned_urls, risky_privileges

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_database(postgres_server, photos):
    from conftest import new_postgres_database

    url, drop = new_postgres_database(postgres_server)
    vx.Extractor(db=url, tools=["colors"], llm=None).run(photos / "coffee.jpg")
    yield url
    drop()


def role_url(database_url: str, *grants: str) -> str:
    """A new login role with only `grants` (e.g. pg_read_all_data), and the URL that connects as it."""
    name = f"vx_role_{uuid.uuid4().hex[:8]}"
    admin = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE ROLE {name} LOGIN")
        for grant in grants:
            connection.execute(f"GRANT {grant} TO {name}")
    return make_url(database_url).set(username=name).render_as_string(hide_password=False)


def test_a_superuser_gets_one_warning_from_sql(pg_database, cli):
    _warned_urls.clear()
    assert risky_privileges(pg_database) == ["superuser"]  # the test server's postgres role
    first = cli("sql", "SELECT count(*) AS n FROM scene", "--db", pg_database, "--format", "json")
    assert first.exit_code == 0 and first.stdout.strip() == '[{"n": 1}]'
    assert "superuser" in first.stderr and "pg_read_all_data" in first.stderr
    again = cli("sql", "SELECT 1 AS one", "--db", pg_database, "--format", "json")
    assert "superuser" not in again.stderr  # once per process


def test_a_role_that_can_read_server_files_is_named(pg_database):
    url = role_url(pg_database, "pg_read_all_data", "pg_read_server_files", "pg_signal_backend")
    assert risky_privileges(url) == ["pg_read_server_files", "pg_signal_backend"]


def test_a_read_only_role_gets_no_warning(pg_database, cli):
    url = role_url(pg_database, "pg_read_all_data")
    _warned_urls.clear()
    assert risky_privileges(url) == []
    result = cli("sql", "SELECT count(*) AS n FROM scene", "--db", url, "--format", "json")
    assert result.exit_code == 0 and result.stdout.strip() == '[{"n": 1}]' and result.stderr == ""


def test_sqlite_has_no_roles(db_url, photos):
    vx.Extractor(db=db_url, tools=["colors"], llm=None).run(photos / "coffee.jpg")
    assert risky_privileges(db_url) == []
