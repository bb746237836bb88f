"""Case loading from folders, files and objects: roles, cross-checks, and errors that name the input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from okaflow import Case, CaseError
from okaflow.tools.imaging import load_image

from .conftest import EXAMPLES, pydicom_file

pytestmark = pytest.mark.integration
CT_BUNDLE = EXAMPLES / "chest-ct-followup" / "bundle.json"


def test_folder_without_case_json_takes_bundle_and_image_files(tmp_path: Path) -> None:
    shutil.copy(CT_BUNDLE, tmp_path / "bundle.json")
    (tmp_path / "images").mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), tmp_path / "images" / "ct.dcm")
    case = Case.load(tmp_path)
    assert case.id == tmp_path.name
    assert [i.modality.value for i in case.images] == ["CT"]
    assert case.roles == {case.images[0].id: "current"}
    assert case.patient.patient is not None
    # Every fact and every image is a row of the evidence table, ids unique.
    ids = [e.id for e in case.evidence()]
    assert len(ids) == len(set(ids)) and case.images[0].id in ids
    assert set(case.input_hashes()) == {"bundle.json", "images/ct.dcm"}  # portable: relative to the case


def test_roles_follow_study_dates_when_not_given(tmp_path: Path) -> None:
    older, newer = load_image(pydicom_file("CT_small.dcm")), load_image(pydicom_file("MR_small.dcm"))
    case = Case.from_objects(Case.load(EXAMPLES / "chest-ct-followup").patient, [newer, older])
    assert case.roles == {older.id: "prior", newer.id: "current"}  # 2004-01-19 < 2004-08-26


def test_cross_checks_warn_about_patient_and_study_mismatches() -> None:
    patient = Case.load(EXAMPLES / "chest-ct-followup").patient
    mr = load_image(pydicom_file("MR_small.dcm"))
    warnings = Case.from_objects(patient, [mr]).warnings
    assert any("PatientID '4MR1' matches no identifier" in w for w in warnings)
    assert any("has no ImagingStudy in the bundle" in w for w in warnings)
    assert any("no image of it was loaded" in w for w in warnings)


def test_duplicate_image_ids_are_refused() -> None:
    ct = load_image(pydicom_file("CT_small.dcm"))
    with pytest.raises(CaseError, match="share the id"):
        Case.from_objects(Case.load(EXAMPLES / "brain-mri").patient, [ct, ct])


@pytest.mark.parametrize(
    ("images", "message", "location"),
    [
        ([{"path": "pydicom:not_a_file.dcm"}], "pydicom ships no test file", "images[0]"),
        ([{"path": "missing.dcm"}], "does not exist", "images[0]"),
        ([{"path": "pydicom:CT_small.dcm", "colour": "red"}], "unknown keys", "images[0]"),
        ([{"modality": "CT"}], "needs a 'path'", "images[0]"),
    ],
)
def test_case_json_errors_name_file_and_place(
    tmp_path: Path, images: list[dict[str, str]], message: str, location: str
) -> None:
    shutil.copy(CT_BUNDLE, tmp_path / "bundle.json")
    (tmp_path / "case.json").write_text(json.dumps({"id": "x", "images": images}))
    with pytest.raises(CaseError, match=message) as info:
        Case.load(tmp_path)
    assert info.value.source == str(tmp_path / "case.json")
    assert info.value.location == location


def test_folder_with_two_json_files_and_no_bundle_json_is_ambiguous(tmp_path: Path) -> None:
    shutil.copy(CT_BUNDLE, tmp_path / "a.json")
    shutil.copy(CT_BUNDLE, tmp_path / "b.json")
    with pytest.raises(CaseError, match="cannot tell which file is the FHIR bundle"):
        Case.load(tmp_path)


def test_a_multi_slice_series_is_shown_to_the_model_once(tmp_path: Path) -> None:
    import pydicom
    from pydicom.uid import generate_uid

    from okaflow import run

    case_dir = tmp_path / "series"
    (case_dir / "images").mkdir(parents=True)
    shutil.copy(CT_BUNDLE, case_dir / "bundle.json")
    for n in range(1, 8):
        ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["okaflow", str(n)])
        ds.InstanceNumber = n
        ds.SliceLocation = float(n * 5)
        ds.save_as(case_dir / "images" / f"slice{n}.dcm")
    case = Case.load(case_dir)
    assert len(case.images) == 7
    (key,) = case.key_images
    assert key.instance_number == 4
    result = run(case, out=tmp_path / "run")
    shown = result.state["model_images"]
    assert [m["evidence_id"] for m in shown] == [key.id]
    assert shown[0]["series_size"] == 7
    measured = {t["arguments"]["image_id"] for t in result.state["tool_log"] if t["tool"] == "measure_image"}
    assert measured == {key.id}
    captions = [b.caption for b in result.report.blocks if b.type == "image"]
    assert len(captions) == 1 and "middle of 7 images" in captions[0]


def test_case_knowledge_folder_is_retrieved_and_cited(tmp_path: Path) -> None:
    from okaflow import run

    case_dir = tmp_path / "k"
    shutil.copytree(EXAMPLES / "brain-mri", case_dir)
    (case_dir / "docs").mkdir()
    (case_dir / "docs" / "headache.md").write_text(
        "# Local pathway\n\nNew daily persistent headache: review analgesic use and arrange neurology review.\n\n"
        "Unrelated paragraph about fractures.\n",
        encoding="utf-8",
    )
    manifest = json.loads((case_dir / "case.json").read_text())
    manifest["knowledge"] = "docs"
    (case_dir / "case.json").write_text(json.dumps(manifest))
    result = run(
        case_dir, workflow="clinical-vqa", task="What does the pathway say about daily headache?", out=tmp_path / "run"
    )
    knowledge = [e["id"] for e in result.state["evidence"] if e["kind"] == "knowledge"]
    assert "Knowledge/headache.md#2" in knowledge
    cited = {c for claim in result.state["claims"] for c in claim["cites"]}
    assert "Knowledge/headache.md#2" in cited
    assert "Knowledge/headache.md#3" not in cited
