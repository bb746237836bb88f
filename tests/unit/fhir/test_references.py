"""Reference resolution: urn:uuid, relative, absolute, contained, conditional, identifier; external ones."""

from __future__ import annotations

from typing import Any

import pytest

from okaflow.tools.fhir import ParsedBundle, load_bundle, read_patient_context

BASE = "https://fhir.example.org/fhir"


@pytest.fixture
def bundle(make_bundle: Any, patient: Any, creatinine: Any) -> ParsedBundle:
    other_server_patient = {**patient("p2")}
    resources = [patient("p1"), creatinine(), other_server_patient]
    built = make_bundle(resources)
    built["entry"][2]["fullUrl"] = "https://other.example.org/fhir/Patient/p2"
    built["entry"].append(
        {
            "fullUrl": "urn:uuid:aa000000-0000-4000-8000-000000000001",
            "resource": {
                "resourceType": "Practitioner",
                "id": "dr1",
                "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999912345"}],
                "contained": [{"resourceType": "Organization", "id": "org", "name": "Clinic"}],
            },
        }
    )
    return load_bundle(built)


def _key(bundle: ParsedBundle, reference: Any, referrer_index: int = 1) -> str | None:
    referrer = next(e for e in bundle.entries if e.index == referrer_index)
    found = bundle.resolve(reference, referrer)
    return None if found is None else found.key


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Patient/p1", "Patient/p1"),  # relative, against the referrer's base
        ("Patient/p1/_history/3", "Patient/p1"),  # version-specific
        (f"{BASE}/Patient/p1", "Patient/p1"),  # absolute, exact fullUrl
        ("https://other.example.org/fhir/Patient/p2", "Patient/p2"),
        ("Patient/p2", "Patient/p2"),  # relative, no fullUrl on that base: by Type/id
        ("urn:uuid:aa000000-0000-4000-8000-000000000001", "Practitioner/dr1"),
        ("Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999912345", "Practitioner/dr1"),
        ("Practitioner?identifier=9999912345", "Practitioner/dr1"),
        ({"identifier": {"system": "urn:example:mrn", "value": "MRN-p1"}, "type": "Patient"}, "Patient/p1"),
        ({"identifier": {"value": "MRN-p2"}}, "Patient/p2"),
    ],
)
def test_resolves(bundle: ParsedBundle, reference: Any, expected: str) -> None:
    assert _key(bundle, reference) == expected


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/p3",  # not in the bundle
        "https://third.example.org/fhir/Patient/p1",  # same Type/id on another server: never confused
        "urn:uuid:aa000000-0000-4000-8000-000000000999",
        "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|0000",
        "Practitioner?name=Smith",  # only identifier searches are resolved
        "#org",  # contained in another resource, not in the referrer
        {"display": "Dr. Nobody"},
    ],
)
def test_external(bundle: ParsedBundle, reference: Any) -> None:
    assert _key(bundle, reference) is None


def test_contained_and_self(bundle: ParsedBundle) -> None:
    practitioner = bundle.get("Practitioner/dr1")
    assert practitioner is not None
    contained = bundle.resolve("#org", practitioner)
    assert contained is not None and contained.contained
    assert contained.key == "Practitioner/dr1#org"
    assert contained.resource["name"] == "Clinic"
    itself = bundle.resolve("#", practitioner)
    assert itself is not None and itself.entry is practitioner and not itself.contained


def test_absolute_reference_to_a_uuid_bundle_matches_by_type_and_id(
    make_bundle: Any, patient: Any, creatinine: Any
) -> None:
    # Exports that give resources urn:uuid fullUrls but keep server URLs in references.
    bundle = load_bundle(make_bundle([patient(), creatinine(subject=f"{BASE}/Patient/p1")], full_urls="uuid"))
    assert _key(bundle, f"{BASE}/Patient/p1") == "Patient/p1"


def test_identifier_matching_two_resources_is_not_resolved(make_bundle: Any, patient: Any) -> None:
    twins = [patient("p1"), patient("p2")]
    for p in twins:
        p["identifier"] = [{"value": "SAME"}]
    bundle = load_bundle(make_bundle(twins))
    assert bundle.resolve("Patient?identifier=SAME", None) is None


def test_external_references_are_warned_once_per_type(make_bundle: Any, patient: Any, creatinine: Any) -> None:
    obs = [creatinine(oid=f"o{i}") for i in range(3)]
    for o in obs:
        o["performer"] = [{"reference": "Practitioner/elsewhere"}, {"reference": "Organization/lab"}]
    warnings = load_bundle(make_bundle([patient(), *obs])).warnings
    assert warnings == (
        "3 references to Organization not in the bundle (kept as external), "
        "e.g. entry[1].resource.performer[1].reference = 'Organization/lab'",
        "3 references to Practitioner not in the bundle (kept as external), "
        "e.g. entry[1].resource.performer[0].reference = 'Practitioner/elsewhere'",
    )


def test_subject_by_logical_id_on_another_base_is_kept_with_a_warning(
    make_bundle: Any, patient: Any, creatinine: Any
) -> None:
    ctx = read_patient_context(
        make_bundle([patient(), creatinine(subject="http://internal-host:8080/fhir/Patient/p1")])
    )
    assert [o.id for o in ctx.observations] == ["Observation/cr1"]
    assert any("matched to Patient/p1 by logical id" in w for w in ctx.warnings)


def test_each_reference_form_links_a_fact_to_its_patient(make_bundle: Any, patient: Any, creatinine: Any) -> None:
    built = make_bundle(
        [patient(), creatinine("a"), creatinine("b"), creatinine("c"), creatinine("d")], full_urls="uuid"
    )
    uuid = built["entry"][0]["fullUrl"]
    built["entry"][1]["resource"]["subject"] = {"reference": uuid}
    built["entry"][2]["resource"]["subject"] = {"reference": "Patient/p1"}
    built["entry"][3]["resource"]["subject"] = {"identifier": {"system": "urn:example:mrn", "value": "MRN-p1"}}
    built["entry"][4]["resource"]["subject"] = {"reference": "Patient?identifier=urn:example:mrn|MRN-p1"}
    ctx = read_patient_context(built)
    assert [o.id for o in ctx.observations] == [f"Observation/{x}" for x in "abcd"]
    assert ctx.warnings == []
