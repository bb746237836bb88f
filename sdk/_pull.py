"""``pull_case``: one patient's record from the EHR and their studies from the PACS, as a case folder;
``pull_study``: the same from an accession number or a Study Instance UID alone.

The PACS is reached over DICOMweb (``dicomweb=``) or DIMSE (``dimse=``); both clients answer the same
models, so matching and copying are the same code either way.

The case is written to disk (``bundle.json``, ``images/``, ``case.json``, ``audit.jsonl`` recording
every request, and ``pull.json`` saying where everything came from and why each study was taken), then
loaded like any case folder: a pulled case is recorded, replayed, exported and diffed like one made by
hand, with no server needed afterwards.

Studies are matched to the patient three ways, each named in ``pull.json``: the DICOM Study Instance UID
of an ``ImagingStudy`` in the record, the accession number on such an ``ImagingStudy``, and the Patient's
identifiers as DICOM PatientID (exact matches only). A study found only by PatientID is noted in the
case's warnings, since identifiers from different issuers can collide.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from okaflow._audit import AUDIT_LOG, AuditTrail, auditing
from okaflow._constants import CASE_MANIFEST, PULL_MAX_INSTANCES
from okaflow._errors import CaseError, ConfigurationError
from okaflow._urls import without_credentials
from okaflow._version import __version__

if TYPE_CHECKING:
    from okaflow._case import Case
    from okaflow.tools.ehr import FHIRClient, PatientRecord, RecordStrategy
    from okaflow.tools.pacs import DICOMwebClient, DIMSEClient, Instance, Study

__all__ = [
    "PULL_RECORD",
    "PACSClient",
    "StudyMatch",
    "image_files",
    "match_studies",
    "patient_for_identifier",
    "pull_case",
    "pull_study",
    "write_case_manifest",
]

PULL_RECORD = "pull.json"
MatchReason = Literal["ImagingStudy UID", "accession number", "PatientID"]
_DICOM_UID = "urn:dicom:uid"
_ACCESSION = "ACSN"
_MRN = "MR"


class PACSClient(Protocol):
    """What a pull needs of a PACS: :class:`~okaflow.tools.pacs.DICOMwebClient` and
    :class:`~okaflow.tools.pacs.DIMSEClient` both have it."""

    @property
    def url(self) -> str: ...

    def search_studies(
        self,
        *,
        patient_id: str | None = None,
        accession_number: str | None = None,
        study_uid: str | None = None,
        modality: str | None = None,
    ) -> list[Study]: ...

    def search_instances(self, study_uid: str, series_uid: str | None = None) -> list[Instance]: ...

    def download_instances(self, instances: Sequence[Instance], folder: str | Path) -> list[Path]: ...


@dataclass
class StudyMatch:
    """A study found for the patient, and every way it was found."""

    study: Study
    reasons: list[str] = field(default_factory=list)


def pull_case(
    patient_id: str,
    *,
    fhir: FHIRClient,
    dicomweb: DICOMwebClient | None = None,
    dimse: DIMSEClient | None = None,
    folder: str | Path,
    task: str | None = None,
    workflow: str | None = None,
    case_id: str | None = None,
    identifier_system: str | None = None,
    studies: Sequence[str] | None = None,
    strategy: RecordStrategy = "auto",
    max_instances: int = PULL_MAX_INSTANCES,
    strict: bool = True,
) -> Case:
    """Build a :class:`~okaflow.Case` from a patient's FHIR record and that patient's studies on the PACS.

    Args:
        patient_id: The Patient's id on the FHIR server (``fhir.find_patient_ids(mrn)`` finds it).
        fhir: The EHR.
        dicomweb: The PACS over DICOMweb; None (and no ``dimse``) for a record without images.
        dimse: The PACS over DIMSE (C-FIND, C-GET) instead of DICOMweb.
        folder: A new or empty folder the case is written to.
        task: The clinical question or task.
        workflow: The workflow the case names (``case.json``).
        case_id: The case's id; default the folder's name.
        identifier_system: Match studies by the Patient identifiers of this system only (e.g. the MRN
            system the PACS uses); default the identifiers typed ``MR``, else all of them.
        studies: Only these Study Instance UIDs (each must match the patient); default every match.
        strategy: How the record is read (see :func:`okaflow.tools.ehr.fetch_patient_record`).
        max_instances: Refuse to copy more DICOM instances than this.
        strict: Load the bundle strictly (an invalid entry raises) or skip invalid entries with a warning.

    Returns:
        The loaded case (``case.source`` is ``folder``).

    Raises:
        CaseError: ``folder`` exists and is not empty, or a requested study is not the patient's.
        ConfigurationError: more than ``max_instances`` instances would be copied, or both PACS clients given.
        PatientNotFoundError, ClinicalSystemError: from the servers, naming the URL.
    """
    from okaflow._case import Case
    from okaflow.tools.ehr import fetch_patient_record

    pacs = _one_pacs(dicomweb, dimse)
    # Which kind of PACS, as pull.json records it ("dicomweb" or "dimse" also names its entry there).
    protocol = "DIMSE" if dimse is not None else "DICOMweb" if dicomweb is not None else None
    root = _empty_folder(folder)
    with auditing(AuditTrail(root / AUDIT_LOG)):
        record = fetch_patient_record(fhir, patient_id, strategy=strategy)
        matches = match_studies(pacs, record, identifier_system=identifier_system) if pacs else []
        if studies is not None:
            known = {m.study.study_uid for m in matches}
            missing = [uid for uid in studies if uid not in known]
            if missing:
                raise CaseError(
                    f"studies {missing} are not Patient/{patient_id}'s (matched: {sorted(known) or 'none'})",
                    hint="pass study UIDs of this patient, or leave studies= out",
                )
            matches = [m for m in matches if m.study.study_uid in set(studies)]
        instances = {m.study.study_uid: pacs.search_instances(m.study.study_uid) for m in matches} if pacs else {}
        total = sum(len(v) for v in instances.values())
        if total > max_instances:
            raise ConfigurationError(
                f"the patient's {len(matches)} studies hold {total} instances, over max_instances={max_instances}",
                hint="raise max_instances= or pick studies with studies=[...]",
            )
        root.mkdir(parents=True, exist_ok=True)
        (root / "bundle.json").write_text(record.to_json(), encoding="utf-8")
        images: list[dict[str, str]] = []
        pulled: list[dict[str, Any]] = []
        for match in matches:
            assert pacs is not None
            uid = match.study.study_uid
            files = pacs.download_instances(instances[uid], root / "images" / uid)
            kept = image_files(files)
            images += [{"path": p.relative_to(root).as_posix()} for p in kept]
            entry = {"study_uid": uid, "matched_by": match.reasons, "instances": len(files)}
            if len(kept) < len(files):
                entry["without_pixel_data"] = len(files) - len(kept)
            pulled.append(entry)
        write_case_manifest(root, case_id or root.name, images, task=task, workflow=workflow)
        provenance: dict[str, Any] = {
            "okaflow": __version__,
            "pulled_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "fhir": {
                "base_url": without_credentials(fhir.base_url),
                "patient": f"Patient/{patient_id}",
                "strategy": record.strategy,
            },
            # Which PACS, and its entry under the protocol's own key ("dicomweb" as before, or "dimse").
            "pacs": protocol,
            "dicomweb": None,
            "warnings": list(record.warnings),
        }
        if pacs is not None and protocol is not None:
            provenance[protocol.lower()] = {
                "url": without_credentials(str(pacs.url)),
                "studies": pulled,
            }
        (root / PULL_RECORD).write_text(json.dumps(provenance, indent=2), encoding="utf-8")
        case = Case.from_folder(root, strict=strict)
        case.warnings += list(record.warnings)
        case.warnings += [
            f"study {m.study.study_uid} matched by PatientID only (no ImagingStudy in the record names it)"
            for m in matches
            if m.reasons == ["PatientID"]
        ]
        case.warnings += [
            f"study {p['study_uid']}: {p['without_pixel_data']} instance(s) without pixel data (reports, presentation "
            "states) kept in images/ but not read as images"
            for p in pulled
            if p.get("without_pixel_data")
        ]
        return case


def pull_study(
    *,
    accession_number: str | None = None,
    study_uid: str | None = None,
    fhir: FHIRClient,
    dicomweb: DICOMwebClient | None = None,
    dimse: DIMSEClient | None = None,
    folder: str | Path,
    identifier_system: str | None = None,
    task: str | None = None,
    workflow: str | None = None,
    case_id: str | None = None,
    strategy: RecordStrategy = "auto",
    max_instances: int = PULL_MAX_INSTANCES,
    strict: bool = True,
) -> Case:
    """Build a case from one study, named by its accession number or Study Instance UID alone.

    The study is found on the PACS, its PatientID looked up among the FHIR Patients' identifiers, and the
    case built as :func:`pull_case` builds it, with this study only (it must match the patient by the same
    rules). The study search and the Patient search are in the case's audit trail.

    Args:
        accession_number: The study's accession number (exactly one of this and ``study_uid``).
        study_uid: The study's Study Instance UID.
        fhir: The EHR.
        dicomweb: The PACS over DICOMweb (exactly one of this and ``dimse``).
        dimse: The PACS over DIMSE.
        folder: A new or empty folder the case is written to.
        identifier_system: The identifier system of the PACS's PatientID on the FHIR server (the MRN
            system); default any system, which must then leave a single Patient.
        task, workflow, case_id, strategy, max_instances, strict: As for :func:`pull_case`.

    Raises:
        ConfigurationError: not exactly one of ``accession_number`` and ``study_uid``, or of the PACS clients.
        CaseError: no study, or several, answer the key; the study has no PatientID; no Patient, or several,
            carry it; ``folder`` is not empty.
        ClinicalSystemError: from the servers, naming the URL.
    """
    if (accession_number is None) == (study_uid is None):
        raise ConfigurationError("pull_study needs exactly one of accession_number= and study_uid=")
    pacs = _one_pacs(dicomweb, dimse)
    if pacs is None:
        raise ConfigurationError("pull_study needs a PACS: pass dicomweb= or dimse=")
    root = _empty_folder(folder)
    with auditing(AuditTrail(root / AUDIT_LOG)):
        shown = without_credentials(str(pacs.url))  # messages never carry a password or query
        study = _the_study(pacs, shown, accession_number=accession_number, study_uid=study_uid)
        assert study.patient_id is not None  # _the_study refuses a study without one
        patient_id = patient_for_identifier(
            fhir, study.patient_id, identifier_system, what=f"the PatientID of study {study.study_uid} on {shown}"
        )
    # The folder holds only these lookups' trail, which the pull goes on writing.
    return pull_case(
        patient_id,
        fhir=fhir,
        dicomweb=dicomweb,
        dimse=dimse,
        folder=root,
        task=task,
        workflow=workflow,
        case_id=case_id,
        identifier_system=identifier_system,
        studies=[study.study_uid],
        strategy=strategy,
        max_instances=max_instances,
        strict=strict,
    )


def _one_pacs(dicomweb: DICOMwebClient | None, dimse: DIMSEClient | None) -> PACSClient | None:
    if dicomweb is not None and dimse is not None:
        raise ConfigurationError(
            "pass one PACS: dicomweb= or dimse=, not both", hint="a pull reads its studies from one PACS"
        )
    return dicomweb if dicomweb is not None else dimse


def _empty_folder(folder: str | Path) -> Path:
    root = Path(folder)
    # A failed pull leaves its audit trail (what was read stays on record); the folder can be pulled into again.
    if root.exists() and (not root.is_dir() or any(p.name != AUDIT_LOG for p in root.iterdir())):
        raise CaseError("the folder for the pulled case is not empty", source=root, hint="choose a new folder")
    return root


def _the_study(pacs: PACSClient, shown: str, *, accession_number: str | None, study_uid: str | None) -> Study:
    """The one study the key names; refused when none or several answer (identifiers stay out of messages)."""
    found = pacs.search_studies(accession_number=accession_number, study_uid=study_uid)
    key = "accession number" if accession_number is not None else "Study Instance UID"
    if len(found) != 1:
        listed = f": studies {sorted(s.study_uid for s in found)}" if found else ""
        raise CaseError(
            f"{len(found)} studies on {shown} have the {key} asked for{listed}",
            hint="pass study_uid= to name one study" if found else "check the key and the PACS",
        )
    if not found[0].patient_id:
        raise CaseError(f"study {found[0].study_uid} on {shown} has no PatientID to find its patient by")
    return found[0]


def patient_for_identifier(
    fhir: FHIRClient,
    value: str,
    system: str | None,
    *,
    what: str = "that identifier",
    source: Path | None = None,
    then: str = "then try again",
) -> str:
    """The server id of the one Patient whose identifier is ``value`` (of ``system``, if given).

    Raises:
        CaseError: none, or several, carry it (the count, never the value: messages end up in logs).
    """
    ids = list(dict.fromkeys(fhir.find_patient_ids(value, system=system)))
    if len(ids) != 1:
        scope = f" of system {system!r}" if system else ""
        raise CaseError(
            f"{len(ids)} Patients on {without_credentials(fhir.base_url)} carry {what}{scope}",
            source=source,
            hint=f"name the identifier system (the PACS's MRN system) to tell them apart, {then}"
            if ids
            else f"register the patient in the EHR under this identifier, {then}",
        )
    return ids[0]


def write_case_manifest(
    root: Path, case_id: str, images: list[dict[str, str]], *, task: str | None, workflow: str | None
) -> None:
    """``case.json`` for a case folder whose record is ``bundle.json`` beside it."""
    manifest: dict[str, Any] = {"id": case_id, "bundle": "bundle.json", "images": images}
    if task:
        manifest["task"] = task
    if workflow:
        manifest["workflow"] = workflow
    (root / CASE_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def image_files(files: Sequence[Path]) -> list[Path]:
    """The DICOM files that hold images: a study's SR, presentation states and key-object notes are kept on
    disk, but a case reads images."""
    from okaflow.tools.imaging import dicom_has_pixel_data

    return [p for p in files if dicom_has_pixel_data(p)]


def match_studies(pacs: PACSClient, record: PatientRecord, *, identifier_system: str | None = None) -> list[StudyMatch]:
    """The patient's studies on the PACS (DICOMweb or DIMSE), each with the ways it was matched (see the module
    docstring)."""
    found: dict[str, StudyMatch] = {}

    def add(studies: list[Study], reason: str) -> None:
        for study in studies:
            match = found.setdefault(study.study_uid, StudyMatch(study))
            if reason not in match.reasons:
                match.reasons.append(reason)

    for resource in record.resources("ImagingStudy"):
        for identifier in resource.get("identifier") or []:
            value = str(identifier.get("value") or "")
            if identifier.get("system") == _DICOM_UID and value:
                add(pacs.search_studies(study_uid=value.removeprefix("urn:oid:")), "ImagingStudy UID")
            elif _has_code(identifier.get("type"), _ACCESSION) and value:
                add(pacs.search_studies(accession_number=value), "accession number")
    for value in _patient_identifiers(record, identifier_system):
        add(pacs.search_studies(patient_id=value), "PatientID")
    return sorted(found.values(), key=lambda m: (m.study.study_date or "", m.study.study_uid))


def _patient_identifiers(record: PatientRecord, system: str | None) -> list[str]:
    patients = [p for p in record.resources("Patient") if p.get("id") == record.patient_id]
    identifiers = [i for i in (patients[0].get("identifier") or []) if isinstance(i, dict) and i.get("value")]
    if system is not None:
        chosen = [i for i in identifiers if i.get("system") == system]
        if not chosen:
            raise ConfigurationError(
                f"Patient/{record.patient_id} has no identifier of system {system!r}",
                hint=f"its systems: {sorted({str(i.get('system')) for i in identifiers})}",
            )
        identifiers = chosen
    elif any(_has_code(i.get("type"), _MRN) for i in identifiers):
        identifiers = [i for i in identifiers if _has_code(i.get("type"), _MRN)]
    return list(dict.fromkeys(str(i["value"]) for i in identifiers))


def _has_code(concept: Any, code: str) -> bool:
    return isinstance(concept, dict) and any(
        isinstance(c, dict) and c.get("code") == code for c in concept.get("coding") or []
    )
