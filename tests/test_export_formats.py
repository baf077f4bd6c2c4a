"""`export --format parquet`: the jsonl export's columns, rows and values, with `data`, `provenance`, `tools`,
`llm` and `review` as nested Arrow types that pyarrow and DuckDB query inside; clashing or unfit values as JSON
text, never dropped."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel
from sqlalchemy import text

import visextract as vx
from visextract.store import Store

COLUMNS = [
    "path", "sha256", "width", "height", "status", "error", "schema", "schema_version",
    "data", "provenance", "tools", "llm", "version", "review",
]  # fmt: skip


def jsonl_export(cli, db: str, *args: str) -> list[dict[str, Any]]:
    result = cli("export", "--format", "jsonl", "--db", db, *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def parquet_export(cli, db: str, target: Path, *args: str) -> pa.Table:
    result = cli("export", "--format", "parquet", "-o", target, "--db", db, *args)
    assert result.exit_code == 0, result.output
    assert "does not fit" not in result.stderr  # types come from the schemas, not from a rewrite
    return pq.read_table(target)


def is_json(kind: pa.DataType) -> bool:
    return getattr(kind, "extension_name", None) == "arrow.json"


def as_exported(value: Any, kind: pa.DataType) -> Any:
    """A value read back from Parquet in the jsonl export's terms: JSON text decoded, maps as dicts, and the
    keys a struct has but the record did not (None) left out."""
    if value is None:
        return None
    if is_json(kind):
        return json.loads(value)
    if pa.types.is_struct(kind):
        fields = {field.name: as_exported(value[field.name], field.type) for field in kind}
        return {name: item for name, item in fields.items() if item is not None}
    if pa.types.is_map(kind):
        return {key: as_exported(item, kind.item_type) for key, item in value}
    if pa.types.is_list(kind):
        return [as_exported(item, kind.value_type) for item in value]
    return value


def without_nones(value: Any) -> Any:
    """The jsonl value with None-valued keys left out (a struct cannot tell an absent key from a null)."""
    if isinstance(value, dict):
        return {key: without_nones(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nones(item) for item in value]
    return value


def read_back(table: pa.Table) -> list[dict[str, Any]]:
    """The rows as the jsonl export has them, None-valued keys left out (compare with `without_nones`)."""
    return [as_exported(row, pa.struct(list(table.schema))) for row in table.to_pylist()]


@pytest.fixture(scope="module")
def photos_db(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The real photos plus an unreadable file, through the default tools (classifier, faces, ocr, colors)."""
    folder = tmp_path_factory.mktemp("export")
    db = f"sqlite:///{folder / 'photos.db'}"
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    vx.Extractor(db=db, llm=None).run(photos, folder / "broken.jpg")
    return db


def test_parquet_holds_the_jsonl_export_with_nested_types(photos_db, cli, tmp_path):
    expected = jsonl_export(cli, photos_db)
    table = parquet_export(cli, photos_db, tmp_path / "records.parquet")
    assert table.column_names == COLUMNS == list(expected[0])
    assert table.num_rows == len(expected) == 6
    assert read_back(table) == [without_nones(record) for record in expected]  # same rows, same order, same values

    schema = table.schema
    data = schema.field("data").type
    assert pa.types.is_struct(data) and [f.name for f in data] == ["labels", "face_count", "text", "dominant_colors"]
    assert data.field("labels").type == pa.list_(pa.string()) and data.field("face_count").type == pa.int64()
    tools = schema.field("tools").type
    assert pa.types.is_struct(tools) and {"classifier", "faces", "ocr", "colors"} <= {f.name for f in tools}
    assert tools.field("classifier").type == pa.list_(pa.struct([("label", pa.string()), ("score", pa.float64())]))
    ocr_line = tools.field("ocr").type.value_type
    assert pa.types.is_struct(ocr_line) and ocr_line.field("box").type == pa.list_(pa.float64())
    face_count = schema.field("provenance").type.field("face_count").type
    assert pa.types.is_struct(face_count) and pa.types.is_list(face_count.field("evidence").type)
    assert pa.types.is_boolean(face_count.field("verified").type)
    assert pa.types.is_struct(schema.field("llm").type) and pa.types.is_struct(schema.field("review").type)
    assert not [f.name for f in schema if is_json(f.type)]  # nothing fell back to JSON text


