"""A received study as a case folder: the images as received, and the patient's record beside them.

The record comes from the FHIR server when there is one: the Patient whose identifier equals the
study's DICOM PatientID (exactly one, or the job fails saying which), read like :func:`okaflow.pull_case`
reads it. Without a server the bundle holds what the DICOM header itself states (a Patient and an
ImagingStudy, marked as taken from the header) and nothing more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from okaflow._errors import CaseError
from okaflow._pull import PULL_RECORD, image_files, patient_for_identifier, write_case_manifest
from okaflow._urls import without_credentials
from okaflow._version import __version__

if TYPE_CHECKING:
    import pydicom

    from okaflow.tools.ehr import FHIRClient

__all__ = ["bundle_from_dicom_header", "write_job_case"]

_FROM_HEADER = {"system": "https://okaflow.dev/fhir/tag", "code": "from-dicom-header"}
_SEX = {"M": "male", "F": "female", "O": "other"}


def write_job_case(
    case_dir: Path,
    job_id: str,
    fhir: FHIRClient | None,
    identifier_system: str | None,
    *,
    workflow: str | None,
    task: str | None,
) -> None:
    """Write ``bundle.json``, ``case.json`` and ``pull.json`` beside the received ``images/``.

    Raises:
        CaseError: no instances, instances of several patients, or no single FHIR Patient for the PatientID.
        ClinicalSystemError: the FHIR server failed (retryable when it is down or slow).
    """
    import pydicom

    received = sorted((case_dir / "images").rglob("*.dcm"))
    images = image_files(received)
    if not images:
        raise CaseError(
            f"the study's {len(received)} instance(s) hold no image (reports, presentation states only)",
            source=case_dir,
            hint="send the study's images, not only its derived objects",
        )
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in images]
    patient_ids = sorted({str(h.get("PatientID", "") or "") for h in headers})
    if len(patient_ids) > 1:
        raise CaseError(
            f"the study's instances name {len(patient_ids)} different PatientIDs",
            source=case_dir,
            hint="the sender mixed patients in one study: correct it at the source and send it again",
        )
    patient_id = patient_ids[0]
    provenance: dict[str, Any] = {"okaflow": __version__, "received": "DICOM C-STORE (okaflow listen)"}
    if fhir is None:
        bundle = json.dumps(bundle_from_dicom_header(headers[0], len(images)), indent=2)
        provenance["fhir"] = None
    else:
        bundle, patient = _record(fhir, patient_id, identifier_system, case_dir)
        provenance["fhir"] = {
            "base_url": without_credentials(fhir.base_url),
            "patient": f"Patient/{patient}",
            "matched_by": "PatientID",
        }
    (case_dir / "bundle.json").write_text(bundle, encoding="utf-8")
    listed = [{"path": p.relative_to(case_dir).as_posix()} for p in images]
    write_case_manifest(case_dir, job_id, listed, task=task, workflow=workflow)
    (case_dir / PULL_RECORD).write_text(json.dumps(provenance, indent=2), encoding="utf-8")


def _record(fhir: FHIRClient, patient_id: str, system: str | None, case_dir: Path) -> tuple[str, str]:
    """The matched patient's record as bundle JSON (decimals digit for digit, as pull_case writes it), and the
    patient's id."""
    from okaflow.tools.ehr import fetch_patient_record

    if not patient_id:
        raise CaseError(
            "the study has no PatientID, so no EHR record can be matched",
            source=case_dir,
            hint="run without a FHIR server (header facts only), or have the sender fill PatientID",
        )
    patient = patient_for_identifier(
        fhir,
        patient_id,
        system,
        what="the study's PatientID as an identifier",
        source=case_dir,
        then="then okaflow listen --retry JOB",
    )
    return fetch_patient_record(fhir, patient).to_json(), patient


def bundle_from_dicom_header(ds: pydicom.Dataset, instances: int) -> dict[str, Any]:
    """A collection Bundle of what a DICOM header states about its patient and study, tagged as such."""
    patient: dict[str, Any] = {"resourceType": "Patient", "id": "dicom-patient", "meta": {"tag": [_FROM_HEADER]}}
    if ds.get("PatientID"):
        patient["identifier"] = [{"value": str(ds.PatientID)}]
    name = ds.get("PatientName")
    if name:
        family, given = str(name.family_name or ""), [g for g in (name.given_name, name.middle_name) if g]
        patient["name"] = [{k: v for k, v in (("family", family), ("given", given)) if v} or {"text": str(name)}]
    if str(ds.get("PatientSex", "")) in _SEX:
        patient["gender"] = _SEX[str(ds.PatientSex)]
    birth = _date(ds.get("PatientBirthDate"))
    if birth:
        patient["birthDate"] = birth
    study: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": "dicom-study",
        "meta": {"tag": [_FROM_HEADER]},
        "status": "available",
        "subject": {"reference": "Patient/dicom-patient"},
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{ds.StudyInstanceUID}"}],
        "numberOfInstances": instances,
    }
    started = _date(ds.get("StudyDate"))
    if started:
        study["started"] = started
    if ds.get("StudyDescription"):
        study["description"] = str(ds.StudyDescription)
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in (patient, study)],
    }


def _date(value: object) -> str | None:
    text = str(value or "")
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return None
