"""``FHIRSink``: an approved report written back to the EHR as one FHIR transaction.

::

    from okaflow.tools.ehr import FHIRClient
    from okaflow.tools.publish import FHIRSink

    with FHIRClient("https://ehr.example/fhir", auth=token) as ehr:
        result = okaflow.run(case_folder, sinks=[FHIRSink(ehr)])       # pauses for approval
        okaflow.approve(result.run_dir, case_folder, approved=True, by="dr.x", sinks=[FHIRSink(ehr)])

What is written is described in :mod:`okaflow.tools.ehr` (``build_writeback``). The sink finds the
patient (``patient=``, else the pulled case's ``pull.json`` when it names this server), keeps only the
cited Observations and the ImagingStudy that exist on the server for that patient, validates everything,
then sends it in one transaction: the server stores all of it or none. Every request is recorded in the
run's ``audit.jsonl``; what was stored (server ids) in ``<run>/published/fhir.json``.

Publishing a run again finds the DiagnosticReport it stored (by its ``urn:okaflow:run`` identifier) and
sends nothing; a push whose answer was lost can simply be repeated, since every entry is a conditional
create.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from okaflow._audit import AUDIT_LOG, AuditTrail, auditing
from okaflow._constants import RUN_MANIFEST
from okaflow._errors import ClinicalResponseError, ConfigurationError, PublishError
from okaflow._pull import PULL_RECORD
from okaflow._record import read_manifest
from okaflow._types import Evidence, utc_now
from okaflow._urls import without_credentials
from okaflow.tools.ehr import FHIRClient
from okaflow.tools.ehr._writeback import RUN_SYSTEM, ReportStatus, Writeback, build_writeback, image_study_uids
from okaflow.tools.reporting import Report

__all__ = ["PUBLISHED_FHIR", "FHIRSink"]

#: Where a FHIR publish records what it stored, relative to the run directory.
PUBLISHED_FHIR = "published/fhir.json"


class FHIRSink:
    """Writes an approved report to a FHIR server: DiagnosticReport, images, Provenance, in one transaction.

    Args:
        client: The EHR (an open :class:`~okaflow.tools.ehr.FHIRClient`; the sink does not close it).
        patient: The subject, ``"Patient/123"``; default the patient of the pulled case the run was made
            from (its ``pull.json``), when it was pulled from this same server.
        status: The DiagnosticReport's status: ``"preliminary"`` (default: released by the approval gate,
            not signed off by a clinician, as the SR says too) or ``"final"`` where a clinician signs it.
        include_pdf: Also attach the report as PDF: the run's ``report.pdf`` if there is one, else
            ``report.html`` printed by headless Chromium (:func:`okaflow.tools.reporting.render_pdf`); with
            neither, publishing is refused before anything is sent.
        code: The DiagnosticReport's ``code`` Coding (default LOINC 18748-4 with images, 11488-4 without).

    Raises:
        PublishError: from :meth:`publish`: no report, no patient, a resource fails validation.
    """

    def __init__(
        self,
        client: FHIRClient,
        *,
        patient: str | None = None,
        status: ReportStatus = "preliminary",
        include_pdf: bool = False,
        code: dict[str, str] | None = None,
    ) -> None:
        if status not in ("final", "preliminary"):
            raise PublishError(f"status must be 'final' or 'preliminary', not {status!r}")
        self.client = client
        self.patient = _patient_reference(patient) if patient is not None else None
        self.status: ReportStatus = status
        self.include_pdf = include_pdf
        self.code = code

    def __repr__(self) -> str:
        return f"FHIRSink({self.client.base_url!r}, patient={self.patient!r}, status={self.status!r})"

    def describe(self) -> str:
        """``FHIR <base url> (<patient>, <status>)``: shown to the human who approves."""
        who = self.patient or "the pulled case's patient"
        return f"FHIR {without_credentials(self.client.base_url)} ({who}, DiagnosticReport {self.status})"

    def publish(self, run_dir: Path, report_paths: Mapping[str, str]) -> str:
        """Build, validate and send the run's report; return the stored DiagnosticReport's URL.

        Raises:
            PublishError: nothing was sent (no report, no patient, validation failed, no PDF to attach).
            ClinicalRejectedError: the server refused the transaction; it stored none of it.
            ClinicalSystemError: connection, auth or server failures, naming the URL.
        """
        root = Path(run_dir)
        pdf = self._pdf(root, report_paths)
        with auditing(AuditTrail(root / AUDIT_LOG)):
            patient = self.patient or _patient_from_pull(root, self.client.base_url)
            existing = self._already_published(root)
            if existing is not None:
                return existing
            self.client.read("Patient", patient.split("/", 1)[1])  # PatientNotFoundError before building
            report, evidence = _report_and_evidence(root)
            writeback = build_writeback(
                root,
                patient=patient,
                version=self.client.fhir_version,
                status=self.status,
                observations=self._existing(patient, "Observation", _cited_observations(report)),
                imaging_studies=self._existing(patient, "ImagingStudy", _studies(report, evidence)),
                pdf=pdf,
                code=self.code,
            )
            answer = self.client.transaction(writeback.bundle)
        return self._record(root, writeback, answer)

    # -- steps ------------------------------------------------------------------------------------
    def _pdf(self, root: Path, report_paths: Mapping[str, str]) -> bytes | None:
        if not self.include_pdf:
            return None
        from okaflow.tools.reporting import render_pdf

        path = Path(report_paths["pdf"]) if "pdf" in report_paths else root / "report.pdf"
        if not path.is_file():
            try:
                path = render_pdf(Path(report_paths.get("html") or root / "report.html"), path)
            except ConfigurationError as exc:
                raise PublishError(
                    f"include_pdf=True but run {root} has no report.pdf and it cannot be printed: {exc.message}; "
                    "nothing was sent",
                    hint=exc.hint or "put a report.pdf in the run directory, or leave include_pdf off",
                ) from None
        return path.read_bytes()

    def _already_published(self, root: Path) -> str | None:
        """The DiagnosticReport an earlier publish of this run stored (found by its identifier), if any."""
        thread_id = str(read_manifest(root).get("thread_id") or "")
        if not thread_id:
            raise PublishError(f"{root / RUN_MANIFEST} has no thread_id", hint="publish a run written by okaflow.run")
        entries = self.client.search("DiagnosticReport", {"identifier": f"{RUN_SYSTEM}|{thread_id}"})
        found = [e["resource"] for e in entries if (e.get("resource") or {}).get("resourceType") == "DiagnosticReport"]
        if not found:
            return None
        url = f"{without_credentials(self.client.base_url)}/DiagnosticReport/{found[0]['id']}"
        if not (root / PUBLISHED_FHIR).is_file():  # keep the first publish's full record where there is one
            _write_record(
                root,
                {
                    "server": without_credentials(self.client.base_url),
                    "already_published": True,
                    "diagnostic_report": url,
                },
            )
        return f"{url} (published before; nothing sent)"

    def _existing(self, patient: str, resource_type: str, ids: list[str]) -> list[str]:
        """Those of ``ids`` (``Type/id``) that exist on the server for ``patient``: one search."""
        wanted = [i.split("/", 1)[1] for i in ids if i.startswith(f"{resource_type}/")]
        if not wanted:
            return []
        entries = self.client.search(resource_type, {"_id": ",".join(wanted), "patient": patient})
        found = {
            str(e["resource"]["id"]) for e in entries if (e.get("resource") or {}).get("resourceType") == resource_type
        }
        return [f"{resource_type}/{i}" for i in wanted if i in found]

    def _record(self, root: Path, writeback: Writeback, answer: dict[str, Any]) -> str:
        created: list[dict[str, Any]] = []
        for sent, got in zip(writeback.bundle["entry"], answer.get("entry") or [], strict=True):
            response = got.get("response") or {}
            created.append(
                {
                    "resourceType": sent["resource"]["resourceType"],
                    "fullUrl": sent["fullUrl"],
                    "status": response.get("status"),
                    "location": response.get("location"),
                }
            )
        report_location = str(created[0]["location"] or "")
        if not report_location:
            raise ClinicalResponseError(
                "the FHIR server stored the report but did not say where (no location in its answer)",
                system="FHIR",
                url=without_credentials(self.client.base_url),
                hint="the report is on the server: publish the run again, which finds it (DiagnosticReport?identifier="
                f"{RUN_SYSTEM}|{writeback.thread_id}), sends nothing and records where it is",
            )
        url = _absolute(without_credentials(self.client.base_url), report_location.split("/_history")[0])
        _write_record(
            root,
            {
                "server": without_credentials(self.client.base_url),
                "fhir_version": writeback.version,
                "thread_id": writeback.thread_id,
                "diagnostic_report": url,
                "entries": created,
            },
        )
        return url


def _patient_reference(value: str) -> str:
    if "/" not in value:
        return f"Patient/{value}"
    kind, _, rid = value.partition("/")
    if kind != "Patient" or not rid or "/" in rid:
        raise PublishError(f"patient must be 'Patient/<id>' on the target server, not {value!r}")
    return value


def _patient_from_pull(root: Path, base_url: str) -> str:
    manifest = read_manifest(root)
    source = (manifest.get("case") or {}).get("source")
    folder = Path(source) if source else None
    if folder is not None and not folder.is_dir():
        folder = folder.parent
    pull = folder / PULL_RECORD if folder is not None else None
    how = "pass FHIRSink(client, patient='Patient/<id>') naming the patient on this server"
    if pull is None or not pull.is_file():
        raise PublishError("no patient to attach the report to: the run's case was not pulled from a server", hint=how)
    fhir = (json.loads(pull.read_text(encoding="utf-8")).get("fhir")) or {}
    pulled_from = str(fhir.get("base_url") or "").rstrip("/")  # pull_case recorded it without credentials
    target = without_credentials(base_url).rstrip("/")
    if pulled_from != target:
        raise PublishError(
            f"the run's case was pulled from {pulled_from or 'no FHIR server'}, not {target}: its patient id "
            "means nothing there",
            hint=how,
        )
    return _patient_reference(str(fhir["patient"]))


def _report_and_evidence(root: Path) -> tuple[Report, list[Evidence]]:
    report_path = root / "report.json"
    if not report_path.is_file():
        raise PublishError(f"run {root} has no report.json: there is nothing to publish")
    evidence_path = root / "evidence.json"
    try:
        report = Report.model_validate_json(report_path.read_text(encoding="utf-8"))
        if evidence_path.is_file():
            rows = json.loads(evidence_path.read_text(encoding="utf-8"))
            return report, [Evidence.model_validate(r) for r in rows]
    except ValueError as exc:  # pydantic's ValidationError is a ValueError, as is bad JSON
        raise PublishError(
            f"run {root}'s report or evidence cannot be read ({type(exc).__name__}): nothing was sent",
            hint="publish a run written by this okaflow version (okaflow replay re-renders an older one)",
        ) from None
    return report, list(report.evidence)


def _cited_observations(report: Report) -> list[str]:
    return [i for i in report.cited_ids() if i.startswith("Observation/")]


def _studies(report: Report, evidence: list[Evidence]) -> list[str]:
    """The ImagingStudy evidence whose DICOM study UID is one the report's images came from."""
    uids = image_study_uids(report, evidence)
    return [
        e.id
        for e in evidence
        if e.kind == "imaging_study" and e.id.startswith("ImagingStudy/") and str(e.data.get("study_uid")) in uids
    ]


def _absolute(base_url: str, location: str) -> str:
    return location if "://" in location else f"{base_url}/{location.lstrip('/')}"


def _write_record(root: Path, record: dict[str, Any]) -> None:
    path = root / PUBLISHED_FHIR
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"published_at": utc_now(), **record}, indent=2), encoding="utf-8")
