"""De-identification pieces: keyed pseudonyms, date shifts, free-text scrubbing, FHIR bundles, DICOM headers."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from okaflow import DeidentificationError
from okaflow._case import resolve_image_path
from okaflow.tools.deid import Pseudonymizer, deidentify_bundle, deidentify_dicom


def pseudonyms(shift: int = -100, key: str = "test-key") -> Pseudonymizer:
    return Pseudonymizer.create(key, shift)


def test_pseudonyms_are_keyed_consistent_and_valid() -> None:
    a, b, other = pseudonyms(), pseudonyms(), pseudonyms(key="another")
    uid = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
    assert a.uid(uid) == b.uid(uid) != other.uid(uid)
    new = a.uid(uid)
    assert new.startswith("2.25.") and len(new) <= 64 and all(p.isdigit() for p in new.split("."))
    assert a.identifier("MRN-0042") == b.identifier("MRN-0042") != other.identifier("MRN-0042")
    assert a.identifier(" MRN-0042 ") == a.identifier("MRN-0042")  # padding in DICOM LO values
    rid = a.resource_id("Patient", "p1")
    assert len(rid) <= 64 and rid.isalnum()
    # The date shift is derived from the key when not given, always 30 to 365 days back.
    shifts = {Pseudonymizer.create(f"k{i}").date_shift_days for i in range(50)}
    assert all(-365 <= s <= -30 for s in shifts) and len(shifts) > 10
    assert Pseudonymizer.create("k1").date_shift_days == Pseudonymizer.create("k1").date_shift_days
    assert Pseudonymizer.create().key != Pseudonymizer.create().key  # random key by default


@pytest.mark.parametrize(
    ("value", "shifted"),
    [
        ("2004-07-14", "2004-04-05"),
        ("2004-07-14T10:20:30+02:00", "2004-04-05T10:20:30+02:00"),
        ("2004-07-14T10:20:30.123Z", "2004-04-05T10:20:30.123Z"),
        ("2004-07", "2004-04"),  # precision kept: the middle of the month moves
        ("2004", "2004"),  # the middle of the year moves
        ("not a date", "not a date"),
    ],
)
def test_fhir_dates_move_at_their_precision(value: str, shifted: str) -> None:
    assert pseudonyms().shift_fhir_date(value) == shifted


def test_dicom_dates_move_and_unmovable_values_are_emptied() -> None:
    p = pseudonyms()
    assert p.shift_dicom_date("20040714", "DA") == "20040405"
    assert p.shift_dicom_date("20040714102030.5+0200", "DT") == "20040405102030.5+0200"
    assert p.shift_dicom_date("2004-07-14", "DA") == ""  # not DICOM's format: cannot be moved honestly


def test_free_text_is_scrubbed_without_harming_clinical_words() -> None:
    p = pseudonyms()
    family, given = p.person_name("Lung", ["Avery"], "Practitioner")
    patient, _ = p.person_name("Testcase", ["Jordan"], "Patient")
    p.identifier("CQ500-CT-310")
    p.identifier("10")  # too short to search for in text
    uid = p.uid("1.2.3.4.5")
    text = (
        "Dr Avery Lung reviewed Jordan Testcase (JORDAN TESTCASE, MRN CQ500-CT-310) for chronic obstructive lung "
        "disease; Testcase takes 10 mg. Study 1.2.3.4.5 (not 1.2.3.4.56) on 2004-07-14, onset July 2004."
    )
    out = p.scrub_text(text)
    assert "Avery Lung" not in out and "Jordan Testcase" not in out and "JORDAN TESTCASE" not in out
    assert f"Anon {family}" in out and f"Anon {patient}" in out and given == ["Anon"]
    assert "chronic obstructive lung disease" in out  # a clinician's surname is not a word to erase
    assert f"{patient} takes 10 mg" in out  # a patient's surname alone is; a short id is not
    assert "CQ500-CT-310" not in out and p.identifier("CQ500-CT-310") in out
    assert uid in out and "1.2.3.4.56" in out
    assert "2004-04-05" in out and "April 2004" in out
    assert p.found_in(text) == {"person name", "patient name part", "identifier", "DICOM UID"}
    assert p.found_in(out) == set()


def _bundle() -> dict[str, object]:
    return {
        "resourceType": "Bundle",
        "id": "b-1",
        "type": "collection",
        "timestamp": "2011-05-25T15:00:00Z",
        "link": [{"relation": "self", "url": "https://ehr.example.org/fhir/Patient/mrn-77/$everything"}],
        "entry": [
            {
                "fullUrl": "urn:uuid:0c000000-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "Patient",
                    "id": "mrn-77",
                    "text": {"status": "generated", "div": "<div>Sam Placeholder</div>"},
                    "identifier": [{"system": "urn:mrn", "value": "11-05-25-142825"}],
                    "name": [{"family": "Placeholder", "given": ["Sam"], "text": "Sam Placeholder"}],
                    "telecom": [{"system": "phone", "value": "555-0100"}],
                    "address": [{"city": "Springfield"}],
                    "birthDate": "1984-09-30",
                    "extension": [
                        {
                            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                            "valueAddress": {"city": "X"},
                        }
                    ],
                },
            },
            {
                "fullUrl": "https://ehr.example.org/fhir/ImagingStudy/st-9",
                "resource": {
                    "resourceType": "ImagingStudy",
                    "id": "st-9",
                    "status": "available",
                    "subject": {
                        "reference": "urn:uuid:0c000000-0000-4000-8000-000000000001",
                        "display": "Sam Placeholder",
                    },
                    "started": "2011-05-25T14:28:25Z",
                    "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.840.113619.2.1.1"}],
                    "series": [{"uid": "1.2.840.113619.2.1.2", "modality": {"code": "US"}}],
                },
            },
            {
                "fullUrl": "urn:uuid:0c000000-0000-4000-8000-000000000003",
                "resource": {
                    "resourceType": "Observation",
                    "id": "obs-1",
                    "status": "final",
                    "contained": [{"resourceType": "Device", "id": "probe"}],
                    "device": {"reference": "#probe"},
                    "subject": {"reference": "https://ehr.example.org/fhir/Patient/mrn-77"},
                    "effectiveDateTime": "2011-05-25",
                    "valueString": "Seen with Sam Placeholder's partner on 2011-05-20",
                    "note": [{"text": "Placeholder reports no pain", "time": "2011-05-25T14:00:00Z"}],
                    "code": {"text": "Comment"},
                },
            },
        ],
    }


def test_a_fhir_bundle_keeps_its_links_and_loses_its_identifiers() -> None:
    p = pseudonyms()
    original = _bundle()
    out = deidentify_bundle(original, p)
    assert original == _bundle()  # the input is not changed
    text = json.dumps(out)
    for gone in ("Placeholder", "11-05-25-142825", "555-0100", "Springfield", "mrn-77", "ehr.example.org", "st-9"):
        assert gone not in text, gone
    patient, study, obs = (e["resource"] for e in out["entry"])  # type: ignore[index]
    assert "id" not in out and "link" not in out and out["timestamp"] == "2011-02-14T15:00:00Z"
    assert "text" not in patient and "telecom" not in patient and "address" not in patient
    assert "extension" in patient and "valueAddress" not in patient["extension"][0]
    assert patient["birthDate"] == "1984-06-22"
    assert patient["identifier"][0] == {"system": "urn:mrn", "value": p.identifier("11-05-25-142825")}
    # References still resolve: urn:uuid stays a UUID, absolute URLs become relative, contained stays local.
    assert study["subject"]["reference"] == out["entry"][0]["fullUrl"]  # type: ignore[index]
    assert obs["subject"]["reference"] == f"Patient/{patient['id']}"
    assert obs["device"]["reference"] == "#probe" and obs["contained"][0]["id"] == "probe"
    assert out["entry"][1]["fullUrl"] == f"ImagingStudy/{study['id']}"  # type: ignore[index]
    # DICOM UIDs get the UIDs the DICOM side gets; dates move together.
    assert study["identifier"][0]["value"] == f"urn:oid:{p.uid('1.2.840.113619.2.1.1')}"
    assert study["series"][0]["uid"] == p.uid("1.2.840.113619.2.1.2")
    assert study["started"] == "2011-02-14T14:28:25Z" and obs["effectiveDateTime"] == "2011-02-14"
    assert obs["valueString"] == f"Seen with Anon {patient['name'][0]['family']}'s partner on 2011-02-09"
    assert obs["note"][0] == {"text": f"{patient['name'][0]['family']} reports no pain", "time": "2011-02-14T14:00:00Z"}
    assert "display" not in study["subject"] or "Placeholder" not in study["subject"]["display"]


def _dicom(tmp_path: Path, **attrs: object) -> Path:
    ds = pydicom.dcmread(resolve_image_path("pydicom:CT_small.dcm", tmp_path))
    for name, value in attrs.items():
        setattr(ds, name, value)
    ds.add_new(0x00091001, "LO", "private site data")  # a private attribute (needs a creator to be valid)
    path = tmp_path / "in.dcm"
    ds.save_as(path)
    return path


def test_dicom_follows_the_basic_profile_with_consistent_pseudonyms(tmp_path: Path) -> None:
    p = pseudonyms()
    source = _dicom(
        tmp_path, InstitutionName="Example Hospital", ReferringPhysicianName="Lung^Avery", OtherPatientIDs="X-1"
    )
    before = pydicom.dcmread(source)
    deidentify_dicom(source, tmp_path / "out.dcm", p)
    after = pydicom.dcmread(tmp_path / "out.dcm")
    assert after.PatientIdentityRemoved == "YES"
    assert [c.CodeValue for c in after.DeidentificationMethodCodeSequence] == ["113100", "113107"]
    assert after.PatientID == p.identifier(before.PatientID)
    assert after.StudyInstanceUID == p.uid(before.StudyInstanceUID)
    assert after.SOPInstanceUID == p.uid(before.SOPInstanceUID) == after.file_meta.MediaStorageSOPInstanceUID
    assert after.SOPClassUID == before.SOPClassUID  # what the object is, not who it is about
    assert after.StudyDate == p.shift_dicom_date(before.StudyDate, "DA")
    assert after.StudyTime == before.StudyTime  # whole-day shift: times are kept
    assert str(after.PatientName).startswith("Patient-") and str(after.ReferringPhysicianName).startswith("Person-")
    assert "InstitutionName" not in after and "OtherPatientIDs" not in after  # the profile's X: removed
    assert not any(e.tag.is_private for e in after.iterall())
    assert (after.pixel_array == before.pixel_array).all()  # pixel data is not altered


def test_dicom_with_burned_in_annotation_or_not_dicom_is_refused(tmp_path: Path) -> None:
    source = _dicom(tmp_path, BurnedInAnnotation="YES")
    with pytest.raises(DeidentificationError, match="burned-in annotation"):
        deidentify_dicom(source, tmp_path / "out.dcm", pseudonyms())
    (tmp_path / "bad.dcm").write_bytes(b"not dicom")
    with pytest.raises(DeidentificationError, match="not a DICOM file"):
        deidentify_dicom(tmp_path / "bad.dcm", tmp_path / "out2.dcm", pseudonyms())
    assert not (tmp_path / "out.dcm").exists() and not (tmp_path / "out2.dcm").exists()


def test_an_identifiers_assigner_reference_is_pseudonymised_like_any_reference() -> None:
    p = pseudonyms()
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Organization", "id": "hosp-1", "name": "Placeholder Hospital"}},
            {
                "resource": {
                    "resourceType": "Patient",
                    "id": "pat-1",
                    "identifier": [
                        {"value": "MRN-4242", "assigner": {"reference": "Organization/hosp-1", "display": "Hosp"}}
                    ],
                }
            },
        ],
    }
    out = deidentify_bundle(bundle, p)
    organization, patient = (e["resource"] for e in out["entry"])  # type: ignore[index]
    assert "hosp-1" not in json.dumps(out), "the assigner still names the original Organization id"
    assert patient["identifier"][0]["assigner"] == {"reference": f"Organization/{organization['id']}"}


def test_options_that_would_do_nothing_are_refused(tmp_path: Path) -> None:
    import okaflow

    with pytest.raises(okaflow.ConfigurationError, match="pseudonym key is empty"):
        Pseudonymizer.create(key=b"")
    with pytest.raises(okaflow.ConfigurationError, match="only apply to a de-identified export"):
        okaflow.export_run(tmp_path / "run", tmp_path / "out.zip", key="k")
    assert not (tmp_path / "out.zip").exists()


def test_a_case_bundle_keeps_its_decimals_and_may_carry_a_bom(tmp_path: Path) -> None:
    from okaflow.tools.deid import deidentify_case

    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Observation", "id": "o-1", "status": "final",
                                "code": {"text": "Hb"}, "valueQuantity": {"value": 1.40, "unit": "g/dL"}}}],
    }  # fmt: skip
    source = tmp_path / "case"
    source.mkdir()
    text = json.dumps(bundle).replace("1.4", "1.40")
    (source / "bundle.json").write_bytes(b"\xef\xbb\xbf" + text.encode())  # a Windows export's BOM
    done = deidentify_case(source, ["bundle.json"], tmp_path / "out", pseudonyms())
    written = (tmp_path / "out" / done.files["bundle.json"]).read_text(encoding="utf-8")
    assert '"value": 1.40' in written and "o-1" not in written
