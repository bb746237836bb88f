"""Observations: values, reference ranges, interpretation (given or computed) and components.

When the bundle gives no interpretation, one is computed from the reference range: ``H`` above the
high bound, ``L`` below the low bound, ``N`` within the bounds given; never ``HH``/``LL`` (critical limits
are not in a normal range). The fact then says ``interpretation_computed=True``. No flag is computed when
the value's comparator makes the side uncertain (``<5`` against a low bound of 3), or when the range is
in another unit than the value.

The range used is the first ``referenceRange`` whose ``type`` is absent or ``normal``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from okaflow.tools.fhir._models import ObservationFact
from okaflow.tools.fhir._values import (
    JSONObject,
    as_float,
    as_list,
    choice_time,
    code_of,
    codings,
    concept_text,
    format_number,
    notes_text,
    period_text,
    quantity_text,
)

__all__ = ["compute_interpretation", "describe_value", "observation_fact"]


def compute_interpretation(value: float, comparator: str | None, low: float | None, high: float | None) -> str | None:
    """``H``, ``L``, ``N`` or None (cannot tell) for a value against a reference range."""
    if low is None and high is None:
        return None
    if comparator in (None, ""):
        if high is not None and value > high:
            return "H"
        if low is not None and value < low:
            return "L"
        return "N"
    if comparator in ("<", "<="):  # the true value is at most `value`
        if low is not None and (value < low or (comparator == "<" and value <= low)):
            return "L"
        if low is None and high is not None and value <= high:
            return "N"
        return None
    if comparator in (">", ">="):  # the true value is at least `value`
        if high is not None and (value > high or (comparator == ">" and value >= high)):
            return "H"
        if high is None and low is not None and value >= low:
            return "N"
        return None
    return None  # "ad" (sufficient to achieve this total) says nothing about the range


def _pick_range(ranges: Any) -> JSONObject | None:
    candidates = [r for r in as_list(ranges) if isinstance(r, dict)]
    for candidate in candidates:
        if candidate.get("type") is None or code_of(candidate.get("type")) == "normal":
            return candidate
    return None


def _unit_key(quantity: Any) -> str | None:
    if not isinstance(quantity, dict):
        return None
    return quantity.get("code") or quantity.get("unit")


def _as_written(value: Any) -> str | None:
    """The decimal as written: the loader parses JSON floats as Decimal, which keeps "8.0" and "1.40"."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return str(value) if not isinstance(value, float) else format_number(value)


def _value_fields(item: JSONObject) -> dict[str, Any]:
    """value / value_text / unit / comparator from whichever value[x] the item carries."""
    if isinstance(quantity := item.get("valueQuantity"), dict):
        return {
            "value": as_float(quantity.get("value")),
            "value_as_written": _as_written(quantity.get("value")),
            "unit": quantity.get("unit") or quantity.get("code"),
            "comparator": quantity.get("comparator"),
        }
    if isinstance(item.get("valueInteger"), int) and not isinstance(item.get("valueInteger"), bool):
        return {"value": float(item["valueInteger"]), "value_as_written": str(item["valueInteger"])}
    if isinstance(item.get("valueBoolean"), bool):
        return {"value_text": "true" if item["valueBoolean"] else "false"}
    if isinstance(item.get("valueCodeableConcept"), dict):
        return {"value_text": concept_text(item["valueCodeableConcept"])}
    if isinstance(rng := item.get("valueRange"), dict):
        low, high = quantity_text(rng.get("low")), quantity_text(rng.get("high"))
        return {"value_text": f"{low or '?'}–{high or '?'}"}
    if isinstance(ratio := item.get("valueRatio"), dict):
        num, den = quantity_text(ratio.get("numerator")), quantity_text(ratio.get("denominator"))
        return {"value_text": f"{num or '?'}/{den or '?'}"}
    for key in ("valueString", "valueTime", "valueDateTime"):
        if isinstance(item.get(key), str):
            return {"value_text": item[key]}
    if (period := period_text(item.get("valuePeriod"))) is not None:
        return {"value_text": period}
    if item.get("dataAbsentReason") is not None:
        return {"value_text": f"no value ({concept_text(item['dataAbsentReason']) or 'absent'})"}
    return {}


