"""A small real library for the review and web tests, built once per session and copied per test.

- `photos/`: astronaut (one face), chelsea (a cat), coffee, a scanned page, a rocket saved under a file
  name that is HTML, and a file that is not an image; extracted offline with the scene schema;
- `cars/`: coffee and chelsea (needs_review: a scripted LLM calls them cars) and a motorcycle (ok: the
  LLM answers nulls), extracted with the vehicle schema against the OpenAI-compatible test server.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import save_sample
from openai_test_server import OpenAITestServer

import visextract as vx
from visextract.config import Settings

XSS_NAME = '"><img src=x onerror=alert(1)>.jpg'
CAR = {"type": "car", "license": "KA 01 AB 1234", "make": "Toyota", "model": "Corolla", "color": "brown"}
NOTHING = {"type": None, "license": None, "make": None, "model": None, "color": None}
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@dataclass(frozen=True)
class Library:
    folder: Path
    db_file: Path

    @property
    def photos(self) -> Path:
        return self.folder / "photos"

    @property
    def cars(self) -> Path:
        return self.folder / "cars"

    def copy(self, target: Path) -> str:
        """A fresh copy of the database (and the images) under `target`; returns its URL.
        The images are copied too, so a test may move or delete them."""
        shutil.copytree(self.folder, target, ignore=shutil.ignore_patterns("*.db*"), dirs_exist_ok=True)
        db_file = target / "library.db"
        with sqlite3.connect(self.db_file) as source, sqlite3.connect(db_file) as copy:
            source.backup(copy)
        rewrite_paths(db_file, str(self.folder), str(target))
        return f"sqlite:///{db_file}"


def rewrite_paths(db_file: Path, old: str, new: str) -> None:
    """Point a copied database at the copied images (paths are stored absolute)."""
    with sqlite3.connect(db_file) as connection:
        for table, column in (("image_path", "path"), ("record", "path"), ("llm_call", "path")):
            connection.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)", (old, new))


def build_library(folder: Path) -> Library:
    photos = folder / "photos"
    photos.mkdir(parents=True)
    for name, file in (("astronaut", "astronaut.png"), ("chelsea", "chelsea.png"), ("coffee", "coffee.jpg")):
        save_sample(name, photos / file)
    save_sample("page", photos / "page.png")
    save_sample("rocket", photos / XSS_NAME)
    (photos / "broken.jpg").write_bytes(b"this is not a JPEG at all")
    db_file = folder / "library.db"
    db = f"sqlite:///{db_file}"
    summary = vx.Extractor(db=db, llm=None).run(photos)
    assert (summary.processed, summary.failed) == (5, 1)

    cars = folder / "cars"
    cars.mkdir()
    shutil.copy(photos / "coffee.jpg", cars / "coffee.jpg")
    shutil.copy(photos / "chelsea.png", cars / "chelsea.png")
    shutil.copy(EXAMPLES / "motorcycle.jpg", cars / "motorcycle.jpg")
    with OpenAITestServer(prompt_tokens=800) as server, pytest.MonkeyPatch.context() as env:
        env.setenv("OPENAI_BASE_URL", server.base_url)
        env.setenv("OPENAI_API_KEY", "test-key")
        settings = Settings(db=db, llm_timeout=5, llm_retry_initial_wait=0.05)
        for file, reply in (("motorcycle.jpg", NOTHING), ("coffee.jpg", CAR), ("chelsea.png", CAR)):
            server.reply_json(reply, completion_tokens=64)
            ex = vx.Extractor(schema="vehicle", llm="openai", llm_model="gpt-4o-mini", settings=settings)
            ex.run(cars / file)
    return Library(folder, db_file)
