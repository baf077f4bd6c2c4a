"""Cross-checking LLM fields against tool evidence: small, explicit rules, one per kind of field.

Each rule looks at one value the LLM gave and the image's tool outputs and returns the field's
provenance: `verified` True (the tools agree), False (the tools contradict it) or None (nothing to
check against), with the supporting tool outputs as evidence and a short note.

    text      the text the LLM claims to read must appear in the OCR lines (fuzzy: OCR drops spaces)
    count     a count must equal the number of faces (or detected people)
    category  a category must match a classifier/detector label, and must not contradict a confident one
    color     a colour name must be near one of the image's dominant colours
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from difflib import SequenceMatcher
from functools import cache
from typing import Any

from visextract.color_names import NAMED_COLORS, lab_distance
from visextract.schemas.evidence import ToolEvidence
from visextract.schemas.record import EvidenceRef, FieldProvenance

TEXT_MATCH_RATIO = 0.8
CONFIDENT_LABEL_SCORE = 0.3
COLOR_MATCH_DELTA_E = 30.0
COLOR_MIN_FRACTION = 0.02

Rule = Callable[[Any, ToolEvidence], FieldProvenance]


def llm_field(verified: bool | None, note: str, evidence: list[EvidenceRef] | None = None) -> FieldProvenance:
    return FieldProvenance(source="llm", evidence=evidence or [], verified=verified, note=note)


# ---- text vs OCR ------------------------------------------------------------------------------------


def check_text(value: Any, evidence: ToolEvidence) -> FieldProvenance:
    """Text the LLM read (a string or a list of strings) must be found in the OCR lines."""
    if value in (None, "", []):
        return llm_field(None, "empty")
    if not evidence.ran("ocr"):
        return llm_field(None, "ocr was not run")
    claims = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    lines = evidence.ocr_lines
    supporting: list[int] = []
    missing = []
    for claim in claims:
        found = _find_in_ocr(claim, [line.text for line in lines])
        if found is None:
            missing.append(claim)
        else:
            supporting.extend(found)
    refs = [evidence.ref("ocr", i) for i in dict.fromkeys(supporting)]
    if missing:
        where = "OCR found no text" if not lines else "not in the OCR text"
        return llm_field(False, f"{missing[0][:60]!r}: {where}", refs)
    return llm_field(True, "matches OCR", refs)


def _normal_text(text: str) -> str:
    """Lower-case letters and digits only: OCR drops spaces and punctuation varies."""
    text = unicodedata.normalize("NFKD", text).lower()
    return "".join(ch for ch in text if ch.isalnum())


def _find_in_ocr(claim: str, lines: list[str]) -> list[int] | None:
    """Indexes of the OCR lines that contain `claim` (exactly or fuzzily), or None."""
    target = _normal_text(claim)
    if not target:
        return []
    normal_lines = [_normal_text(line) for line in lines]
    for i, line in enumerate(normal_lines):
        if target in line:
            return [i]
    joined = ""
    owners: list[int] = []
    for i, line in enumerate(normal_lines):
        joined += line
        owners += [i] * len(line)
    if target in joined:
        start = joined.index(target)
        return sorted(set(owners[start : start + len(target)]))
    best, where = _best_window(target, joined)
    if best >= TEXT_MATCH_RATIO:
        return sorted(set(owners[where : where + len(target)]))
    return None


def _best_window(target: str, text: str) -> tuple[float, int]:
    """The best similarity of `target` with any same-length window of `text`, and where it starts."""
    if not text:
        return 0.0, 0
    width = len(target)
    best, where = 0.0, 0
    for start in range(max(1, len(text) - width + 1)):
        ratio = SequenceMatcher(None, target, text[start : start + width]).ratio()
        if ratio > best:
            best, where = ratio, start
    return best, where


# ---- counts vs faces / people -------------------------------------------------------------------------


def check_count(value: Any, evidence: ToolEvidence) -> FieldProvenance:
    """A count of people/faces must equal the faces found (or people detected when there is a detector)."""
    if value is None:
        return llm_field(None, "empty")
    if not isinstance(value, int | float):
        return llm_field(None, "not a number")
    if evidence.ran("faces"):
        found, tool = len(evidence.faces), "faces"
        refs = evidence.refs("faces")
    elif evidence.detections:
        people = [i for i, d in enumerate(evidence.of("detector")) if getattr(d, "label", "") == "person"]
        found, tool = len(people), "detector"
        refs = [evidence.ref("detector", i) for i in people]
    else:
        return llm_field(None, "no face or person detector was run")
    if int(value) == found:
        return llm_field(True, f"{tool} found {found}", refs)
    return llm_field(False, f"LLM says {int(value)}, {tool} found {found}", refs)


# ---- categories vs classifier / detector labels ----------------------------------------------------------

# Everyday categories and the ImageNet / COCO labels that belong to them (ImageNet dogs and birds are
# added by index range below).
CATEGORY_MEMBERS: dict[str, set[str]] = {
    "car": {"sports car", "convertible", "cab", "limousine", "minivan", "jeep", "beach wagon", "racer",
            "police van", "ambulance", "model t", "go-kart", "golfcart", "car wheel", "grille", "pickup"},
    "truck": {"fire engine", "garbage truck", "pickup", "tow truck", "trailer truck", "moving van", "tractor"},
    "bus": {"school bus", "trolleybus", "minibus"},
    "van": {"minivan", "moving van", "police van", "ambulance"},
    "motorcycle": {"moped", "motor scooter", "motorbike", "crash helmet"},
    "bicycle": {"mountain bike", "bicycle-built-for-two", "tricycle", "unicycle", "bike"},
    "train": {"bullet train", "electric locomotive", "steam locomotive", "passenger car", "freight car", "streetcar"},
    "airplane": {"airliner", "warplane", "airship", "aeroplane", "plane", "aircraft"},
    "boat": {"canoe", "speedboat", "lifeboat", "fireboat", "gondola", "yawl", "catamaran", "trimaran",
             "container ship", "liner", "schooner", "pirate", "submarine", "ship"},
    "cat": {"tabby", "tiger cat", "persian cat", "siamese cat", "egyptian cat", "kitten"},
    "person": {"man", "woman", "people", "human", "scuba diver", "groom", "ballplayer", "child"},
    "coffee": {"espresso", "cup", "coffee mug", "coffeepot"},
    "food": {"pizza", "cheeseburger", "hotdog", "burrito", "bagel", "pretzel", "plate", "meat loaf", "ice cream"},
    "fruit": {"orange", "lemon", "banana", "pineapple", "strawberry", "granny smith", "fig", "pomegranate"},
    "document": {"envelope", "menu", "book jacket", "comic book", "crossword puzzle", "web site", "binder"},
}  # fmt: skip
_RANGES = {"dog": [(151, 268)], "bird": [(7, 24), (80, 100), (127, 146)]}


@cache
def _category_index() -> dict[str, set[str]]:
    """label -> categories it belongs to."""
    from visextract.local_models.bundled import imagenet_labels

    index: dict[str, set[str]] = {}
    for category, members in CATEGORY_MEMBERS.items():
        index.setdefault(category, set()).add(category)
        for member in members:
            index.setdefault(member, set()).add(category)
    labels = imagenet_labels()
    for category, ranges in _RANGES.items():
        index.setdefault(category, set()).add(category)
        for low, high in ranges:
            for i in range(low, high + 1):
                index.setdefault(labels[i].lower(), set()).add(category)
    return index


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def categories_of(term: str) -> set[str]:
    """The everyday categories a label or an LLM's category word belongs to ("tabby" -> {"cat"})."""
    text = " ".join(_singular(w) for w in re.findall(r"[a-z0-9-]+", term.lower()))
    index = _category_index()
    found = set(index.get(text, set()))
    if not found:  # "red sports car" -> "sports car"; "pickup truck" -> "truck"
        for key, categories in index.items():
            if re.search(rf"\b{re.escape(key)}\b", text):
                found |= categories
    return found


