"""Schemas as a versioned contract: built-ins, user schemas from files, versions, typed views,
provenance, and the cross-check of LLM answers against tool evidence on real photos."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest
from openai_test_server import json_reply
from pydantic import BaseModel, Field
from sqlmodel import select

import visextract as vx
from visextract.config import Settings
from visextract.store import Store
from visextract.store.tables import ToolResultRow


def settings(tmp_path: Path, name: str = "schemas.db") -> Settings:
    return Settings(db=f"sqlite:///{tmp_path / name}", llm_timeout=2, llm_retry_initial_wait=0.05)


def export(cli, db: str, *extra: str) -> list[dict]:
    return [json.loads(line) for line in cli("export", "--db", db, *extra).stdout.splitlines()]


def test_schemas_lists_the_built_ins_with_their_fields(cli):
    listing = cli("schemas").stdout
    for name, field in [("scene", "face_count"), ("vehicle", "license"), ("document", "key_values"),
                        ("product", "text_on_package"), ("people", "activities")]:  # fmt: skip
        assert name in listing and field in listing


RECEIPT_V1 = '''
    from pydantic import BaseModel, Field

    class Receipt(BaseModel):
        """A shop receipt."""
        shop: str | None = Field(None, description="Shop name as printed")
        total: float | None = None
'''
RECEIPT_V2 = (
    RECEIPT_V1
    + """
        paid_by_card: bool | None = None
