"""DIMSE against a real Orthanc: C-ECHO, C-FIND, C-GET, C-MOVE, C-STORE, their failures, and pulls through DIMSE."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

import okaflow
from okaflow.model_backend import free_port
from okaflow.tools.ehr import FHIRClient
from okaflow.tools.pacs import DIMSEClient

from .conftest import MRN_SYSTEM, OUR_AET, STATIC_TOKEN, FHIRServer, PACSServer, synthetic_dicom

pytestmark = pytest.mark.integration
ADA, BEN = "OKA-PACS-001", "OKA-PACS-002"


def dimse(pacs: PACSServer, **kwargs: object) -> DIMSEClient:
    return DIMSEClient("127.0.0.1", pacs.dicom_port, called_aet=pacs.aet, **kwargs)  # type: ignore[arg-type]


def test_echo_is_answered_and_audited(pacs_server: PACSServer, tmp_path: Path) -> None:
    trail = okaflow.AuditTrail(tmp_path / "audit.jsonl")
    with dimse(pacs_server, audit=trail) as pacs:
        pacs.echo()
    (entry,) = okaflow.read_audit(trail.path)
    assert entry["action"] == "echo" and entry["system"] == "DIMSE" and entry["status"] == 0
    assert entry["endpoint"] == f"ORTHANC@127.0.0.1:{pacs_server.dicom_port}"


def test_c_find_matches_patient_accession_and_uid_exactly(pacs_server: PACSServer) -> None:
    ct = synthetic_dicom("CT_STUDY")
    with dimse(pacs_server) as pacs:
        ada = pacs.search_studies(patient_id=ADA)
        by_accession = pacs.search_studies(accession_number="ACC-PACS-001")
        by_uid = pacs.search_studies(study_uid=str(ct.StudyInstanceUID))
        by_modality = pacs.search_studies(patient_id=ADA, modality="MR")
        nobody = pacs.search_studies(patient_id="OKA-PACS-00")  # a prefix matches nothing: no wildcard added
        lower = pacs.search_studies(patient_id=ADA.lower())  # a case-insensitive match is dropped
        (series,) = pacs.search_series(str(ct.StudyInstanceUID))
        (instance,) = pacs.search_instances(str(ct.StudyInstanceUID), series.series_uid)
        with pytest.raises(okaflow.ConfigurationError):
            pacs.search_studies(patient_id="OKA*")
        with pytest.raises(okaflow.ConfigurationError):
            pacs.search_studies(patient_id=f"{ADA}\\{BEN}")
    assert sorted(s.accession_number or "" for s in ada) == ["ACC-PACS-001", "ACC-PACS-002"]
    assert {s.patient_id for s in ada} == {ADA}
    assert [s.study_uid for s in by_accession] == [str(ct.StudyInstanceUID)]
    assert by_uid[0].modalities == ("CT",) and by_uid[0].instance_count == 1
    assert [s.accession_number for s in by_modality] == ["ACC-PACS-002"]
    assert nobody == [] and lower == []
    assert series.modality == "CT" and series.instance_count == 1
    assert instance.sop_instance_uid == str(ct.SOPInstanceUID) and instance.sop_class_uid == ct.SOPClassUID


def test_c_get_writes_the_stored_instances_pixel_for_pixel(pacs_server: PACSServer, tmp_path: Path) -> None:
    ct, mr = synthetic_dicom("CT_STUDY"), synthetic_dicom("MR_STUDY")
    trail = okaflow.AuditTrail(tmp_path / "audit.jsonl")
    with dimse(pacs_server, audit=trail) as pacs:
        instances = pacs.search_instances(str(ct.StudyInstanceUID)) + pacs.search_instances(str(mr.StudyInstanceUID))
        files = pacs.download_instances(instances, tmp_path / "get")
        (study_file,) = pacs.retrieve_study(str(mr.StudyInstanceUID), tmp_path / "study")
    assert [p.relative_to(tmp_path / "get").as_posix() for p in files] == [
        f"{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm" for ds in (ct, mr)
    ]
    for path, original in zip([*files, study_file], [ct, mr, mr], strict=True):
        got = pydicom.dcmread(path)
        assert got.SOPInstanceUID == original.SOPInstanceUID and got.PatientID == original.PatientID
        assert np.array_equal(got.pixel_array, original.pixel_array)
    retrieved = [e for e in okaflow.read_audit(trail.path) if e["action"] == "retrieve"]
    assert {e["resource"].rsplit("/", 1)[-1] for e in retrieved} >= {p.stem for p in files}
    assert all(e["outcome"] == "success" and e["status"] == 0 for e in retrieved)


def test_c_move_sends_the_study_to_our_own_storage_scp(pacs_server: PACSServer, tmp_path: Path) -> None:
    ct = synthetic_dicom("CT_STUDY")
    trail = okaflow.AuditTrail(tmp_path / "audit.jsonl")
    with dimse(pacs_server, audit=trail) as pacs:
        (path,) = pacs.move_study(str(ct.StudyInstanceUID), tmp_path / "moved", port=pacs_server.move_port)
        again = pacs.move_study(str(ct.StudyInstanceUID), tmp_path / "again", port=pacs_server.move_port)
    assert path == tmp_path / "moved" / str(ct.SeriesInstanceUID) / f"{ct.SOPInstanceUID}.dcm"
    assert np.array_equal(pydicom.dcmread(path).pixel_array, ct.pixel_array)
    assert [p.name for p in again] == [path.name], "the storage SCP did not stop and free its port"
    moves = [e for e in okaflow.read_audit(trail.path) if "C-MOVE" in (e.get("detail") or "")]
    assert len(moves) == 2 and moves[0]["resource"] == f"studies/{ct.StudyInstanceUID}"


def test_c_move_to_a_destination_the_pacs_does_not_know_is_a_status_error(
    pacs_server: PACSServer, tmp_path: Path
) -> None:
    ct = synthetic_dicom("CT_STUDY")
    trail = okaflow.AuditTrail(tmp_path / "audit.jsonl")
    with (
        dimse(pacs_server, calling_aet="STRANGER", audit=trail) as pacs,
        pytest.raises(okaflow.DIMSEStatusError) as info,
    ):
        pacs.move_study(str(ct.StudyInstanceUID), tmp_path / "moved", port=free_port())
    assert info.value.service == "C-MOVE"
    # The standard's status is 0xA801 (move destination unknown); Orthanc 1.10 answers 0xC000 (unable to process).
    assert info.value.status in (0xA801, 0xC000)
    assert "move destination" in (info.value.hint or "")
    failed = okaflow.read_audit(trail.path)[-1]
    assert failed["outcome"] == "failure" and failed["status"] == info.value.status
    assert not (tmp_path / "moved").exists()


def test_c_store_of_a_new_instance_is_then_found(pacs_server: PACSServer, tmp_path: Path) -> None:
    ds = synthetic_dicom("OTHER_MR_STUDY")
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.AccessionNumber = "ACC-DIMSE-STORED"
    ds.PatientID = "OKA-DIMSE-STORED"  # nobody's: the session's PACS is shared, other tests count Ben's studies
    pixels = ds.pixel_array
    trail = okaflow.AuditTrail(tmp_path / "audit.jsonl")
    with dimse(pacs_server, audit=trail) as pacs:
        assert pacs.store_instances([ds]) == [ds.SOPInstanceUID]
        (study,) = pacs.search_studies(accession_number="ACC-DIMSE-STORED")
        (path,) = pacs.retrieve_study(study.study_uid, tmp_path / "back")
        del ds.file_meta.TransferSyntaxUID
        with pytest.raises(okaflow.ConfigurationError, match="TransferSyntaxUID"):
            pacs.store_instances([ds])
    assert study.patient_id == "OKA-DIMSE-STORED"
    assert np.array_equal(pydicom.dcmread(path).pixel_array, pixels)
    stored = okaflow.read_audit(trail.path)[0]
    assert stored["action"] == "store" and stored["resource"].endswith(f"/instances/{ds.SOPInstanceUID}")


# pynetdicom 3.0.4 leaks the socket of a refused connection (pydicom/pynetdicom#979, fixed upstream by #999).
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
def test_a_port_with_nothing_listening_is_a_connection_error() -> None:
    pacs = DIMSEClient("127.0.0.1", free_port(), called_aet="ORTHANC")
    with pacs, pytest.raises(okaflow.ClinicalConnectionError) as info:
        pacs.echo()
    assert info.value.url == f"dicom://ORTHANC@127.0.0.1:{info.value.url.rsplit(':', 1)[1]}"
    assert "refused" in str(info.value).lower()


def test_a_rejected_association_names_the_reason_and_what_to_check(strict_pacs: PACSServer, tmp_path: Path) -> None:
    trail = okaflow.AuditTrail(tmp_path / "audit.jsonl")
    with (
        dimse(strict_pacs, calling_aet="STRANGER", audit=trail) as pacs,
        pytest.raises(okaflow.AssociationError) as info,
    ):
        pacs.search_studies(patient_id=ADA)
    assert "rejected" in str(info.value) and "STRANGER" in str(info.value)
    assert "calling_aet" in (info.value.hint or "") and info.value.reason
    (entry,) = okaflow.read_audit(trail.path)
    assert entry["outcome"] == "failure" and "AssociationError" in entry["detail"]
    assert ADA not in str(info.value), "a patient identifier leaked into the error"
    # The same PACS admits the AE title it lists, when called by its own AE title, and refuses a wrong one.
    with dimse(strict_pacs) as pacs:
        pacs.echo()
    wrong = DIMSEClient("127.0.0.1", strict_pacs.dicom_port, called_aet="NOT-STRICT")
    with wrong, pytest.raises(okaflow.AssociationError, match=r"[Cc]alled AE title"):
        wrong.echo()


def test_pull_case_through_dimse(fhir_server: FHIRServer, pacs_server: PACSServer, tmp_path: Path) -> None:
    folder = tmp_path / "ada"
    with FHIRClient(fhir_server.base_url, auth=STATIC_TOKEN) as ehr, dimse(pacs_server) as pacs:
        case = okaflow.pull_case(fhir_server.patients[ADA], fhir=ehr, dimse=pacs, folder=folder)
        with pytest.raises(okaflow.ConfigurationError, match="one PACS"):
            okaflow.pull_case(fhir_server.patients[ADA], fhir=ehr, dimse=pacs, dicomweb=object(), folder=tmp_path / "x")  # type: ignore[arg-type]
    ct, mr = synthetic_dicom("CT_STUDY"), synthetic_dicom("MR_STUDY")
    assert {i.study_uid for i in case.images} == {str(ct.StudyInstanceUID), str(mr.StudyInstanceUID)}
    provenance = json.loads((folder / "pull.json").read_text())
    assert provenance["pacs"] == "DIMSE" and provenance["dimse"]["url"] == pacs.url
    reasons = {s["study_uid"]: s["matched_by"] for s in provenance["dimse"]["studies"]}
    assert reasons[str(ct.StudyInstanceUID)] == ["ImagingStudy UID", "accession number", "PatientID"]
    trail = okaflow.read_audit(folder)
    assert {e["system"] for e in trail} == {"FHIR", "DIMSE"}
    assert all(e["outcome"] == "success" for e in trail)


@pytest.mark.parametrize("by", ["accession_number", "study_uid"])
def test_pull_study_finds_the_patient_from_the_study(
    by: str, fhir_server: FHIRServer, pacs_server: PACSServer, tmp_path: Path
) -> None:
    ct = synthetic_dicom("CT_STUDY")
    key = {"accession_number": "ACC-PACS-001", "study_uid": str(ct.StudyInstanceUID)}[by]
    with FHIRClient(fhir_server.base_url, auth=STATIC_TOKEN) as ehr, dimse(pacs_server) as pacs:
        case = okaflow.pull_study(
            **{by: key}, fhir=ehr, dimse=pacs, folder=tmp_path / "c", identifier_system=MRN_SYSTEM
        )
    assert [i.study_uid for i in case.images] == [str(ct.StudyInstanceUID)], "only the asked study is pulled"
    provenance = json.loads((tmp_path / "c" / "pull.json").read_text())
    assert provenance["fhir"]["patient"] == f"Patient/{fhir_server.patients[ADA]}"


def test_pull_study_refuses_a_study_whose_patient_is_not_in_the_ehr(
    fhir_server: FHIRServer, pacs_server: PACSServer, tmp_path: Path
) -> None:
    ds = synthetic_dicom("CT_STUDY")
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID, ds.AccessionNumber = "OKA-NOBODY", "ACC-NOBODY"
    with FHIRClient(fhir_server.base_url, auth=STATIC_TOKEN) as ehr, dimse(pacs_server) as pacs:
        pacs.store_instances([ds])
        with pytest.raises(okaflow.CaseError) as info:
            okaflow.pull_study(accession_number="ACC-NOBODY", fhir=ehr, dimse=pacs, folder=tmp_path / "n")
        with pytest.raises(okaflow.CaseError) as nothing:
            okaflow.pull_study(accession_number="ACC-NOT-THERE", fhir=ehr, dimse=pacs, folder=tmp_path / "m")
        with pytest.raises(okaflow.ConfigurationError):
            okaflow.pull_study(fhir=ehr, dimse=pacs, folder=tmp_path / "o")
    assert "0 Patients" in str(info.value) and "OKA-NOBODY" not in str(info.value)
    assert "0 studies" in str(nothing.value)
    # The refused pull's reads are on record: the study search and the Patient search.
    assert {e["system"] for e in okaflow.read_audit(tmp_path / "n")} == {"FHIR", "DIMSE"}


def test_our_ae_title_is_the_one_orthanc_lists() -> None:
    assert DIMSEClient("127.0.0.1", 104, called_aet="X").calling_aet == OUR_AET
