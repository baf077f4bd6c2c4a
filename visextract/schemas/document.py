"""Built-in schema `document`: scanned or photographed documents (receipts, invoices, letters, forms)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from visextract.schemas.base import FilledFields, RecordSchema
from visextract.schemas.evidence import ToolEvidence
from visextract.schemas.record import FieldProvenance


class KeyValue(BaseModel):
    key: str = Field(description="A label printed on the document, e.g. 'Invoice number'")
    value: str = Field(description="Its value as printed")


class Document(BaseModel):
    """A document: what it is, its headline facts and all its text."""

    title: str | None = Field(None, description="The document's heading or title as printed")
    type: str | None = Field(None, description="receipt, invoice, letter, form, ticket, page, ...")
    date: str | None = Field(None, description="The document's date, as YYYY-MM-DD when it is clear")
    total: float | None = Field(None, description="The total amount, for receipts and invoices")
    currency: str | None = Field(None, description="ISO 4217 code of the total, e.g. EUR")
    key_values: list[KeyValue] | None = Field(None, description="Other labelled fields printed on it")
    full_text: str | None = Field(None, description="All text, in reading order")


def fill_document(evidence: ToolEvidence) -> FilledFields:
    """Offline: the full text from OCR; the rest needs an LLM."""
    filled = FilledFields()
    filled.leave_empty(Document.model_fields, "needs an LLM")
    if evidence.ran("ocr"):
        text = "\n".join(line.text for line in evidence.ocr_lines) or None
        filled.set("full_text", text, FieldProvenance(source="tool:ocr", evidence=evidence.refs("ocr")))
    return filled


DOCUMENT = RecordSchema(
    name="document",
    model=Document,
    description="A scanned or photographed document: title, type, date, total, currency, fields, full text.",
    default_tools=("ocr", "classifier"),
    fill_from_tools=fill_document,
    instructions="Copy text exactly as printed. Amounts as numbers without currency symbols.",
    checks={"title": "text", "full_text": "text"},
)
