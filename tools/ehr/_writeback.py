"""A finished run as ONE FHIR transaction Bundle: DiagnosticReport, its images, and a Provenance over them.

What is written, and why each choice (R4/R4B servers get R4 resources, validated with
``fhir.resources.R4B``; R5 servers get R5 resources, validated with ``fhir.resources``):

``DiagnosticReport``
    ``status`` final (or preliminary, by option); ``code`` LOINC 18748-4 *Diagnostic imaging study* when
    the report shows images, else LOINC 11488-4 *Consult note* (pass ``code=`` for your site's code);
    ``subject`` the patient; ``identifier`` ``urn:okaflow:run|<thread id>`` (the run's id in ``run.json``);
    ``conclusion`` the report's impression (else its findings, else all model text); ``presentedForm``
    ``report.html`` (and a PDF when one is given); ``result`` the cited Observations that exist on the
    server; ``imagingStudy`` (R4) / ``study`` (R5) the ImagingStudy the images came from; ``media.link``
    each image.
``Media`` (R4/R4B) / ``DocumentReference`` (R5), one per image
    Identifier ``urn:okaflow:artifact|<thread id>:<sha256>``. A generated image says so three ways: the
    HL7 security label ``AIAST`` (*artificial intelligence asserted*, v3-ObservationValue) in
    ``meta.security`` (and R5 ``securityLabel``), and the text ``AI-GENERATED — NOT FOR DIAGNOSIS`` in
    ``note`` (R4) or ``description`` (R5). Classically derived images say ``DERIVED``; source renderings
    say they are renderings, not the diagnostic original.
``Provenance``
    ``target`` every resource above; ``agent`` okaflow (``who`` an identifier ``urn:okaflow:software|
    okaflow/<version>``, type Device, role *assembler*) and each model (``urn:okaflow:model|<model id>``,
    display naming the backend, role *author*); the prompts as ``entity`` (role *source*, ``what``
    identifier ``urn:okaflow:prompt-sha256|<hash>``): a reader can match each to ``model_calls.jsonl``;
    and the human who approved the release (``approval.json``), role *verifier*.

Every resource carries ``meta.tag`` ``urn:okaflow:run|<thread id>``, so one search finds all a run wrote.
Every entry is a conditional create (``ifNoneExist``: the identifier, or for the Provenance, which has no
identifier, the run tag), so sending the same run twice, or a retry after a lost answer, stores nothing new.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from okaflow._constants import APPROVAL_FILE, RUN_MANIFEST
from okaflow._errors import PublishError
from okaflow._types import Evidence, utc_now
from okaflow.tools.fhir import FHIRVersion
from okaflow.tools.fhir._validate import validate_bundle
from okaflow.tools.reporting import GeneratedImageBlock, ImageBlock, Report, TextBlock

__all__ = [
    "AI_GENERATED_NOTE",
    "ARTIFACT_SYSTEM",
    "RUN_SYSTEM",
    "ReportStatus",
    "Writeback",
    "build_writeback",
    "image_study_uids",
]

ReportStatus = Literal["final", "preliminary"]
RUN_SYSTEM = "urn:okaflow:run"
ARTIFACT_SYSTEM = "urn:okaflow:artifact"
PROMPT_SYSTEM = "urn:okaflow:prompt-sha256"
AI_GENERATED_NOTE = "AI-GENERATED — NOT FOR DIAGNOSIS"
_LOINC = "http://loinc.org"
_IMAGING_CODE = {"system": _LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}
_CONSULT_CODE = {"system": _LOINC, "code": "11488-4", "display": "Consult note"}
_AIAST = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "AIAST",
    "display": "Artificial Intelligence asserted",
}
_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
_MEDIA_TYPE = "http://terminology.hl7.org/CodeSystem/media-type"
_RAD = {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD", "display": "Radiology"}


@dataclass
class Writeback:
    """The transaction Bundle built from one run, and what it holds.

    Attributes:
        bundle: The ``transaction`` Bundle, validated.
        thread_id: The run's id (the DiagnosticReport's identifier value).
        version: The FHIR release the resources were built and validated for.
        report_url: The DiagnosticReport's ``urn:uuid`` fullUrl inside the bundle.
        images: ``urn:uuid`` -> artifact sha256, one per Media / DocumentReference.
    """

    bundle: dict[str, Any]
    thread_id: str
    version: FHIRVersion
    report_url: str
    images: dict[str, str] = field(default_factory=dict)


def build_writeback(
    run_dir: str | Path,
    *,
    patient: str,
    version: FHIRVersion,
    status: ReportStatus = "preliminary",
    observations: list[str] | tuple[str, ...] = (),
    imaging_studies: list[str] | tuple[str, ...] = (),
    pdf: bytes | None = None,
    code: dict[str, str] | None = None,
) -> Writeback:
    """Build and validate the transaction Bundle for a finished run (nothing is sent).

    Args:
        run_dir: The run directory (``run.json``, ``report.json``, ``report.html``, ``artifacts/``).
        patient: The subject on the target server, ``Patient/<id>``.
        version: The server's FHIR release: ``R4``/``R4B`` build Media, ``R5`` DocumentReference.
        status: The DiagnosticReport's status.
        observations: ``Observation/<id>`` references for ``result`` (ones that exist on the server).
        imaging_studies: ``ImagingStudy/<id>`` references the images came from.
        pdf: The report as PDF, added to ``presentedForm`` when given.
        code: A LOINC (or other) Coding for ``DiagnosticReport.code``; default see the module docstring.

    Raises:
        PublishError: the run has no report, or a resource built does not validate (naming it and the field).
    """
    if status not in ("final", "preliminary"):
        raise PublishError(f"a published report's status is 'final' or 'preliminary', not {status!r}")
    root = Path(run_dir)
    report, html, thread_id = _read_run(root)
    created = report.created
    tag = {"system": RUN_SYSTEM, "code": thread_id}
    images = _image_blocks(report)
    report_url = _urn()
    entries: list[dict[str, Any]] = []
    media_links: list[dict[str, Any]] = []
    image_urls: dict[str, str] = {}
    for block in images:
        url = _urn()
        image_urls[url] = block.image.sha256
        resource = _image_resource(root, block, patient, thread_id, created, tag, version)
        entries.append(
            _entry(url, resource, _token_query("identifier", ARTIFACT_SYSTEM, _artifact_id(thread_id, block)))
        )
        media_links.append({"comment": block.caption[:500], "link": {"reference": url}})
    diagnostic = _diagnostic_report(report, html, patient, thread_id, status, tag, version, pdf, code)
    diagnostic.update(_links(version, observations, imaging_studies, media_links))
    entries.insert(0, _entry(report_url, diagnostic, _token_query("identifier", RUN_SYSTEM, thread_id)))
    provenance = _provenance(report, [report_url, *image_urls], patient, tag, version, _approval(root))
    entries.append(_entry(_urn(), provenance, _token_query("_tag", RUN_SYSTEM, thread_id)))
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    _validate(bundle, version)
    return Writeback(bundle, thread_id, version, report_url, image_urls)


def image_study_uids(report: Report, evidence: list[Evidence]) -> set[str]:
    """The DICOM Study Instance UIDs of the source images a report shows."""
    by_id = {e.id: e for e in evidence}
    shown = {b.evidence_id for b in report.blocks if isinstance(b, ImageBlock)}
    shown |= {i for b in report.blocks if isinstance(b, GeneratedImageBlock) for i in b.derived_from}
    return {str(by_id[i].data["study_uid"]) for i in shown if i in by_id and by_id[i].data.get("study_uid")}


# -- reading the run ---------------------------------------------------------------------------
def _read_run(root: Path) -> tuple[Report, bytes, str]:
    manifest_path, report_path, html_path = root / RUN_MANIFEST, root / "report.json", root / "report.html"
    if not manifest_path.is_file():
        raise PublishError(f"{root} is not an okaflow run directory (no {RUN_MANIFEST})")
    if not report_path.is_file() or not html_path.is_file():
        raise PublishError(
            f"run {root} has no finished report (report.json and report.html), so there is nothing to publish",
            hint="let the run finish (and be approved) first: okaflow.approve(run_dir, case, approved=True, ...)",
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    report = Report.model_validate_json(report_path.read_text(encoding="utf-8"))
    return report, html_path.read_bytes(), str(manifest["thread_id"])


def _image_blocks(report: Report) -> list[ImageBlock | GeneratedImageBlock]:
    seen: set[str] = set()
    blocks: list[ImageBlock | GeneratedImageBlock] = []
    for block in report.blocks:
        if isinstance(block, ImageBlock | GeneratedImageBlock) and block.image.sha256 not in seen:
            seen.add(block.image.sha256)
            blocks.append(block)
    return blocks


# -- the resources -----------------------------------------------------------------------------
def _diagnostic_report(
    report: Report,
    html: bytes,
    patient: str,
    thread_id: str,
    status: ReportStatus,
    tag: dict[str, str],
    version: FHIRVersion,
    pdf: bytes | None,
    code: dict[str, str] | None,
) -> dict[str, Any]:
    has_images = any(isinstance(b, ImageBlock | GeneratedImageBlock) for b in report.blocks)
    meta: dict[str, Any] = {"tag": [tag]}
    if any(b.provenance is not None and b.provenance.is_model for b in _model_text(report)):
        meta["security"] = [_AIAST]
    forms = [_attachment(html, "text/html", "report.html", report.created)]
    if pdf is not None:
        forms.append(_attachment(pdf, "application/pdf", "report.pdf", report.created))
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "meta": meta,
        "identifier": [{"system": RUN_SYSTEM, "value": thread_id}],
        "status": status,
        "code": {"coding": [code or (_IMAGING_CODE if has_images else _CONSULT_CODE)], "text": report.title},
        "subject": {"reference": patient},
        "effectiveDateTime": report.created,
        "issued": report.created,
        "presentedForm": forms,
    }
    if has_images:
        resource["category"] = [{"coding": [_RAD]}]
    conclusion = _conclusion(report)
    if conclusion:
        resource["conclusion"] = conclusion
    if version == "R5":
        resource["note"] = [{"text": f"Written by okaflow {report.okaflow_version} ({report.workflow})."}]
    return resource


def _links(version: FHIRVersion, observations: Any, studies: Any, media: list[dict[str, Any]]) -> dict[str, Any]:
    links: dict[str, Any] = {}
    if observations:
        links["result"] = [{"reference": r} for r in dict.fromkeys(observations)]
    if studies:
        links["study" if version == "R5" else "imagingStudy"] = [{"reference": r} for r in dict.fromkeys(studies)]
    if media:
        links["media"] = media
    return links


def _image_resource(
    root: Path,
    block: ImageBlock | GeneratedImageBlock,
    patient: str,
    thread_id: str,
    created: str,
    tag: dict[str, str],
    version: FHIRVersion,
) -> dict[str, Any]:
    path = root / block.image.path
    if not path.is_file():
        raise PublishError(f"the report's image {block.image.path} is missing from {root}", hint="was the run moved?")
    attachment = _attachment(path.read_bytes(), block.image.media_type, block.caption[:200], created)
    synthetic = isinstance(block, GeneratedImageBlock) and block.ai_generated
    meta: dict[str, Any] = {"tag": [tag]}
    if synthetic:
        meta["security"] = [_AIAST]
    identifier = [{"system": ARTIFACT_SYSTEM, "value": _artifact_id(thread_id, block)}]
    text = _image_note(block)
    if version == "R5":
        resource: dict[str, Any] = {
            "resourceType": "DocumentReference",
            "meta": meta,
            "identifier": identifier,
            "status": "current",
            "subject": {"reference": patient},
            "date": created,
            "description": text,
            "content": [{"attachment": attachment}],
        }
        if synthetic:
            resource["securityLabel"] = [{"coding": [_AIAST]}]
        return resource
    resource = {
        "resourceType": "Media",
        "meta": meta,
        "identifier": identifier,
        "status": "completed",
        "type": {"coding": [{"system": _MEDIA_TYPE, "code": "image", "display": "Image"}]},
        "subject": {"reference": patient},
        "createdDateTime": created,
        "content": attachment,
        "note": [{"text": text}],
    }
    if block.image.width and block.image.height:
        resource["width"], resource["height"] = block.image.width, block.image.height
    return resource


def _image_note(block: ImageBlock | GeneratedImageBlock) -> str:
    if isinstance(block, ImageBlock):
        return f"Rendering of {block.evidence_id} for the report (windowed, resized); not the diagnostic original."
    sources = ", ".join(block.derived_from) or "no source image"
    made = f"{block.task} by {block.provenance.backend}" + (
        f" ({block.provenance.model_id})" if block.provenance.model_id else ""
    )
    if block.ai_generated:
        return f"{AI_GENERATED_NOTE}. Synthetic image: {made}, from {sources}. {block.label}".strip()
    return f"DERIVED — classical processing ({made}) of {sources}; not an original acquisition. {block.label}".strip()


def _approval(root: Path) -> dict[str, Any] | None:
    path = root / APPROVAL_FILE
    if not path.is_file():
        return None
    decision: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return decision if decision.get("approved") else None


def _provenance(
    report: Report,
    targets: list[str],
    patient: str,
    tag: dict[str, str],
    version: FHIRVersion,
    approval: dict[str, Any] | None = None,
) -> dict[str, Any]:
    agents = [
        _agent(
            "assembler",
            "urn:okaflow:software",
            f"okaflow/{report.okaflow_version}",
            f"okaflow {report.okaflow_version}",
        )
    ]
    models: dict[str, str] = {}
    prompts: dict[str, None] = {}
    provenances = [b.provenance for b in _model_text(report) if b.provenance is not None]
    provenances += [b.provenance for b in report.blocks if isinstance(b, GeneratedImageBlock)]
    for p in provenances:
        models.setdefault(p.model_id or p.backend, p.backend)
        if p.prompt_hash:
            prompts.setdefault(p.prompt_hash, None)
    if not models:
        models[report.model_id or report.backend] = report.backend
    for model_id, backend in models.items():
        agents.append(_agent("author", "urn:okaflow:model", model_id, f"model {model_id} ({backend} backend)"))
    if approval is not None:
        # The human who let the report leave okaflow (the approval gate): the verifier of what is written.
        who = approval.get("by") or "an unnamed approver"
        agents.append(
            {
                "type": {"coding": [{"system": _PARTICIPANT, "code": "verifier"}]},
                "who": {"display": f"approved for release by {who} at {approval.get('at')}"},
            }
        )
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "meta": {"tag": [tag]},
        "target": [{"reference": t} for t in targets],
        "occurredDateTime": report.created,
        "recorded": utc_now(),
        "activity": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE"}]
        },
        "agent": agents,
    }
    if prompts:
        resource["entity"] = [
            {
                "role": "source",
                "what": {"identifier": {"system": PROMPT_SYSTEM, "value": h}, "display": f"prompt sha256:{h}"},
            }
            for h in prompts
        ]
    if version == "R5":
        resource["patient"] = {"reference": patient}
    return resource


def _agent(role: str, system: str, value: str, display: str) -> dict[str, Any]:
    return {
        "type": {"coding": [{"system": _PARTICIPANT, "code": role}]},
        "who": {"type": "Device", "identifier": {"system": system, "value": value}, "display": display},
    }


def _model_text(report: Report) -> list[TextBlock]:
    return [b for b in report.blocks if isinstance(b, TextBlock) and b.author != "okaflow"]


def _conclusion(report: Report) -> str:
    written = _model_text(report)
    for section in ("impression", "findings"):
        chosen = [b.text for b in written if b.section == section]
        if chosen:
            return "\n".join(chosen)
    return "\n".join(b.text for b in written)


# -- helpers -----------------------------------------------------------------------------------
def _attachment(data: bytes, content_type: str, title: str, created: str) -> dict[str, Any]:
    return {
        "contentType": content_type,
        "data": base64.b64encode(data).decode("ascii"),
        "hash": base64.b64encode(hashlib.sha1(data).digest()).decode("ascii"),
        "title": title,
        "creation": created,
    }


def _artifact_id(thread_id: str, block: ImageBlock | GeneratedImageBlock) -> str:
    return f"{thread_id}:{block.image.sha256}"


def _token_query(param: str, system: str, value: str) -> str:
    return f"{param}={quote(f'{system}|{value}', safe=':|/')}"


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _entry(full_url: str, resource: dict[str, Any], if_none_exist: str) -> dict[str, Any]:
    rtype = resource["resourceType"]
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": rtype, "ifNoneExist": if_none_exist},
    }


def _validate(bundle: dict[str, Any], version: FHIRVersion) -> None:
    resources = [(i, e["resource"]) for i, e in enumerate(bundle["entry"])]
    result = validate_bundle(bundle, resources, version)
    if result.failures:
        first = result.failures[0]
        rtype = (
            bundle["entry"][first.entry_index]["resource"]["resourceType"]
            if first.entry_index is not None
            else "Bundle"
        )
        more = f" ({len(result.failures) - 1} more problems)" if len(result.failures) > 1 else ""
        raise PublishError(
            f"the {rtype} built for FHIR {version} fails validation at {first.path}: {first.message}{more}; "
            "nothing was sent",
            hint="check what you passed (code=, patient=); otherwise it is a bug: keep the run directory and report it",
        )