def check_category(value: Any, evidence: ToolEvidence) -> FieldProvenance:
    """A category/type must match a classifier or detector label (directly or by category), and must not
    contradict a confident top label of another category."""
    if value in (None, "", []):
        return llm_field(None, "empty")
    labels = [("classifier", i, c.label, c.score) for i, c in enumerate(evidence.classifications)]
    labels += [(tool, i, d.label, d.score) for tool in ("detector",) for i, d in enumerate(evidence.of(tool))]
    if not labels:
        return llm_field(None, "no classifier or detector was run")
    claims = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    for claim in claims:
        claim_words = {_singular(w) for w in re.findall(r"[a-z0-9-]+", claim.lower())}
        claim_categories = categories_of(claim) | {claim.lower()}
        for tool, i, label, _score in labels:
            label_words = {_singular(w) for w in re.findall(r"[a-z0-9-]+", label.lower())}
            if (claim_words & label_words) or (categories_of(label) & claim_categories):
                return llm_field(True, f"matches {tool} label {label!r}", [evidence.ref(tool, i)])
    tool, i, label, score = max(labels, key=lambda item: item[3])
    top_categories = categories_of(label)
    if score >= CONFIDENT_LABEL_SCORE and top_categories and not any(categories_of(c) & top_categories for c in claims):
        return llm_field(False, f"{tool} says {label!r} ({score:.2f})", [evidence.ref(tool, i)])
    return llm_field(None, "no matching or contradicting label")