def test_duckdb_queries_inside_the_nested_columns(photos_db, cli, tmp_path):
    expected = {record["path"]: record for record in jsonl_export(cli, photos_db) if record["status"] == "ok"}
    target = tmp_path / "records.parquet"
    parquet_export(cli, photos_db, target)
    rows = duckdb.connect().execute(
        """
        SELECT path, data.face_count, tools.classifier[1].label, len(tools.ocr),
               provenance.face_count.source, provenance.face_count.evidence[1].box
        FROM read_parquet(?) WHERE status = 'ok' ORDER BY path
        """,
        [str(target)],
    )
    found = {row[0]: row[1:] for row in rows.fetchall()}
    assert found == {
        path: (
            r["data"]["face_count"],
            r["tools"]["classifier"][0]["label"],
            len(r["tools"]["ocr"]),
            r["provenance"]["face_count"]["source"],
            (r["provenance"]["face_count"]["evidence"] or [{}])[0].get("box"),
        )
        for path, r in expected.items()
    }
    (astronaut,) = [values for path, values in found.items() if path.endswith("astronaut.png")]
    assert astronaut[0] == 1 and len(astronaut[4]) == 4  # one face, with its box


def test_rows_are_written_in_batches_in_export_order(photos_db, cli, tmp_path, monkeypatch):
    from visextract.store import parquet

    monkeypatch.setattr(parquet, "BATCH_ROWS", 4)
    table = parquet_export(cli, photos_db, tmp_path / "batched.parquet")
    assert pq.ParquetFile(tmp_path / "batched.parquet").metadata.num_row_groups == 2  # 6 records: 4 + 2
    assert [row["path"] for row in table.to_pylist()] == [r["path"] for r in jsonl_export(cli, photos_db)]


def test_all_versions_adds_the_history_columns(any_db, photos, cli, tmp_path):
    run = ("run", photos / "coffee.jpg", "--db", any_db, "--tools", "colors")
    assert cli(*run).exit_code == 0 and cli(*run, "--force").exit_code == 0
    expected = jsonl_export(cli, any_db, "--all-versions")
    table = parquet_export(cli, any_db, tmp_path / "history.parquet", "--all-versions")
    assert table.column_names == [*COLUMNS, "record_id", "is_current", "missing", "created_at"] == list(expected[0])
    assert table.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    rows = read_back(table)
    for row, record in zip(rows, expected, strict=True):
        created = datetime.fromisoformat(record.pop("created_at"))
        assert row.pop("created_at") == (created if created.tzinfo else created.replace(tzinfo=UTC))
        assert row == without_nones(record)
    assert [(r["version"], r["is_current"]) for r in rows] == [(1, False), (2, True)]


def test_an_empty_export_is_a_valid_file(tmp_path, cli):
    db = f"sqlite:///{tmp_path / 'empty.db'}"
    Store(db).close()
    table = parquet_export(cli, db, tmp_path / "empty.parquet")
    assert table.num_rows == 0 and table.column_names == COLUMNS


# ----------------------------------------------------------------------------------------------------------------
# Several schemas exported together: one data struct; a clash makes that field JSON text


class Size(BaseModel):
    width: int
    height: int


class Shelf(BaseModel):
    kind: Literal["mug", "cup", "plate"]
    count: int
    size: Size
    price: float | None = None
    stock: dict[str, int] = {}
    code: int | str  # no single Arrow type: JSON text


class Depth(BaseModel):
    width: int
    depth: float


class Crate(BaseModel):
    count: str  # an integer in Shelf: they clash
    size: Depth  # a struct in both: merged
    labels: list[str] = []


SHELF = {"kind": "mug", "count": 2, "size": {"width": 8, "height": 10}, "price": 4.5, "stock": {"a": 1}, "code": 7}
CRATE = {"count": "two", "size": {"width": 30, "depth": 12.5}, "labels": ["fragile"]}


