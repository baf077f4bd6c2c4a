"""Shared fixtures: real photos from scikit-image / scikit-learn, temporary databases, the CLI runner."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("VISEXTRACT_DB", None)

from PIL import Image
from typer.testing import CliRunner

from visextract.cli import app


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
