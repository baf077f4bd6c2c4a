"""Built-in schema `product`: product photos (packshots, shelf photos, listings)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from visextract.schemas.base import FilledFields, RecordSchema
from visextract.schemas.evidence import ToolEvidence
from visextract.schemas.scene import fill_scene


class Product(BaseModel):
    """A product shown in a photo."""

    name: str | None = Field(None, description="Product name as printed on it or its package")
    brand: str | None = Field(None, description="Brand as printed")
    category: str | None = Field(None, description="What kind of product: shoe, mug, cereal, phone, ...")
    colors: list[str] | None = Field(None, description="Main colours of the product, in plain words")
    text_on_package: str | None = Field(None, description="Text printed on the product or package")


def fill_product(evidence: ToolEvidence) -> FilledFields:
    """Offline: category from the top classifier label, colours, and the package text from OCR."""
    scene = fill_scene(evidence)
    filled = FilledFields()
    filled.leave_empty(("name", "brand"), "needs an LLM")
    labels, labels_source = scene.values["labels"], scene.provenance["labels"]
    category_source = labels_source.model_copy(update={"evidence": labels_source.evidence[:1]})
    filled.set("category", labels[0] if labels else None, category_source)
    filled.set("colors", scene.values["dominant_colors"], scene.provenance["dominant_colors"])
    filled.set("text_on_package", scene.values["text"], scene.provenance["text"])
    return filled


PRODUCT = RecordSchema(
    name="product",
    model=Product,
    description="A product: name, brand, category, colours, text on the package.",
    default_tools=("classifier", "ocr", "colors"),
    fill_from_tools=fill_product,
    instructions="Copy names and brands exactly as printed; if not printed, return null.",
    checks={
        "name": "text",
        "brand": "text",
        "category": "category",
        "colors": "color",
        "text_on_package": "text",
    },
)