# ---- colours vs dominant colours --------------------------------------------------------------------------


def check_color(value: Any, evidence: ToolEvidence) -> FieldProvenance:
    """A colour name (or list of names) must be close to one of the image's dominant colours."""
    if value in (None, "", []):
        return llm_field(None, "empty")
    if not evidence.ran("colors"):
        return llm_field(None, "colors was not run")
    claims = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    shares = [(i, c) for i, c in enumerate(evidence.colors) if c.fraction >= COLOR_MIN_FRACTION]
    supporting = []
    for claim in claims:
        named = _color_word(claim, NAMED_COLORS)
        if named is None:
            return llm_field(None, f"{claim!r} is not a colour name visextract knows")
        close = [i for i, share in shares if lab_distance(share.hex, NAMED_COLORS[named]) <= COLOR_MATCH_DELTA_E]
        if not close:
            return llm_field(False, f"no dominant colour is near {claim!r}", evidence.refs("colors"))
        supporting += close
    return llm_field(True, "near a dominant colour", [evidence.ref("colors", i) for i in dict.fromkeys(supporting)])


def _color_word(claim: str, named: dict[str, tuple[int, int, int]]) -> str | None:
    text = claim.lower().replace("grey", "gray").replace("colour", "").strip()
    if text in named:
        return text
    aliases = {"maroon": "dark red", "crimson": "red", "tan": "beige", "cream": "beige", "violet": "purple",
               "turquoise": "teal", "golden": "gold", "lime": "green", "charcoal": "dark gray"}  # fmt: skip
    for word in reversed(text.split()):
        if word in aliases:
            return aliases[word]
        if word in named:
            return word
    return None


RULES: dict[str, Rule] = {
    "text": check_text,
    "count": check_count,
    "category": check_category,
    "color": check_color,
}


def cross_check(data: dict[str, Any], checks: dict[str, str], evidence: ToolEvidence) -> dict[str, FieldProvenance]:
    """Provenance for every field of an LLM record: checked by its rule, or unchecked."""
    provenance = {}
    for field, value in data.items():
        rule = RULES.get(checks.get(field, ""))
        provenance[field] = rule(value, evidence) if rule else FieldProvenance(source="llm")
    return provenance


def conflicts(provenance: dict[str, FieldProvenance]) -> list[str]:
    """One line per field the tools contradict."""
    return [f"{field}: {p.note}" for field, p in provenance.items() if p.verified is False]
