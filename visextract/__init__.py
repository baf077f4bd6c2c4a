"""visextract: turn folders of images into validated, queryable records.

    import visextract as vx
    ex = vx.Extractor(db="sqlite:///photos.db", schema="scene", tools=["classifier", "ocr"], llm=None)
    summary = ex.run("photos/")              # RunSummary(processed, skipped, failed, seconds)
    for rec in ex.records(schema="scene"):    # typed records; rec.data is the schema's Pydantic object
        print(rec.path, rec.data)
    vx.search("a dog on a beach", db="sqlite:///photos.db")     # offline semantic search (MiniLM)
    vx.sql("SELECT path, face_count FROM scene", db="sqlite:///photos.db")   # read-only SQL
    vx.ask("how many photos contain text?", db="sqlite:///photos.db")        # the chat agent
    vx.review("photos/cat.jpg", {"labels": ["cat"]}, by="ann", db="sqlite:///photos.db")  # a human fix
    vx.evaluate("gold.jsonl", db="sqlite:///photos.db")   # per-field accuracy, F1, CER, MAE against gold labels

Heavy libraries (torch, transformers, langgraph) are imported only when first needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Extractor": "visextract.extractor",
    "RunSummary": "visextract.extractor",
    "load_schema": "visextract.schemas.registry",
    "RecordSchema": "visextract.schemas.base",
    "Record": "visextract.schemas.record",
    "RecordStatus": "visextract.schemas.record",
    "FieldProvenance": "visextract.schemas.record",
    "LlmUsage": "visextract.schemas.record",
    "Settings": "visextract.config",
    "search": "visextract.query",
    "sql": "visextract.query",
    "ask": "visextract.query",
    "review": "visextract.extractor",
    "ChatSession": "visextract.query",
    "Answer": "visextract.query",
    "VisextractError": "visextract.errors",
    "evaluate": "visextract.evaluation",
    "EvaluationReport": "visextract.evaluation",
    "EvaluationComparison": "visextract.evaluation",
}

__all__ = [
    "Answer",
    "ChatSession",
    "EvaluationComparison",
    "EvaluationReport",
    "Extractor",
    "FieldProvenance",
    "LlmUsage",
    "Record",
    "RecordSchema",
    "RecordStatus",
    "RunSummary",
    "Settings",
    "VisextractError",
    "__version__",
    "ask",
    "evaluate",
    "load_schema",
    "review",
    "search",
    "sql",
]

if TYPE_CHECKING:
    from visextract.config import Settings
    from visextract.errors import VisextractError
    from visextract.evaluation import EvaluationComparison, EvaluationReport, evaluate
    from visextract.extractor import Extractor, RunSummary, review
    from visextract.query import Answer, ChatSession, ask, search, sql
    from visextract.schemas.base import RecordSchema
    from visextract.schemas.record import FieldProvenance, LlmUsage, Record, RecordStatus
    from visextract.schemas.registry import load_schema


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'visextract' has no attribute {name!r}")
