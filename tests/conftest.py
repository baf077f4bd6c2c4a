"""Shared fixtures: real photos from scikit-image / scikit-learn, temporary databases, the CLI runner."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("VISEXTRACT_DB", None)
# search indexes of test databases on PostgreSQL would otherwise go to ~/.cache/visextract
os.environ["VISEXTRACT_INDEX_DIR"] = tempfile.mkdtemp(prefix="visextract-test-indexes-")

from PIL import Image
from typer.testing import CliRunner

from visextract.cli import app


@pytest.fixture(scope="session", autouse=True)
def temporary_index_folder() -> Iterator[None]:
    """Remove the tests' search indexes at the end."""
    yield
    shutil.rmtree(os.environ["VISEXTRACT_INDEX_DIR"], ignore_errors=True)


def save_sample(name: str, path: Path) -> Path:
    """Save one of scikit-image's bundled real photos (astronaut, chelsea, coffee, page, rocket...)."""
    import skimage.data

    Image.fromarray(getattr(skimage.data, name)()).save(path)
    return path


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of real photos: astronaut (a face), chelsea (a cat), coffee, a scanned page, a rocket."""
    folder = tmp_path_factory.mktemp("photos")
    save_sample("astronaut", folder / "astronaut.png")
    save_sample("chelsea", folder / "chelsea.png")
    save_sample("coffee", folder / "coffee.jpg")
    save_sample("page", folder / "page.png")
    (folder / "nested").mkdir()
    save_sample("rocket", folder / "nested" / "rocket.jpg")
    return folder


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def cli() -> Callable[..., object]:
    """Run `visextract ARGS...` in-process; returns the click Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> object:
        return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)

    return invoke


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The PostgreSQL server of VISEXTRACT_TEST_POSTGRES_URL (`make test` starts one); tests skip without one,
    except under CI, where they fail."""
    url = os.environ.get("VISEXTRACT_TEST_POSTGRES_URL")
    if not url and os.environ.get("CI"):
        pytest.fail("CI runs every PostgreSQL test, but VISEXTRACT_TEST_POSTGRES_URL is not set: use .ci/with-postgres")
    if not url:
        pytest.skip("set VISEXTRACT_TEST_POSTGRES_URL, or run through .ci/with-postgres (as make test does)")
    return url


def new_postgres_database(server_url: str) -> tuple[str, Callable[[], None]]:
    """A fresh, empty database on the test server: (its URL, a function that drops it)."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(server_url)
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"vx_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        from visextract.query import open_store
        from visextract.store.readonly_sql import dispose_readonly_engines

        open_store.cache_clear()
        dispose_readonly_engines()
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return base.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new database URL, once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'any.db'}"
    url, drop = new_postgres_database(request.getfixturevalue("postgres_server"))
    request.addfinalizer(drop)
    return url


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    """A scriptable OpenAI-compatible server on 127.0.0.1 (800 prompt tokens per call), used via
    OPENAI_BASE_URL / OPENAI_API_KEY exactly as a real server would be."""
    from openai_test_server import OpenAITestServer

    with OpenAITestServer(prompt_tokens=800) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        yield server


@pytest.fixture(scope="session")
def web_library(tmp_path_factory: pytest.TempPathFactory):
    """Real photos extracted offline plus vehicle records from a scripted LLM (see web_library.py);
    `web_library.copy(tmp_path)` gives a test its own database."""
    from web_library import build_library

    return build_library(tmp_path_factory.mktemp("web-library"))


def database_fingerprint(db: str) -> str:
    """A hash of a SQLite database's table definitions and every row: equal before and after means nothing
    in the database changed."""
    digest = hashlib.sha256()
    with sqlite3.connect(db.removeprefix("sqlite:///")) as connection:
        for name, sql in connection.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall():
            digest.update(f"{name}:{sql}".encode())
            if sql and sql.startswith("CREATE TABLE"):
                for row in connection.execute(f'SELECT * FROM "{name}" ORDER BY 1'):
                    digest.update(repr(row).encode())
    return digest.hexdigest()
