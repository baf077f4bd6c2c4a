"""Record schemas (built-in and user-defined) and the typed results of the vision tools."""

from visextract.schemas.base import FilledFields, RecordSchema
from visextract.schemas.record import EvidenceRef, FieldProvenance, LlmUsage, Record, RecordStatus
from visextract.schemas.registry import BUILT_IN_SCHEMAS, load_schema

__all__ = [
    "BUILT_IN_SCHEMAS",
    "EvidenceRef",
    "FieldProvenance",
    "FilledFields",
    "LlmUsage",
    "Record",
    "RecordSchema",
    "RecordStatus",
    "load_schema",
]
