"""Synthetic image rows for the benchmarks that need 100k records (SQLAlchemy Core inserts, fast)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import Connection


def sha256_of(i: int) -> str:
    """Image i's made-up content hash."""
    return f"{i:064x}"


def insert_images(
    connection: Connection, ids: Iterable[int], now: datetime, path_of: Callable[[int], str] | None = None
) -> None:
    """Rows in `image` (640x480 JPEGs) for these ids, and in `image_path` when `path_of` names their files."""
    from visextract.store.tables import ImagePathRow, ImageRow

    ids = list(ids)
    connection.execute(
        ImageRow.__table__.insert(),
        [{"id": i, "sha256": sha256_of(i), "size_bytes": 1000, "width": 640, "height": 480, "format": "JPEG",
          "exif": {}, "created_at": now} for i in ids],
    )  # fmt: skip
    if path_of is not None:
        connection.execute(
            ImagePathRow.__table__.insert(),
            [{"path": path_of(i), "image_id": i, "sha256": sha256_of(i), "seen_at": now} for i in ids],
        )
