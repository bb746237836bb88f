"""Every way a bundle can be unusable gives a typed error naming the file, the place in it and the fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from okaflow import FHIRError, FHIRParseError, FHIRReferenceError, InputError
from okaflow.tools.fhir import build_patient_context, load_bundle, read_patient_context

DATA = Path(__file__).resolve().parents[2] / "data" / "fhir"
WriteJSON = Callable[[str, Any], Path]


def test_errors_are_input_errors() -> None:
    assert issubclass(FHIRParseError, FHIRError) and issubclass(FHIRReferenceError, FHIRError)
    assert issubclass(FHIRError, InputError)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FHIRParseError, match="file not found") as info:
        load_bundle(tmp_path / "nope.json")
    assert info.value.source == str(tmp_path / "nope.json")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(FHIRParseError, match="is a directory"):
        load_bundle(tmp_path)


def test_invalid_json_names_line_and_column() -> None:
    path = DATA / "broken_syntax.json"
    with pytest.raises(FHIRParseError) as info:
        load_bundle(path)
    assert info.value.source == str(path)
    assert info.value.location == "line 6, column 3"  # the "]" after the trailing comma
    assert "broken_syntax.json at line 6, column 3: invalid JSON" in str(info.value)
    assert "trailing comma" in (info.value.hint or "")


def test_not_utf8(write_json: WriteJSON, tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('{"resourceType": "Bundle", "type": "collection", "id": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(FHIRParseError, match="not UTF-8") as info:
        load_bundle(path)
    assert "latin1.json" in str(info.value)


@pytest.mark.parametrize(
    ("content", "location", "message"),
    [
        ("[1, 2]", "$", "expected a JSON object"),
        ('{"type": "collection"}', "resourceType", "there is no resourceType"),
        ('{"resourceType": "Observation", "status": "final"}', "resourceType", "resourceType is 'Observation'"),
    ],
)
def test_not_a_bundle(write_json: WriteJSON, content: str, location: str, message: str) -> None:
    path = write_json("thing.json", content)
    with pytest.raises(FHIRParseError, match=message) as info:
        load_bundle(path)
    assert info.value.location == location
    assert f"thing.json at {location}" in str(info.value)
    assert info.value.hint


def test_operation_outcome_reports_the_server_diagnostics(write_json: WriteJSON) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "forbidden", "diagnostics": "Token lacks patient/*.read"}],
    }
    with pytest.raises(FHIRParseError, match=r"error: Token lacks patient/\*\.read") as info:
        load_bundle(write_json("answer.json", outcome))
    assert "answer.json" in str(info.value)


def test_entry_failing_the_model_names_the_json_path(
    write_json: WriteJSON, make_bundle: Any, patient: Any, creatinine: Any
) -> None:
    bad = creatinine()
    bad["valueQuantity"]["value"] = "1,4"
    path = write_json("labs.json", make_bundle([patient(), bad]))
    with pytest.raises(FHIRParseError) as info:
        load_bundle(path)
    err = info.value
    assert err.location == "entry[1].resource.valueQuantity.value"
    assert "labs.json at entry[1].resource.valueQuantity.value" in str(err)
    assert "Observation/cr1 does not validate as FHIR" in str(err)
    assert "'1,4'" in str(err)
    assert "strict=False" in (err.hint or "")


def test_element_of_the_other_release_is_named(make_bundle: Any, patient: Any) -> None:
    r5_only = {
        "resourceType": "MedicationRequest",
        "id": "mr1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medication": {"concept": {"text": "Aspirin"}},
    }
    with pytest.raises(FHIRParseError, match="'medication' is not an element here in FHIR R4") as info:
        load_bundle(make_bundle([patient(), r5_only]), version="R4")
    assert info.value.location == "entry[1].resource.medication"
    assert "version='R5'" in (info.value.hint or "")


def test_nested_list_location(make_bundle: Any, patient: Any, creatinine: Any) -> None:
    obs = creatinine()
    obs["component"] = [
        {"code": {"text": "a"}, "valueQuantity": {"value": 1}},
        {"code": {"text": "b"}, "valueQuantity": {"value": "x"}},
    ]
    with pytest.raises(FHIRParseError) as info:
        load_bundle(make_bundle([patient(), obs]))
    assert info.value.location == "entry[1].resource.component[1].valueQuantity.value"


def test_unknown_resource_type(make_bundle: Any, patient: Any) -> None:
    with pytest.raises(FHIRParseError, match="unknown resource type 'Foo'") as info:
        load_bundle(make_bundle([patient(), {"resourceType": "Foo", "id": "x"}]))
    assert info.value.location == "entry[1].resource.resourceType"


def test_unknown_contained_type_is_a_parse_error_not_a_crash(make_bundle: Any, patient: Any) -> None:
    resource = {**patient(), "contained": [{"resourceType": "Foo", "id": "x"}]}
    with pytest.raises(FHIRParseError, match="Patient/p1 does not validate"):
        load_bundle(make_bundle([resource]))


@pytest.mark.parametrize(
    ("mutate", "location"),
    [
        (lambda b: b.pop("type"), "type"),
        (lambda b: b.update(entry={"resource": {}}), "entry"),
        (lambda b: b["entry"].append("text"), "entry[1]"),
        (lambda b: b["entry"].append({"resource": {"id": "x"}}), "entry[1].resource.resourceType"),
        (lambda b: b["entry"][0].update(request={"url": "Patient/p1"}), "entry[0].request.method"),
    ],
)
def test_bundle_shell_errors(
    make_bundle: Any, patient: Any, mutate: Callable[[dict[str, Any]], Any], location: str
) -> None:
    bundle = make_bundle([patient()])
    mutate(bundle)
    with pytest.raises(FHIRParseError) as info:
        load_bundle(bundle)
    assert info.value.location == location
    assert "<dict>" in str(info.value)


def test_all_failing_entries_are_listed(make_bundle: Any, patient: Any, creatinine: Any) -> None:
    bad = [creatinine(oid=f"o{i}") for i in range(3)]
    for obs in bad:
        obs["status"] = 5
    with pytest.raises(FHIRParseError, match=r"also failing: entry\[2\], entry\[3\]") as info:
        load_bundle(make_bundle([patient(), *bad]))
    assert info.value.location == "entry[1].resource.status"


def test_strict_false_skips_bad_entries_and_says_so(make_bundle: Any, patient: Any, creatinine: Any) -> None:
    bad = creatinine(oid="bad")
    bad["effectiveDateTime"] = "yesterday"
    ctx = read_patient_context(make_bundle([patient(), creatinine(), bad]), strict=False)
    assert [o.id for o in ctx.observations] == ["Observation/cr1"]
    skipped = [w for w in ctx.warnings if w.startswith("skipped entry[2]")]
    assert len(skipped) == 1
    assert "Observation/bad" in skipped[0] and "entry[2].resource.effectiveDateTime" in skipped[0]


def test_entry_level_shell_error_is_skippable(make_bundle: Any, patient: Any, creatinine: Any) -> None:
    bundle = make_bundle([patient(), creatinine()], "transaction")
    bundle["entry"][1]["request"] = {"url": "Observation/cr1"}  # no method
    bundle["entry"][1]["resource"]["status"] = 5  # and a bad resource: still one warning for the entry
    loaded = load_bundle(bundle, strict=False)
    assert [e.key for e in loaded.entries] == ["Patient/p1"]
    skipped = [w for w in loaded.warnings if w.startswith("skipped")]
    assert skipped == [
        "skipped entry[1]: Bundle does not validate as FHIR R5: required element 'method' is missing "
        "(at entry[1].request.method)"
    ]


def test_bundle_with_no_patient(write_json: WriteJSON, make_bundle: Any, creatinine: Any) -> None:
    path = write_json("orphans.json", make_bundle([creatinine()]))
    bundle = load_bundle(path)
    with pytest.raises(FHIRParseError, match="no Patient resource") as info:
        build_patient_context(bundle)
    assert "orphans.json" in str(info.value) and "$everything" in (info.value.hint or "")


def test_several_patients_need_a_choice(write_json: WriteJSON, make_bundle: Any, patient: Any) -> None:
    path = write_json("family.json", make_bundle([patient("p1"), patient("p2")]))
    with pytest.raises(FHIRReferenceError, match="2 Patients") as info:
        read_patient_context(path)
    assert info.value.location == "entry[0], entry[1]"
    assert "patient_id=" in (info.value.hint or "") and "Patient/p2" in (info.value.hint or "")
    assert "family.json" in str(info.value)


def test_patient_id_that_matches_nothing(make_bundle: Any, patient: Any) -> None:
    with pytest.raises(FHIRReferenceError, match="'p9' matches no Patient"):
        read_patient_context(make_bundle([patient("p1"), patient("p2")]), patient_id="p9")


def test_identifier_shared_by_two_patients_is_ambiguous(make_bundle: Any, patient: Any) -> None:
    twins = [patient("p1"), patient("p2")]
    for p in twins:
        p["identifier"] = [{"value": "SAME"}]
    with pytest.raises(FHIRReferenceError, match="matches 2 Patients by identifier"):
        read_patient_context(make_bundle(twins), patient_id="SAME")


def test_fact_pointing_at_a_missing_patient(
    write_json: WriteJSON, make_bundle: Any, patient: Any, creatinine: Any
) -> None:
    path = write_json("dangling.json", make_bundle([patient(), creatinine(subject="Patient/ghost")]))
    with pytest.raises(FHIRReferenceError, match="'Patient/ghost', which is not in the bundle") as info:
        read_patient_context(path)
    assert info.value.location == "entry[1].resource.subject.reference"
    assert "dangling.json at entry[1].resource.subject.reference" in str(info.value)
    assert "strict=False" in (info.value.hint or "")


def test_unresolved_urn_subject_is_also_an_error(make_bundle: Any, patient: Any, creatinine: Any) -> None:
    with pytest.raises(FHIRReferenceError):
        read_patient_context(
            make_bundle([patient(), creatinine(subject="urn:uuid:1b0e7e05-0000-4000-8000-000000000000")])
        )


def test_missing_patient_is_left_out_with_a_warning_when_not_strict(
    make_bundle: Any, patient: Any, creatinine: Any
) -> None:
    ctx = read_patient_context(
        make_bundle([patient(), creatinine(), creatinine(oid="cr2", subject="Patient/ghost")]), strict=False
    )
    assert [o.id for o in ctx.observations] == ["Observation/cr1"]
    assert any("Observation/cr2.subject points at 'Patient/ghost'" in w and "left out" in w for w in ctx.warnings)
