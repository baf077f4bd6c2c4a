"""Storage: SQLModel tables, engines, idempotent writes, export and read-only queries."""

from visextract.store.store import ImageFacts, RecordDraft, Store

__all__ = ["ImageFacts", "RecordDraft", "Store"]