def test_schemas_exported_together_merge_and_clashes_become_json(server, photos, tmp_path, cli):
    db = f"sqlite:///{tmp_path / 'mixed.db'}"
    server.reply_json(SHELF)
    server.reply_json(CRATE)
    for schema, photo in ((Shelf, "coffee.jpg"), (Crate, "chelsea.png")):
        vx.Extractor(db=db, schema=schema, tools=["colors"], llm="openai").run(photos / photo)
    expected = jsonl_export(cli, db)
    assert [(r["schema"], r["status"]) for r in expected] == [("crate", "ok"), ("shelf", "ok")]
    table = parquet_export(cli, db, tmp_path / "mixed.parquet")
    assert read_back(table) == [without_nones(record) for record in expected]

    data = table.schema.field("data").type
    assert [f.name for f in data] == ["kind", "count", "size", "price", "stock", "code", "labels"]
    assert data.field("kind").type == pa.string() and data.field("price").type == pa.float64()
    assert is_json(data.field("count").type)  # integer in shelf, string in crate
    assert is_json(data.field("code").type)  # int | str
    assert data.field("size").type == pa.struct(
        [("width", pa.int64()), ("height", pa.int64()), ("depth", pa.float64())]
    )
    assert data.field("stock").type == pa.map_(pa.string(), pa.int64())
    assert pa.types.is_struct(table.schema.field("provenance").type.field("count").type)

    rows = duckdb.connect().execute(
        "SELECT schema, data.size.width, data.size.depth, data.stock['a'], data.count::VARCHAR "
        "FROM read_parquet(?) ORDER BY schema",
        [str(tmp_path / "mixed.parquet")],
    )
    assert rows.fetchall() == [("crate", 30, 12.5, None, '"two"'), ("shelf", 8, None, 1, "2")]


def copy_of(db: str, target: Path) -> str:
    with sqlite3.connect(db.removeprefix("sqlite:///")) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    return f"sqlite:///{target}"


def test_a_review_is_a_struct(photos_db, photos, cli, tmp_path):
    db = copy_of(photos_db, tmp_path / "reviewed.db")
    vx.review(str(photos / "astronaut.png"), {"face_count": 2}, by="ann", db=db)
    expected = jsonl_export(cli, db)
    (reviewed,) = [record for record in expected if record["review"]]
    assert reviewed["review"]["fields"] == ["face_count"] and reviewed["version"] == 2
    table = parquet_export(cli, db, tmp_path / "reviewed.parquet")
    assert read_back(table) == [without_nones(record) for record in expected]
    names = pa.list_(pa.string())
    assert table.schema.field("review").type == pa.struct(
        [("by", pa.string()), ("at", pa.string()), ("fields", names), ("accepted", names)]
    )
    rows = duckdb.connect().execute(
        "SELECT review.by, review.fields[1], data.face_count, provenance.face_count.source "
        "FROM read_parquet(?) WHERE review IS NOT NULL",
        [str(tmp_path / "reviewed.parquet")],
    )
    assert rows.fetchall() == [("ann", "face_count", 2, "human")]


def test_a_value_that_does_not_fit_its_schema_is_kept_as_json(photos_db, cli, tmp_path):
    """A database edited by hand (or written by an older version): nothing is dropped or changed."""
    db = copy_of(photos_db, tmp_path / "edited.db")
    store = Store(db)
    with store.engine.begin() as connection:
        first = connection.execute(text("SELECT id FROM record WHERE status = 'ok' ORDER BY path LIMIT 1")).scalar()
        connection.execute(
            text("UPDATE record SET data = json_set(data, '$.face_count', 'several'), review = :review WHERE id = :id"),
            {"id": first, "review": json.dumps({"by": "ann", "at": "2026-01-02T03:04:05Z", "mood": "tired"})},
        )
    store.close()
    expected = jsonl_export(cli, db)
    assert len(expected) == 6 and expected[1]["data"]["face_count"] == "several"
    result = cli("export", "--format", "parquet", "-o", tmp_path / "edited.parquet", "--db", db)
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "edited.parquet")
    assert read_back(table) == [without_nones(record) for record in expected]
    assert is_json(table.schema.field("data").type.field("face_count").type)
    assert is_json(table.schema.field("review").type)
    assert pa.types.is_list(table.schema.field("data").type.field("labels").type)  # the rest stays typed
    warnings = " ".join(result.stderr.split())  # the console wraps long lines
    assert f"data.face_count of {expected[1]['path']} does not fit its schema" in warnings, warnings
    assert "writing review as JSON text" in warnings, warnings
    assert sorted(p.name for p in tmp_path.iterdir() if "parquet" in p.name) == ["edited.parquet"]  # no leftovers