def _measurement(item: JSONObject, fact_id: str, label: str, warnings: list[str]) -> dict[str, Any]:
    """The value, range and interpretation fields shared by observations and their components."""
    fields = _value_fields(item)
    chosen = _pick_range(item.get("referenceRange"))
    low = as_float(chosen.get("low", {}).get("value")) if chosen and isinstance(chosen.get("low"), dict) else None
    high = as_float(chosen.get("high", {}).get("value")) if chosen and isinstance(chosen.get("high"), dict) else None
    fields.update(reference_low=low, reference_high=high, reference_text=chosen.get("text") if chosen else None)
    given = [code_of(c) for c in as_list(item.get("interpretation"))]
    given_codes = [g for g in given if g]
    if given_codes:
        fields["interpretation"] = given_codes[0]
        return fields
    value = fields.get("value")
    if value is None or chosen is None:
        return fields
    value_unit = _unit_key(item.get("valueQuantity"))
    range_units = {u for u in (_unit_key(chosen.get("low")), _unit_key(chosen.get("high"))) if u}
    if value_unit and range_units and range_units != {value_unit}:
        warnings.append(
            f"{fact_id}: {label} reference range is in {sorted(range_units)}, the value in {value_unit!r}; "
            "no interpretation computed"
        )
        return fields
    computed = compute_interpretation(value, fields.get("comparator"), low, high)
    if computed is not None:
        fields.update(interpretation=computed, interpretation_computed=True)
    return fields


def _effective(resource: JSONObject) -> tuple[str | None, str | None]:
    period = resource.get("effectivePeriod")
    if isinstance(period, dict):
        # One point in time (the start) keeps series sortable; the end is kept beside it.
        return period.get("start") or period.get("end"), period.get("end") if period.get("start") else None
    return choice_time(resource, "effective"), None


def observation_fact(resource: JSONObject, fact_id: str, warnings: list[str]) -> ObservationFact:
    """An :class:`ObservationFact` from Observation JSON (R4 and R5 share these elements)."""
    text = concept_text(resource.get("code")) or "Observation (no code)"
    categories = [code_of(c) for c in as_list(resource.get("category"))]
    effective, effective_end = _effective(resource)
    shared = {
        "category": next((c for c in categories if c), None),
        "status": resource.get("status"),
        "effective": effective,
        "effective_end": effective_end,
    }
    components: list[ObservationFact] = []
    for i, component in enumerate(as_list(resource.get("component"))):
        if not isinstance(component, dict):
            continue
        label = concept_text(component.get("code")) or f"component {i}"
        components.append(
            ObservationFact(
                id=f"{fact_id}#component[{i}]",
                text=label,
                coding=codings(component.get("code")),
                **shared,
                **_measurement(component, fact_id, label, warnings),
            )
        )
    return ObservationFact(
        id=fact_id,
        text=text,
        coding=codings(resource.get("code")),
        note=notes_text(resource.get("note")),
        components=components,
        **shared,
        **_measurement(resource, fact_id, text, warnings),
    )


def describe_value(obs: ObservationFact) -> str:
    """``"1.4 mg/dL (ref 0.6–1.2) H"``: value, range and flag as one phrase (for evidence summaries)."""
    if obs.value is not None:
        value = f"{obs.comparator or ''}{obs.value_as_written or format_number(obs.value)}"
    else:
        value = obs.value_text or "no value"
    parts = [f"{value} {obs.unit}" if obs.unit and obs.value is not None else value]
    low, high = obs.reference_low, obs.reference_high
    if low is not None and high is not None:
        parts.append(f"(ref {format_number(low)}–{format_number(high)})")
    elif high is not None:
        parts.append(f"(ref ≤{format_number(high)})")
    elif low is not None:
        parts.append(f"(ref ≥{format_number(low)})")
    elif obs.reference_text:
        parts.append(f"(ref {obs.reference_text})")
    if obs.interpretation:
        computed = " (computed from range)" if obs.interpretation_computed else ""
        parts.append(obs.interpretation + computed)
    return " ".join(parts)
