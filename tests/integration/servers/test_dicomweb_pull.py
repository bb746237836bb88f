"""DICOMweb against a real Orthanc, and pull_case across Orthanc and sekmet-fhir."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

import okaflow
from okaflow.model_backend import free_port
from okaflow.tools.ehr import FHIRClient
from okaflow.tools.pacs import DICOMwebClient, Instance

from .conftest import STATIC_TOKEN, FHIRServer, PACSServer, synthetic_dicom

pytestmark = pytest.mark.integration
ADA, BEN = "OKA-PACS-001", "OKA-PACS-002"


def test_qido_finds_studies_by_patient_accession_and_uid(pacs_server: PACSServer) -> None:
    ct = synthetic_dicom("CT_STUDY")
    with DICOMwebClient(pacs_server.dicomweb_url) as pacs:
        ada = pacs.search_studies(patient_id=ADA)
        by_accession = pacs.search_studies(accession_number="ACC-PACS-001")
        by_uid = pacs.search_studies(study_uid=str(ct.StudyInstanceUID))
        nobody = pacs.search_studies(patient_id="OKA-PACS-00")  # a prefix matches nothing: no wildcard added
    assert sorted(s.accession_number or "" for s in ada) == ["ACC-PACS-001", "ACC-PACS-002"]
    assert {s.patient_id for s in ada} == {ADA}
    assert [s.study_uid for s in by_accession] == [str(ct.StudyInstanceUID)]
    assert by_uid[0].modalities == ("CT",)
    assert by_uid[0].instance_count == 1
    assert nobody == []


def test_series_and_instances_then_wado_retrieval_matches_what_was_stored(pacs_server: PACSServer) -> None:
    ct = synthetic_dicom("CT_STUDY")
    with DICOMwebClient(pacs_server.dicomweb_url) as pacs:
        (series,) = pacs.search_series(str(ct.StudyInstanceUID))
        (instance,) = pacs.search_instances(series.study_uid, series.series_uid)
        ds = pacs.retrieve_instance(instance)
        (frame,) = pacs.retrieve_frames(instance, [1])
    assert series.modality == "CT"
    assert instance.sop_instance_uid == str(ct.SOPInstanceUID)
    assert ds.PatientID == ADA
    assert np.array_equal(ds.pixel_array, ct.pixel_array)
    assert frame == ct.PixelData  # uncompressed frame bytes, explicit VR little endian


def test_a_patient_id_with_a_wildcard_is_refused(pacs_server: PACSServer) -> None:
    with DICOMwebClient(pacs_server.dicomweb_url) as pacs, pytest.raises(okaflow.ConfigurationError):
        pacs.search_studies(patient_id="OKA*")


def test_a_missing_instance_is_not_found_naming_the_url(pacs_server: PACSServer) -> None:
    ct = synthetic_dicom("CT_STUDY")
    missing = Instance(str(ct.StudyInstanceUID), str(ct.SeriesInstanceUID), "1.2.3.4", None, None)
    with DICOMwebClient(pacs_server.dicomweb_url) as pacs, pytest.raises(okaflow.ClinicalNotFoundError) as info:
        pacs.retrieve_instance(missing)
    assert "/instances/1.2.3.4" in str(info.value)
    assert info.value.system == "DICOMweb"


def test_a_pacs_that_is_down_is_a_connection_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    with DICOMwebClient(url, max_retries=1) as pacs, pytest.raises(okaflow.ClinicalConnectionError) as info:
        pacs.search_studies(patient_id=ADA)
    assert f"{url}/studies" in str(info.value)
    assert "refused" in str(info.value).lower()


def test_pull_case_builds_the_patients_case_from_both_servers(
    fhir_server: FHIRServer, pacs_server: PACSServer, tmp_path: Path
) -> None:
    folder = tmp_path / "ada"
    with FHIRClient(fhir_server.base_url, auth=STATIC_TOKEN) as ehr, DICOMwebClient(pacs_server.dicomweb_url) as pacs:
        case = okaflow.pull_case(fhir_server.patients[ADA], fhir=ehr, dicomweb=pacs, folder=folder, task="CRP trend")
    ct, mr, other = (synthetic_dicom(n) for n in ("CT_STUDY", "MR_STUDY", "OTHER_MR_STUDY"))
    assert {i.study_uid for i in case.images} == {str(ct.StudyInstanceUID), str(mr.StudyInstanceUID)}
    assert str(other.StudyInstanceUID) not in {i.study_uid for i in case.images}, "Ben's study came along"
    assert case.task == "CRP trend" and case.source == folder
    assert len(case.patient.observations) == 7
    provenance = json.loads((folder / "pull.json").read_text())
    reasons = {s["study_uid"]: s["matched_by"] for s in provenance["dicomweb"]["studies"]}
    assert reasons[str(ct.StudyInstanceUID)] == ["ImagingStudy UID", "accession number", "PatientID"]
    assert reasons[str(mr.StudyInstanceUID)] == ["PatientID"]
    assert any("matched by PatientID only" in w for w in case.warnings)
    # The CT in the case is the stored one, pixel for pixel (HU after the modality LUT).
    ct_image = next(i for i in case.images if i.study_uid == str(ct.StudyInstanceUID))
    assert ct_image.patient_id == ADA
    # The folder is a case like any other: it loads again without a server.
    again = okaflow.Case.load(folder)
    assert [i.id for i in again.images] == [i.id for i in case.images]
    assert pydicom.dcmread(next((folder / "images").rglob("*.dcm"))).PatientID == ADA
    # Every request is in the case's audit trail: who, what, where, which resource, how it ended.
    trail = okaflow.read_audit(folder)
    assert {e["system"] for e in trail} == {"FHIR", "DICOMweb"}
    assert all(e["outcome"] == "success" and e["actor"].startswith("okaflow/") for e in trail)
    retrieved = {e["resource"].rsplit("/", 1)[-1] for e in trail if e["action"] == "retrieve"}
    assert retrieved == {p.stem for p in (folder / "images").rglob("*.dcm")}
    assert any(e["resource"].startswith(f"Patient/{fhir_server.patients[ADA]}") for e in trail)
    assert any(e["action"] == "search" and "PatientID=" + ADA in e["resource"] for e in trail)
    # A run over the pulled case opens its own trail with the case's reads.
    result = okaflow.run(folder, out=tmp_path / "run")
    assert okaflow.read_audit(result.run_dir) == trail


def test_pull_case_refuses_a_study_that_is_not_the_patients(
    fhir_server: FHIRServer, pacs_server: PACSServer, tmp_path: Path
) -> None:
    other = str(synthetic_dicom("OTHER_MR_STUDY").StudyInstanceUID)
    with FHIRClient(fhir_server.base_url, auth=STATIC_TOKEN) as ehr, DICOMwebClient(pacs_server.dicomweb_url) as pacs:
        with pytest.raises(okaflow.CaseError) as info:
            okaflow.pull_case(
                fhir_server.patients[ADA], fhir=ehr, dicomweb=pacs, folder=tmp_path / "x", studies=[other]
            )
        assert other in str(info.value)
        ben = okaflow.pull_case(fhir_server.patients[BEN], fhir=ehr, dicomweb=pacs, folder=tmp_path / "ben")
    assert [i.study_uid for i in ben.images] == [other]
    # A refused pull keeps only its audit trail: what was read stays on record.
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["audit.jsonl"], "a refused pull left files behind"
    assert {e["system"] for e in okaflow.read_audit(tmp_path / "x")} == {"FHIR", "DICOMweb"}


def test_pull_case_refuses_a_folder_that_is_not_empty(fhir_server: FHIRServer, tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("keep me")
    with FHIRClient(fhir_server.base_url, auth=STATIC_TOKEN) as ehr, pytest.raises(okaflow.CaseError):
        okaflow.pull_case(fhir_server.patients[ADA], fhir=ehr, folder=tmp_path)


def test_pull_case_over_the_instance_budget_is_refused_before_copying(
    fhir_server: FHIRServer, pacs_server: PACSServer, tmp_path: Path
) -> None:
    ehr, pacs = FHIRClient(fhir_server.base_url, auth=STATIC_TOKEN), DICOMwebClient(pacs_server.dicomweb_url)
    with ehr, pacs, pytest.raises(okaflow.ConfigurationError) as info:
        okaflow.pull_case(fhir_server.patients[ADA], fhir=ehr, dicomweb=pacs, folder=tmp_path / "a", max_instances=1)
    assert "max_instances=1" in str(info.value)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["audit.jsonl"], "a refused pull wrote files"
    # The folder holding only a failed pull's trail can be pulled into again; the trail grows.
    with FHIRClient(fhir_server.base_url, auth=STATIC_TOKEN) as ehr:
        okaflow.pull_case(fhir_server.patients[ADA], fhir=ehr, folder=tmp_path / "a")
    assert (tmp_path / "a" / "bundle.json").is_file()