"""
)


def test_a_python_schema_file_runs_end_to_end_and_a_changed_schema_reuses_the_tools(server, photos, tmp_path, cli):
    schema_file = tmp_path / "receipt.py"
    schema_file.write_text(textwrap.dedent(RECEIPT_V1))
    db = f"sqlite:///{tmp_path / 'receipts.db'}"
    args = ("run", photos / "page.png", photos / "coffee.jpg", "--db", db, "--schema", f"{schema_file}:Receipt",
            "--llm", "openai", "--tools", "ocr,colors")  # fmt: skip
    server.default_reply = json_reply({"shop": None, "total": 12.5})
    assert "2 processed" in cli(*args).stdout
    first = export(cli, db)
    assert {r["schema"] for r in first} == {"receipt"} and all(
        r["data"] == {"shop": None, "total": 12.5} for r in first
    )
    assert all(set(r["provenance"]) == {"shop", "total"} for r in first)
    with Store(db).read() as session:
        tool_rows = {row.id for row in session.exec(select(ToolResultRow))}

    # unchanged schema: nothing to do, not one LLM call
    calls = server.request_count
    assert "2 skipped" in cli(*args).stdout and server.request_count == calls

    # a new field: every record is re-extracted with the LLM, the stored tool results are reused
    schema_file.write_text(textwrap.dedent(RECEIPT_V2))
    server.default_reply = json_reply({"shop": None, "total": 12.5, "paid_by_card": True})
    assert "2 processed" in cli(*args).stdout and server.request_count == calls + 2
    with Store(db).read() as session:
        assert {row.id for row in session.exec(select(ToolResultRow))} == tool_rows  # no tool ran again
    second = export(cli, db)
    assert len(second) == 2 and all(r["data"]["paid_by_card"] is True for r in second)
    assert len({r["schema_version"] for r in first + second}) == 2
    history = export(cli, db, "--all-versions")
    assert len(history) == 4 and sum(r["is_current"] for r in history) == 2


def test_a_json_schema_file_runs_end_to_end_with_a_typed_view(server, photos, tmp_path, cli):
    schema_file = tmp_path / "shelf.json"
    schema_file.write_text(json.dumps({
        "title": "Shelf item",
        "type": "object",
        "properties": {
            "product": {"type": "string", "description": "what it is"},
            "count": {"type": "integer", "minimum": 0},
            "price": {"type": ["number", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "size": {"enum": ["small", "medium", "large"]},
        },
        "required": ["product", "count"],
    }))  # fmt: skip
    server.default_reply = json_reply({"product": "mug", "count": 2, "price": 4.5, "tags": ["cup"], "size": "small"})
    db_file = tmp_path / "shelf.db"
    result = cli("run", photos / "coffee.jpg", "--db", f"sqlite:///{db_file}", "--schema", schema_file,
                 "--llm", "openai", "--tools", "colors")  # fmt: skip
    assert "1 processed" in result.stdout, result.output
    (record,) = export(cli, f"sqlite:///{db_file}")
    assert record["schema"] == "shelf_item" and record["data"]["count"] == 2
    with sqlite3.connect(db_file) as connection:  # any SQL tool sees typed columns
        row = connection.execute("SELECT path, product, count, price, tags, typeof(count) FROM shelf_item").fetchone()
    assert row[1:] == ("mug", 2, 4.5, '["cup"]', "integer") and row[0].endswith("coffee.jpg")


def test_a_schema_class_from_python(server, photos, tmp_path):
    class Mood(BaseModel):
        """The mood of a photo."""

        mood: str | None = Field(None, description="one word")

    server.default_reply = json_reply({"mood": "calm"})
    ex = vx.Extractor(settings=settings(tmp_path), schema=Mood, tools=["colors"], llm="openai")
    ex.run(photos / "coffee.jpg")
    (record,) = ex.records()
    assert isinstance(record.data, Mood) and record.data.mood == "calm" and record.schema_name == "mood"


@pytest.mark.parametrize(
    ("content", "spec_suffix", "message"),
    [
        ("class Broken(BaseModel:\n    x: int\n", ".py:Broken", "syntax error on line 1"),
        ("from pydantic import BaseModel\nclass Other(BaseModel):\n    x: int\n", ".py:Missing",
         "has no class 'Missing' (Pydantic models in it: Other)"),
        ("x = 1\n", ".py:x", "is not a Pydantic model"),
        ('{"type": "object", "properties": {"a": {"type": "strng"}}}', ".json",
         "at /properties/a: unknown type 'strng'"),
        ('{"type": "object", "properties": ', ".json", "invalid JSON on line 1"),
        ('{"type": "object"}', ".json", 'the root must be an object schema with "properties"'),
    ],
)  # fmt: skip
def test_a_broken_schema_file_is_one_clear_line(cli, photos, tmp_path, content, spec_suffix, message):
    path = tmp_path / ("schema" + spec_suffix.split(":")[0])
    path.write_text(content)
    spec = str(path) + (":" + spec_suffix.split(":")[1] if ":" in spec_suffix else "")
    result = cli("run", photos, "--db", f"sqlite:///{tmp_path / 'x.db'}", "--schema", spec, "--llm", "none")
    assert result.exit_code != 0
    (line,) = result.stderr.strip().splitlines()
    assert str(path) in line and message in line


# ---- the cross-check, one rule at a time, on real photos with a test LLM that lies or tells the truth --------


def checked(server, tmp_path, photo: Path, schema: str, tools: list[str], answer: dict, name: str) -> vx.Record:
    server.default_reply = json_reply(answer)
    ex = vx.Extractor(settings=settings(tmp_path, f"{name}.db"), schema=schema, tools=tools, llm="openai")
    ex.run(photo)
    (record,) = ex.records()
    return record


def test_text_the_llm_claims_to_read_must_be_in_the_ocr(server, photos, tmp_path):
    document = {"title": "Region-based segmentation", "type": "page", "date": None, "total": None,
                "currency": None, "key_values": None, "full_text": None}  # fmt: skip
    truth = checked(server, tmp_path, photos / "page.png", "document", ["ocr"], document, "truth")
    assert truth.status == "ok"
    title = truth.provenance["title"]
    assert title.verified is True and title.evidence[0].tool == "ocr" and title.evidence[0].box
    lie = checked(
        server, tmp_path, photos / "page.png", "document", ["ocr"], {**document, "title": "FREE PIZZA"}, "lie"
    )
    assert lie.status == "needs_review"
    assert lie.provenance["title"].verified is False and "not in the OCR text" in lie.provenance["title"].note
    assert lie.error == "cross-check: title: 'FREE PIZZA': not in the OCR text"


def test_counts_must_match_the_faces_found(server, photos, tmp_path):
    truth = checked(server, tmp_path, photos / "astronaut.png", "people", ["faces"],
                    {"count": 1, "positions": ["center"], "activities": ["posing"]}, "truth")  # fmt: skip
    assert truth.status == "ok" and truth.provenance["count"].verified is True
    assert len(truth.provenance["count"].evidence) == 1  # the face that was counted
    lie = checked(server, tmp_path, photos / "astronaut.png", "people", ["faces"],
                  {"count": 3, "positions": None, "activities": None}, "lie")  # fmt: skip
    assert lie.status == "needs_review" and lie.provenance["count"].note == "LLM says 3, faces found 1"


def test_categories_must_agree_with_a_confident_classifier(server, photos, tmp_path):
    product = {"name": None, "brand": None, "colors": None, "text_on_package": None}
    truth = checked(
        server, tmp_path, photos / "chelsea.png", "product", ["classifier"], {**product, "category": "cat"}, "t"
    )
    assert truth.status == "ok" and truth.provenance["category"].verified is True
    lie = checked(
        server, tmp_path, photos / "chelsea.png", "product", ["classifier"], {**product, "category": "dog"}, "l"
    )
    assert lie.status == "needs_review" and lie.provenance["category"].verified is False
    assert lie.provenance["category"].note == "classifier says 'tiger cat' (0.38)"


def test_colours_must_be_near_a_dominant_colour(server, photos, tmp_path):
    car = {"type": None, "license": None, "make": None, "model": None}
    truth = checked(server, tmp_path, photos / "coffee.jpg", "vehicle", ["colors"], {**car, "color": "brown"}, "t")
    assert truth.status == "ok" and truth.provenance["color"].verified is True
    assert truth.provenance["color"].evidence[0].tool == "colors"
    lie = checked(server, tmp_path, photos / "coffee.jpg", "vehicle", ["colors"], {**car, "color": "bright green"}, "l")
    assert lie.status == "needs_review" and lie.provenance["color"].verified is False


def test_status_counts_records_that_need_review(server, photos, tmp_path, cli):
    server.default_reply = json_reply({"type": None, "license": None, "make": None, "model": None, "color": "green"})
    db = f"sqlite:///{tmp_path / 'review.db'}"
    cli("run", photos / "coffee.jpg", "--db", db, "--schema", "vehicle", "--llm", "openai", "--tools", "colors")
    status = cli("status", "--db", db).stdout
    row = next(line for line in status.splitlines() if "vehicle" in line)
    assert [cell.strip() for cell in row.split("│")[1:5]] == ["vehicle", "0", "1", "0"]
