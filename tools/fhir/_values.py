"""Reading FHIR datatypes out of validated resource JSON, the same way for R4, R4B and R5.

The extractors read the JSON that fhir.resources has already validated, not the model objects: the
models turn ``"2026-03-01T08:30:00+01:00"`` into ``datetime`` objects (and partial dates into something
else again), while okaflow promises dates exactly as the bundle gives them. Every helper here tolerates
a missing or oddly shaped element and returns ``None`` (or an empty list) rather than raising, because
validation has already happened upstream.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from okaflow.tools.fhir._models import Coding

__all__ = [
    "JSONObject",
    "as_float",
    "as_list",
    "choice_time",
    "code_of",
    "codings",
    "concept_text",
    "concepts_of",
    "format_number",
    "notes_text",
    "period_text",
    "quantity_text",
    "reference_text",
]

JSONObject = dict[str, Any]


def as_list(value: Any) -> list[Any]:
    """``[]`` for None, the list itself, or a one-item list (R4 singletons that became lists in R5)."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def as_float(value: Any) -> float | None:
    """A FHIR decimal or integer as float; booleans are not numbers here."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal):
        return float(value)
    return None


def format_number(value: float) -> str:
    """Shortest faithful text for a number: ``7`` not ``7.0``, ``1.4`` not ``1.3999999``."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def codings(concept: Any) -> list[Coding]:
    """The codings of a CodeableConcept, or of a bare Coding (R4 shapes such as Encounter.class)."""
    if not isinstance(concept, dict):
        return []
    raw = concept.get("coding") if "coding" in concept else [concept] if "code" in concept else []
    out: list[Coding] = []
    for item in as_list(raw):
        if isinstance(item, dict) and (item.get("code") or item.get("display")):
            out.append(Coding(system=item.get("system"), code=item.get("code"), display=item.get("display")))
    return out


def concept_text(concept: Any) -> str | None:
    """Human text of a CodeableConcept, bare Coding or R5 CodeableReference.

    ``text`` first, then the first coding's display, then its code; for a CodeableReference the concept,
    else the reference's display.
    """
    if not isinstance(concept, dict):
        return None
    if "concept" in concept or ("reference" in concept and "coding" not in concept):
        inner = concept_text(concept.get("concept"))
        return inner or reference_text(concept.get("reference"))
    text = concept.get("text")
    if isinstance(text, str) and text.strip():
        return text.strip()
    for coding in codings(concept):
        if coding.display:
            return coding.display
    for coding in codings(concept):
        if coding.code:
            return coding.code
    return None


def concepts_of(values: Any) -> list[str]:
    """Texts of a list of CodeableConcepts / CodeableReferences, skipping empty ones."""
    return [text for value in as_list(values) if (text := concept_text(value))]


def code_of(concept: Any) -> str | None:
    """The first coding's code (status-like CodeableConcepts such as clinicalStatus), else the text."""
    for coding in codings(concept):
        if coding.code:
            return coding.code
    return concept_text(concept)


def reference_text(reference: Any) -> str | None:
    """A Reference's display, else its reference string, else its identifier value."""
    if not isinstance(reference, dict):
        return None
    for key in ("display", "reference"):
        value = reference.get(key)
        if isinstance(value, str) and value:
            return value
    identifier = reference.get("identifier")
    if isinstance(identifier, dict) and identifier.get("value"):
        return str(identifier["value"])
    return None


def notes_text(notes: Any) -> str | None:
    """The texts of a list of Annotations, joined with a space (None when there are none)."""
    texts = [" ".join(str(n["text"]).split()) for n in as_list(notes) if isinstance(n, dict) and n.get("text")]
    return " ".join(texts) or None


def period_text(period: Any) -> str | None:
    """A Period as an ISO 8601 interval ``start/end``; one bound alone when the other is missing."""
    if not isinstance(period, dict):
        return None
    start, end = period.get("start"), period.get("end")
    if start and end:
        return f"{start}/{end}"
    return start or end or None


def quantity_text(quantity: Any) -> str | None:
    """``"500 mg"``, ``"<0.5 mg/L"``: comparator, value as written, then unit (or code)."""
    if not isinstance(quantity, dict):
        return None
    value = as_float(quantity.get("value"))
    if value is None:
        return None
    unit = quantity.get("unit") or quantity.get("code")
    text = f"{quantity.get('comparator') or ''}{format_number(value)}"
    return f"{text} {unit}" if unit else text


def choice_time(resource: JSONObject, prefix: str) -> str | None:
    """The value of a ``prefix[x]`` time choice (DateTime, Instant, Period, Date, String, Age, Range)."""
    for suffix in ("DateTime", "Instant", "Date"):
        value = resource.get(prefix + suffix)
        if isinstance(value, str) and value:
            return value
    if (text := period_text(resource.get(prefix + "Period"))) is not None:
        return text
    value = resource.get(prefix + "String")
    if isinstance(value, str) and value:
        return value
    if (age := quantity_text(resource.get(prefix + "Age"))) is not None:
        return f"age {age}"
    timing = resource.get(prefix + "Timing")
    if isinstance(timing, dict):
        events = [e for e in as_list(timing.get("event")) if isinstance(e, str)]
        if events:
            return events[0]
    return None
