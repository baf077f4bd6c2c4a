"""Errors a user can cause and fix. The CLI prints them as one line, never a traceback.

Internal bugs are not wrapped: they still raise with a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_surface: ContextVar[str] = ContextVar("visextract_surface", default="python")


@contextmanager
def speaking_cli() -> Iterator[None]:
    """Inside, error messages name options as command-line flags (`--max-reasks`); the CLI wraps commands."""
    token = _surface.set("cli")
    try:
        yield
    finally:
        _surface.reset(token)


def option_name(name: str) -> str:
    """An option as the user wrote it: `max_reasks` in Python, `--max-reasks` on the command line."""
    return "--" + name.replace("_", "-") if _surface.get() == "cli" else name


class VisextractError(Exception):
    """A problem with the user's input or setup (bad path, schema, model, database URL...)."""

    exit_code = 1


class UsageError(VisextractError):
    """A bad option or combination of options."""

    exit_code = 2


class ModelUnavailableError(VisextractError):
    """A tool's model cannot be loaded (not downloaded, bad path, wrong architecture)."""


class SchemaLoadError(VisextractError):
    """A schema name, file or class that cannot be turned into a record schema."""


class StoreError(VisextractError):
    """The database URL or the database itself cannot be used."""


class QueryRefusedError(VisextractError):
    """A query that is not a single read-only SELECT, or that the database refused."""
