"""Writing a finished report back to a real FHIR server (sekmet-fhir): pull → run → FHIRSink → read back.

Every link is followed on the server: DiagnosticReport → Media → Provenance, subject, results, the
ImagingStudy, presentedForm. Failures leave nothing of the transaction on the server (searched by the
run's tag), and publishing a run twice stores one DiagnosticReport.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

import okaflow
from okaflow.model_backend import free_port
from okaflow.tools.ehr import AI_GENERATED_NOTE, BearerToken, FHIRClient, build_writeback
from okaflow.tools.pacs import DICOMwebClient
from okaflow.tools.publish import FHIRSink

from .conftest import STATIC_TOKEN, FHIRServer, PACSServer

pytestmark = pytest.mark.integration
ADA = "OKA-PACS-001"


def ehr_client(server: FHIRServer, **kwargs: Any) -> FHIRClient:
    kwargs.setdefault("auth", STATIC_TOKEN)
    return FHIRClient(server.base_url, **kwargs)


def local(reference: str) -> str:
    """``Type/id`` of a reference sekmet wrote absolute (``http://…/fhir/Type/id``)."""
    return "/".join(reference.split("/")[-2:])


def tagged(ehr: FHIRClient, resource_type: str, thread_id: str) -> list[dict[str, Any]]:
    """Every ``resource_type`` the run wrote (all carry the tag ``urn:okaflow:run|<thread id>``)."""
    entries = ehr.search(resource_type, {"_tag": f"urn:okaflow:run|{thread_id}"})
    return [e["resource"] for e in entries if e["resource"]["resourceType"] == resource_type]


def thread_of(run_dir: Path) -> str:
    return str(json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["thread_id"])


@pytest.fixture
def pulled(fhir_server: FHIRServer, pacs_server: PACSServer, tmp_path: Path) -> Path:
    """Ada's case pulled from both servers (her CT study is named by an ImagingStudy on the FHIR server)."""
    folder = tmp_path / "ada"
    with ehr_client(fhir_server) as ehr, DICOMwebClient(pacs_server.dicomweb_url) as pacs:
        okaflow.pull_case(fhir_server.patients[ADA], fhir=ehr, dicomweb=pacs, folder=folder, task="CRP trend")
    return folder


@pytest.fixture
def finished_run(pulled: Path, tmp_path: Path) -> Path:
    """A finished run over the pulled case that published nowhere."""
    return okaflow.run(pulled, out=tmp_path / "run").run_dir


def test_a_run_publishes_to_the_ehr_and_every_link_holds(fhir_server: FHIRServer, pulled: Path, tmp_path: Path) -> None:
    ada = fhir_server.patients[ADA]
    with ehr_client(fhir_server) as ehr:
        sink = FHIRSink(ehr)  # the patient comes from the pulled case's pull.json
        result = okaflow.run(pulled, out=tmp_path / "run", sinks=[sink], require_approval=False)
        (where,) = result.state["published"]
        report_id = where.rsplit("/", 1)[1]
        report = ehr.read("DiagnosticReport", report_id)
        thread = result.thread_id
        # The DiagnosticReport: who, what, which run, the HTML as the form presented.
        assert local(report["subject"]["reference"]) == f"Patient/{ada}"
        assert report["status"] == "preliminary"  # released by the approval gate, not signed off
        assert report["identifier"] == [{"system": "urn:okaflow:run", "value": thread}]
        html = base64.b64decode(report["presentedForm"][0]["data"])
        assert html == (result.run_dir / "report.html").read_bytes()
        assert report["conclusion"]
        # result: the cited Observations, every one Ada's and on the server.
        cited = {i for i in result.report.cited_ids() if i.startswith("Observation/")}
        results = {local(r["reference"]) for r in report["result"]}
        assert results and results <= cited
        for ref in results:
            assert local(ehr.read(*ref.split("/"))["subject"]["reference"]) == f"Patient/{ada}"
        # imagingStudy: the CT study Ada's record names (the MR has no ImagingStudy on the server).
        (study,) = report["imagingStudy"]
        assert ehr.read(*local(study["reference"]).split("/"))["resourceType"] == "ImagingStudy"
        # media: one Media per image in the report, the PNG bytes as stored in the run.
        media = [ehr.read(*local(m["link"]["reference"]).split("/")) for m in report["media"]]
        shown = result.report.blocks
        images = [b for b in shown if b.type in ("image", "generated_image")]
        assert len(media) == len({b.image.sha256 for b in images}) >= 2  # type: ignore[union-attr]
        for item in media:
            assert local(item["subject"]["reference"]) == f"Patient/{ada}"
            digest = item["identifier"][0]["value"].rsplit(":", 1)[1]
            assert (
                base64.b64decode(item["content"]["data"])
                == (result.run_dir / "artifacts" / f"{digest}.png").read_bytes()
            )
        notes = [m["note"][0]["text"] for m in media]
        assert any(n.startswith("Rendering of Image/") for n in notes)
        assert all(
            AI_GENERATED_NOTE not in n or m["meta"]["security"][0]["code"] == "AIAST"
            for n, m in zip(notes, media, strict=True)
        )
        # Provenance: one, targeting the report and every Media, naming okaflow, the model and the prompts.
        (provenance,) = tagged(ehr, "Provenance", thread)
        targets = {local(t["reference"]) for t in provenance["target"]}
        assert targets == {f"DiagnosticReport/{report_id}"} | {f"Media/{m['id']}" for m in media}
        assert provenance["agent"][0]["who"]["identifier"]["value"] == f"okaflow/{okaflow.__version__}"
        assert any(a["who"]["identifier"]["value"] == result.report.model_id for a in provenance["agent"])
        verifier = [a for a in provenance["agent"] if a["type"]["coding"][0]["code"] == "verifier"]
        assert "approved for release by unattended" in verifier[0]["who"]["display"], "the approval is not named"
        assert {e["what"]["identifier"]["system"] for e in provenance["entity"]} == {"urn:okaflow:prompt-sha256"}
        # A conditional read of the stored report: not modified.
        again = ehr.read("DiagnosticReport", report_id, if_none_match='W/"1"')
        assert again.not_modified
    # The run directory says what was stored and where; the audit trail has the write.
    record = json.loads((result.run_dir / "published" / "fhir.json").read_text(encoding="utf-8"))
    assert record["diagnostic_report"] == where
    assert record["entries"][0]["resourceType"] == "DiagnosticReport"
    (write,) = [e for e in okaflow.read_audit(result.run_dir) if e["action"] == "transaction"]
    assert write["outcome"] == "success" and write["resource"].startswith("Bundle(transaction): DiagnosticReport")
    assert "Provenance" in write["resource"] and "Media" in write["resource"]


def test_publishing_a_run_twice_stores_one_report(fhir_server: FHIRServer, finished_run: Path) -> None:
    thread = thread_of(finished_run)
    with ehr_client(fhir_server) as ehr:
        sink = FHIRSink(ehr)
        first = sink.publish(finished_run, {})
        second = sink.publish(finished_run, {})
        assert second.startswith(first) and "nothing sent" in second
        counts = {t: len(tagged(ehr, t, thread)) for t in ("DiagnosticReport", "Media", "Provenance")}
        # The crash case: the same transaction sent again (its first answer lost) finds what it stored.
        patient = f"Patient/{fhir_server.patients[ADA]}"
        answer = ehr.transaction(build_writeback(finished_run, patient=patient, version="R4").bundle)
        assert {e["response"]["status"] for e in answer["entry"]} == {"200 OK"}
        assert {t: len(tagged(ehr, t, thread)) for t in counts} == counts
    assert counts["DiagnosticReport"] == 1 and counts["Provenance"] == 1 and counts["Media"] >= 2


def test_a_transaction_the_server_refuses_stores_nothing_of_it(fhir_server: FHIRServer, finished_run: Path) -> None:
    thread = thread_of(finished_run)
    patient = f"Patient/{fhir_server.patients[ADA]}"
    bundle = build_writeback(finished_run, patient=patient, version="R4").bundle
    # An entry okaflow would never build (it skips validation by going to transaction() directly).
    bad = {"resourceType": "Observation", "status": "final", "valueQuantity": {"value": "not a number"}}
    bundle["entry"].append(
        {
            "fullUrl": "urn:uuid:00000000-0000-4000-8000-0000000000ff",
            "resource": bad,
            "request": {"method": "POST", "url": "Observation"},
        }
    )
    with ehr_client(fhir_server) as ehr:
        with pytest.raises(okaflow.ClinicalRejectedError) as info:
            ehr.transaction(bundle)
        assert info.value.status_code == 400
        assert all(tagged(ehr, t, thread) == [] for t in ("DiagnosticReport", "Media", "Provenance"))


def test_a_server_that_is_down_is_a_connection_error_and_nothing_is_recorded_as_stored(finished_run: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/fhir"
    with FHIRClient(url, max_retries=1) as ehr, pytest.raises(okaflow.ClinicalConnectionError) as info:
        FHIRSink(ehr, patient="Patient/1").publish(finished_run, {})
    assert url in str(info.value)
    assert not (finished_run / "published").exists()
    failed = [e for e in okaflow.read_audit(finished_run) if e["outcome"] == "failure"]
    assert failed and failed[0]["endpoint"] == url


def test_a_wrong_token_is_a_401_and_nothing_is_stored(fhir_server: FHIRServer, finished_run: Path) -> None:
    patient = f"Patient/{fhir_server.patients[ADA]}"
    with ehr_client(fhir_server, auth=BearerToken("wrong")) as ehr, pytest.raises(okaflow.ClinicalAuthenticationError):
        FHIRSink(ehr, patient=patient).publish(finished_run, {})
    with ehr_client(fhir_server) as ehr:
        assert tagged(ehr, "DiagnosticReport", thread_of(finished_run)) == []


def test_a_read_only_client_is_refused_the_write_with_a_403(fhir_server: FHIRServer, finished_run: Path) -> None:
    with FHIRClient(fhir_server.base_url, auth=fhir_server.smart_auth()) as ehr:  # system/*.read
        with pytest.raises(okaflow.ClinicalPermissionDeniedError) as info:
            FHIRSink(ehr).publish(finished_run, {})
        assert info.value.status_code == 403
        assert tagged(ehr, "DiagnosticReport", thread_of(finished_run)) == []
    (write,) = [e for e in okaflow.read_audit(finished_run) if e["action"] == "transaction"]
    assert write["outcome"] == "failure" and write["status"] == 403


def test_an_unknown_patient_is_refused_before_anything_is_sent(fhir_server: FHIRServer, finished_run: Path) -> None:
    with ehr_client(fhir_server) as ehr, pytest.raises(okaflow.PatientNotFoundError):
        FHIRSink(ehr, patient="Patient/no-such-patient").publish(finished_run, {})
    assert not [e for e in okaflow.read_audit(finished_run) if e["action"] == "transaction"]


def test_conditional_reads_against_the_server(fhir_server: FHIRServer) -> None:
    from datetime import UTC, datetime, timedelta

    ada = fhir_server.patients[ADA]
    with ehr_client(fhir_server) as ehr:
        first = ehr.read("Patient", ada, if_none_match='W/"0"')
        assert first.modified and first.resource is not None and first.etag == 'W/"1"'
        assert ehr.read("Patient", ada, if_none_match=first.etag).not_modified
        # Spec difference: FHIR servers SHOULD honour If-Modified-Since; sekmet 0.1.x ignores it and sends the
        # resource. ConditionalRead reports that as modified, which is always safe for the caller.
        later = ehr.read("Patient", ada, if_modified_since=datetime.now(UTC) + timedelta(days=1))
        assert later.modified and later.resource == first.resource
