"""Synthetic FHIR resources (R4 and R5 shapes) and a bundle builder shared by the FHIR tests."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parents[2] / "data" / "fhir"
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "cases"

JSON = dict[str, Any]
MakeBundle = Callable[..., JSON]

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def _patient(pid: str = "p1") -> JSON:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": "urn:example:mrn", "value": f"MRN-{pid}"}],
        "name": [{"family": "Doe", "given": ["Robin"]}],
        "gender": "female",
        "birthDate": "1970-01-01",
    }


def _creatinine(oid: str = "cr1", subject: str = "Patient/p1", value: float = 1.4) -> JSON:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "2160-0", "display": "Creatinine"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": "2026-03-01",
        "valueQuantity": {"value": value, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
        "referenceRange": [{"low": {"value": 0.6}, "high": {"value": 1.2}}],
    }


@pytest.fixture
def patient() -> Callable[..., JSON]:
    return _patient


@pytest.fixture
def creatinine() -> Callable[..., JSON]:
    return _creatinine


@pytest.fixture
def r4_resources() -> list[JSON]:
    """A patient and one resource in each R4-only shape the detector looks for."""
    return [
        _patient(),
        _creatinine(),
        {
            "resourceType": "MedicationRequest",
            "id": "mr1",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/p1"},
            "medicationCodeableConcept": {"text": "Amlodipine 5 mg tablet"},
        },
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/p1"},
            "period": {"start": "2026-03-01T08:00:00Z"},
        },
    ]


@pytest.fixture
def r5_resources() -> list[JSON]:
    """The same record in R5 shapes (medication as CodeableReference, Encounter.class as a list)."""
    return [
        _patient(),
        _creatinine(),
        {
            "resourceType": "MedicationRequest",
            "id": "mr1",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/p1"},
            "medication": {"concept": {"text": "Amlodipine 5 mg tablet"}},
        },
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "completed",
            "class": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}]}],
            "subject": {"reference": "Patient/p1"},
            "actualPeriod": {"start": "2026-03-01T08:00:00Z"},
        },
    ]


def _make_bundle(
    resources: list[JSON],
    bundle_type: str = "collection",
    *,
    full_urls: str | None = "absolute",
    base: str = "https://fhir.example.org/fhir",
    **extra: Any,
) -> JSON:
    """Wrap resources as Bundle entries with the request/response/search parts each type expects."""
    entries: list[JSON] = []
    for n, resource in enumerate(copy.deepcopy(resources), start=1):
        entry: JSON = {"resource": resource}
        rtype, rid = resource["resourceType"], resource.get("id")
        if full_urls == "absolute" and rid:
            entry["fullUrl"] = f"{base}/{rtype}/{rid}"
        elif full_urls == "uuid" and rid:
            entry["fullUrl"] = f"urn:uuid:00000000-0000-4000-8000-{n:012d}"
        if bundle_type in ("transaction", "batch"):
            entry["request"] = {"method": "PUT", "url": f"{rtype}/{rid}"}
        if bundle_type in ("transaction-response", "batch-response"):
            entry["response"] = {"status": "201 Created", "location": f"{rtype}/{rid}/_history/1"}
        if bundle_type == "history":
            entry["request"] = {"method": "PUT", "url": f"{rtype}/{rid}"}
            entry["response"] = {"status": "200 OK"}
        if bundle_type == "searchset":
            entry["search"] = {"mode": "match" if rtype == "Patient" else "include"}
        entries.append(entry)
    bundle: JSON = {"resourceType": "Bundle", "type": bundle_type, "entry": entries}
    if bundle_type == "document":
        bundle["identifier"] = {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"}
        bundle["timestamp"] = "2026-03-02T10:00:00Z"
    if bundle_type == "searchset":
        bundle["total"] = 1
    bundle.update(extra)
    return bundle


@pytest.fixture
def make_bundle() -> MakeBundle:
    return _make_bundle


@pytest.fixture
def write_json(tmp_path: Path) -> Callable[[str, Any], Path]:
    """Write JSON (or raw text) under tmp_path and return the path: errors must name the file."""
    import json

    def write(name: str, content: Any) -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else json.dumps(content, indent=1))
        return path

    return write
