"""load_bundle: sources, bundle types, release detection, duplicates and server messages."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import okaflow.tools.fhir as fhir_api
from okaflow.tools.fhir import load_bundle, read_patient_context

DATA = Path(__file__).resolve().parents[2] / "data" / "fhir"

BUNDLE_TYPES = [
    "collection",
    "searchset",
    "transaction",
    "batch",
    "transaction-response",
    "batch-response",
    "history",
    "document",
    "message",
]


def _lead_resource(bundle_type: str, version: str) -> list[dict[str, Any]]:
    """Documents start with a Composition, messages with a MessageHeader (shapes differ by release)."""
    subject = {"reference": "Patient/p1"}
    if bundle_type == "document":
        return [
            {
                "resourceType": "Composition",
                "id": "comp",
                "status": "final",
                "type": {"text": "Discharge summary"},
                "subject": [subject] if version == "R5" else subject,
                "date": "2026-03-02",
                "author": [{"display": "Dr. Example"}],
                "title": "Discharge summary",
            }
        ]
    if bundle_type == "message":
        source = {"endpointUrl": "urn:example:src"} if version == "R5" else {"endpoint": "urn:example:src"}
        return [
            {
                "resourceType": "MessageHeader",
                "id": "mh",
                "eventCoding": {"system": "urn:example:events", "code": "lab-result"},
                "source": source,
            }
        ]
    return []


@pytest.mark.parametrize("bundle_type", BUNDLE_TYPES)
@pytest.mark.parametrize("version", ["R4", "R5"])
def test_every_bundle_type_in_both_releases(
    bundle_type: str, version: str, make_bundle: Any, r4_resources: Any, r5_resources: Any
) -> None:
    resources = r4_resources if version == "R4" else r5_resources
    bundle = load_bundle(make_bundle(_lead_resource(bundle_type, version) + resources, bundle_type))

    assert bundle.version == version
    assert bundle.bundle_type == bundle_type
    assert bundle.warnings == ()
    ctx = read_patient_context(make_bundle(_lead_resource(bundle_type, version) + resources, bundle_type))
    assert ctx.fhir_version == version
    assert ctx.patient is not None and ctx.patient.id == "Patient/p1"
    assert [m.text for m in ctx.medications] == ["Amlodipine 5 mg tablet"]
    assert [e.encounter_class for e in ctx.encounters] == ["AMB"]
    assert ctx.observations[0].value == 1.4


def test_r4_models_come_from_r4b_and_r5_from_the_default_package(
    make_bundle: Any, r4_resources: Any, r5_resources: Any
) -> None:
    r4 = load_bundle(make_bundle(r4_resources))
    r5 = load_bundle(make_bundle(r5_resources))
    assert type(r4.entries[0].model).__module__ == "fhir.resources.R4B.patient"
    assert type(r5.entries[0].model).__module__ == "fhir.resources.patient"


def test_sources_path_str_text_bytes_dict_and_gzip(tmp_path: Path) -> None:
    text = (DATA / "r4_collection.json").read_text()
    gz = tmp_path / "bundle.json.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    loaded = [
        load_bundle(DATA / "r4_collection.json"),
        load_bundle(str(DATA / "r4_collection.json")),
        load_bundle(text),
        load_bundle(b"\xef\xbb\xbf" + text.encode()),  # a UTF-8 BOM is accepted
        load_bundle(json.loads(text)),
        load_bundle(gz),
    ]
    assert [b.source for b in loaded] == [
        str(DATA / "r4_collection.json"),
        str(DATA / "r4_collection.json"),
        "<json text>",
        "<bytes>",
        "<dict>",
        str(gz),
    ]
    assert {tuple(e.key for e in b.entries) for b in loaded} == {tuple(e.key for e in loaded[0].entries)}


def test_dict_source_is_not_modified(make_bundle: Any, r4_resources: Any) -> None:
    bundle = make_bundle(r4_resources)
    before = json.dumps(bundle, sort_keys=True)
    load_bundle(bundle).entries[0].resource["gender"] = "changed"
    assert json.dumps(bundle, sort_keys=True) == before


def test_decimals_stay_as_written() -> None:
    text = '{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"p1"}},'
    text += '{"resource":{"resourceType":"Observation","id":"o","status":"final","code":{"text":"HbA1c"},'
    text += '"subject":{"reference":"Patient/p1"},"valueQuantity":{"value":8.0,"unit":"%"}}}]}'
    bundle = load_bundle(text)
    assert bundle.entries[1].resource["valueQuantity"]["value"] == Decimal("8.0")
    ctx = read_patient_context(text)
    assert ctx.observations[0].value_as_written == "8.0"
    assert "HbA1c 8.0 %" in ctx.evidence()[1].summary


def test_bare_patient_is_wrapped_with_a_warning(patient: Any) -> None:
    bundle = load_bundle(patient())
    assert bundle.bundle_type == "collection"
    assert [e.key for e in bundle.entries] == ["Patient/p1"]
    assert any("bare Patient" in w for w in bundle.warnings)


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("http://hl7.org/fhir/StructureDefinition/Patient|4.0.1", "R4"),
        ("http://hl7.org/fhir/StructureDefinition/Patient|4.3.0", "R4B"),
        ("http://hl7.org/fhir/StructureDefinition/Patient|5.0.0", "R5"),
        ("http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient", "R4"),
    ],
)
def test_declared_profile_decides_the_release(make_bundle: Any, patient: Any, profile: str, expected: str) -> None:
    resource = {**patient(), "meta": {"profile": [profile]}}
    bundle = load_bundle(make_bundle([resource]))
    assert bundle.version == expected
    assert profile in bundle.version_reason


def test_capability_statement_fhir_version_decides(make_bundle: Any, patient: Any) -> None:
    capability = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
    }
    bundle = load_bundle(make_bundle([capability, patient()]))
    assert bundle.version == "R4"
    assert "4.0.1" in bundle.version_reason


def test_shapes_decide_when_nothing_is_declared(make_bundle: Any, r4_resources: Any, r5_resources: Any) -> None:
    r4 = load_bundle(make_bundle(r4_resources))
    r5 = load_bundle(make_bundle(r5_resources))
    assert (r4.version, r5.version) == ("R4", "R5")
    assert "medicationCodeableConcept" in r4.version_reason
    assert "R5 only" in r5.version_reason


def test_no_release_specific_shapes_reads_as_r5(make_bundle: Any, patient: Any, creatinine: Any) -> None:
    bundle = load_bundle(make_bundle([patient(), creatinine()]))
    assert bundle.version == "R5"
    assert "no release-specific shapes" in bundle.version_reason


def test_trial_validation_picks_r4_when_only_r4_models_accept(make_bundle: Any, patient: Any) -> None:
    # Observation.valueQuantity fits both; MedicationDispense.context is R4-only and not a listed shape.
    dispense = {
        "resourceType": "MedicationDispense",
        "id": "md1",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"text": "Amoxicillin"},
        "context": {"reference": "Encounter/e1"},
    }
    bundle = load_bundle(make_bundle([patient(), dispense]))
    assert bundle.version == "R4"
    assert "validates with the R4(B) models but not R5" in bundle.version_reason


def test_explicit_version_wins_over_detection(make_bundle: Any, patient: Any, creatinine: Any) -> None:
    bundle = load_bundle(make_bundle([patient(), creatinine()]), version="R4B")
    assert bundle.version == "R4B"
    assert bundle.version_reason == "given by the caller"


def test_duplicate_resources_keep_the_first_with_a_warning(make_bundle: Any, patient: Any, creatinine: Any) -> None:
    bundle = load_bundle(make_bundle([patient(), creatinine(value=1.4), creatinine(value=2.0)]))
    assert [e.index for e in bundle.entries] == [0, 1]
    assert any("entry[2] repeats Observation/cr1 (first at entry[1])" in w for w in bundle.warnings)


def test_history_bundles_repeat_versions_without_warning(make_bundle: Any, patient: Any, creatinine: Any) -> None:
    bundle = load_bundle(make_bundle([patient(), creatinine(value=2.0), creatinine(value=1.4)], "history"))
    assert bundle.warnings == ()
    assert bundle.entries[1].resource["valueQuantity"]["value"] == 2.0  # newest first


def test_entries_without_resource(make_bundle: Any, patient: Any) -> None:
    response = make_bundle([patient()], "transaction-response")
    response["entry"].append({"response": {"status": "204 No Content"}})
    assert load_bundle(response).warnings == ()

    collection = make_bundle([patient()])
    collection["entry"].append({"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000099"})
    assert "entry[1] has no resource and was skipped" in load_bundle(collection).warnings


def test_searchset_outcome_entries_become_warnings() -> None:
    bundle = load_bundle(DATA / "r5_everything.json")
    assert "server OperationOutcome at entry[12].resource: warning: Claim resources omitted" in "\n".join(
        bundle.warnings
    )
    assert bundle.entries[-1].search_mode == "outcome"
    assert bundle.get("Medication/med5") is not None and bundle.get("Medication/med5").search_mode == "include"


def test_resources_without_id_are_keyed_by_their_uuid_or_position(patient: Any) -> None:
    nameless = {k: v for k, v in patient().items() if k != "id"}
    bundle = load_bundle(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": "urn:uuid:5e7a0000-0000-4000-8000-000000000001",
                    "resource": nameless,
                    "request": {"method": "POST", "url": "Patient"},
                },
                {"resource": nameless, "request": {"method": "POST", "url": "Patient"}},
            ],
        }
    )
    assert [e.key for e in bundle.entries] == ["Patient/5e7a0000-0000-4000-8000-000000000001", "Patient/entry-1"]


def test_public_api_is_sorted_and_importable() -> None:
    assert fhir_api.__all__ == sorted(fhir_api.__all__)
    for name in fhir_api.__all__:
        assert getattr(fhir_api, name) is not None
    assert {"load_bundle", "build_patient_context", "read_patient_context", "patient_evidence"} <= set(fhir_api.__all__)
