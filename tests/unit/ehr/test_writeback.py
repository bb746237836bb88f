"""The write-back Bundle built from a run directory (R4 Media vs R5 DocumentReference, AI labels, links,
idempotency keys), validation refusal, and FHIRSink's refusals and wire behaviour over httpx.MockTransport."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

import okaflow
from okaflow._types import Evidence, Provenance, content_hash
from okaflow.tools.ehr import AI_GENERATED_NOTE, FHIRClient, build_writeback
from okaflow.tools.publish import FHIRSink
from okaflow.tools.reporting import ArtifactRef, GeneratedImageBlock, ImageBlock, Report, TextBlock

THREAD = "0123456789abcdef0123456789abcdef"
CREATED = "2026-11-23T10:00:00+00:00"
STUDY_UID = "1.2.3.4"
MODEL = Provenance(backend="openai", model_id="tiny-vlm", prompt_hash="a" * 64, created=CREATED)
GENERATOR = Provenance(backend="diffusers", model_id="tiny-sd", prompt_hash="b" * 64, created=CREATED)


def make_run(root: Path, *, source: Path | None = None) -> Path:
    """A finished run directory written by hand: one source image, one AI-generated image, model text."""
    (root / "artifacts").mkdir(parents=True)
    refs = []
    for data in (b"\x89PNG source", b"\x89PNG generated"):
        digest = content_hash(data)
        (root / "artifacts" / f"{digest}.png").write_bytes(data)
        refs.append(ArtifactRef(path=f"artifacts/{digest}.png", sha256=digest, width=64, height=32))
    blocks = [
        TextBlock(text="CRP rising.", author="model", provenance=MODEL, cites=["Observation/o1"], section="findings"),
        TextBlock(
            text="Infection likely.", author="model", provenance=MODEL, cites=["Observation/o2"], section="impression"
        ),
        ImageBlock(image=refs[0], caption="CT, middle slice", evidence_id="Image/1.2.3.4.5"),
        GeneratedImageBlock(
            image=refs[1],
            caption="Super-resolved CT",
            label="AI-GENERATED",
            task="super_resolution",
            derived_from=["Image/1.2.3.4.5"],
            provenance=GENERATOR,
            ai_generated=True,
        ),
    ]
    evidence = [
        Evidence(id="Image/1.2.3.4.5", kind="image", summary="CT", data={"study_uid": STUDY_UID}),
        Evidence(id="ImagingStudy/is1", kind="imaging_study", summary="CT study", data={"study_uid": STUDY_UID}),
        Evidence(id="ImagingStudy/other", kind="imaging_study", summary="MR study", data={"study_uid": "9.9"}),
    ]
    report = Report(
        title="Radiology report",
        case_id="c1",
        workflow="radiology-report",
        created=CREATED,
        okaflow_version="9.9.9",
        backend="openai",
        model_id="tiny-vlm",
        model_configured=True,
        blocks=blocks,
        evidence=evidence,
    )
    (root / "report.json").write_text(report.model_dump_json(), encoding="utf-8")
    (root / "report.html").write_text("<html>report</html>", encoding="utf-8")
    (root / "evidence.json").write_text(json.dumps([e.model_dump() for e in evidence]), encoding="utf-8")
    manifest = {"thread_id": THREAD, "case": {"source": str(source) if source else None}}
    (root / "run.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


def resources(bundle: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle["entry"]:
        out.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    return out


def test_r4_gets_media_linked_from_the_report_and_the_generated_one_is_labelled(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    w = build_writeback(
        run, patient="Patient/p1", version="R4", observations=["Observation/o1"], imaging_studies=["ImagingStudy/is1"]
    )
    got = resources(w.bundle)
    assert sorted(got) == ["DiagnosticReport", "Media", "Provenance"]
    (report,) = got["DiagnosticReport"]
    assert report["identifier"] == [{"system": "urn:okaflow:run", "value": THREAD}]
    assert report["subject"] == {"reference": "Patient/p1"}
    assert report["code"]["coding"][0]["code"] == "18748-4"
    assert report["conclusion"] == "Infection likely."  # the impression, not the findings
    assert base64.b64decode(report["presentedForm"][0]["data"]) == b"<html>report</html>"
    assert report["result"] == [{"reference": "Observation/o1"}]
    assert report["imagingStudy"] == [{"reference": "ImagingStudy/is1"}] and "study" not in report
    assert [m["link"]["reference"] for m in report["media"]] == list(w.images)
    source, generated = got["Media"]
    assert "security" not in source["meta"] and "not the diagnostic original" in source["note"][0]["text"]
    assert generated["meta"]["security"][0]["code"] == "AIAST"
    assert generated["note"][0]["text"].startswith(AI_GENERATED_NOTE)
    assert base64.b64decode(generated["content"]["data"]) == b"\x89PNG generated"
    (provenance,) = got["Provenance"]
    assert [t["reference"] for t in provenance["target"]] == [w.report_url, *w.images]
    whos = [a["who"]["identifier"]["value"] for a in provenance["agent"]]
    assert whos == ["okaflow/9.9.9", "tiny-vlm", "tiny-sd"]
    assert [e["what"]["identifier"]["value"] for e in provenance["entity"]] == ["a" * 64, "b" * 64]


def test_r5_gets_document_references_and_study(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    w = build_writeback(run, patient="Patient/p1", version="R5", imaging_studies=["ImagingStudy/is1"])
    got = resources(w.bundle)
    assert sorted(got) == ["DiagnosticReport", "DocumentReference", "Provenance"]
    report = got["DiagnosticReport"][0]
    assert report["study"] == [{"reference": "ImagingStudy/is1"}] and "imagingStudy" not in report
    generated = got["DocumentReference"][1]
    assert generated["securityLabel"][0]["coding"][0]["code"] == "AIAST"
    assert generated["description"].startswith(AI_GENERATED_NOTE)
    assert got["Provenance"][0]["patient"] == {"reference": "Patient/p1"}


def test_every_entry_is_a_conditional_create_under_a_urn_uuid(tmp_path: Path) -> None:
    w = build_writeback(make_run(tmp_path / "run"), patient="Patient/p1", version="R4")
    requests = [(e["fullUrl"][:9], e["request"]["method"], e["request"]["ifNoneExist"]) for e in w.bundle["entry"]]
    media = [e["resource"]["identifier"][0]["value"] for e in w.bundle["entry"][1:3]]
    assert requests == [
        ("urn:uuid:", "POST", f"identifier=urn:okaflow:run|{THREAD}"),
        ("urn:uuid:", "POST", f"identifier=urn:okaflow:artifact|{media[0]}"),
        ("urn:uuid:", "POST", f"identifier=urn:okaflow:artifact|{media[1]}"),
        ("urn:uuid:", "POST", f"_tag=urn:okaflow:run|{THREAD}"),
    ]


def test_a_resource_that_fails_validation_is_refused_naming_it_and_the_field(tmp_path: Path) -> None:
    with pytest.raises(okaflow.PublishError) as info:
        build_writeback(make_run(tmp_path / "run"), patient="Patient/p1", version="R4", code={"code": "x", "bad": "y"})
    assert "DiagnosticReport" in str(info.value) and "code.coding[0].bad" in str(info.value)
    assert "nothing was sent" in str(info.value)


def test_a_run_without_a_report_is_refused(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    (run / "report.json").unlink()
    with pytest.raises(okaflow.PublishError, match="no finished report"):
        build_writeback(run, patient="Patient/p1", version="R4")


# -- FHIRSink over a mock server ---------------------------------------------------------------------
class MockEHR:
    """A FHIR R4 server in a function: knows Patient/p1, Observation/o1 and ImagingStudy/is1."""

    def __init__(self, version: str = "4.0.1") -> None:
        self.version = version
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/fhir").strip("/")
        if path == "metadata":
            return httpx.Response(200, json={"resourceType": "CapabilityStatement", "fhirVersion": self.version})
        if path == "Patient/p1":
            return httpx.Response(200, json={"resourceType": "Patient", "id": "p1"})
        if request.method == "GET":
            known = {"Observation": "o1", "ImagingStudy": "is1"}.get(path)
            ids = request.url.params.get("_id", "").split(",")
            hits = [{"resource": {"resourceType": path, "id": known}}] if known in ids else []
            return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": hits})
        sent = json.loads(request.content)
        entries = [
            {"response": {"status": "201 Created", "location": f"{e['request']['url']}/{i}/_history/1"}}
            for i, e in enumerate(sent["entry"])
        ]
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "transaction-response", "entry": entries})

    def client(self) -> FHIRClient:
        return FHIRClient("https://ehr.test/fhir", http_client=httpx.Client(transport=httpx.MockTransport(self)))


def test_the_sink_keeps_only_links_the_server_has_and_records_what_it_stored(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    ehr = MockEHR()
    sink = FHIRSink(ehr.client(), patient="Patient/p1")
    assert sink.describe() == "FHIR https://ehr.test/fhir (Patient/p1, DiagnosticReport preliminary)"
    where = sink.publish(run, {})
    assert where == "https://ehr.test/fhir/DiagnosticReport/0"
    post = [r for r in ehr.requests if r.method == "POST"]
    assert len(post) == 1
    report = json.loads(post[0].content)["entry"][0]["resource"]
    assert report["result"] == [{"reference": "Observation/o1"}]  # o2 is cited but not on the server
    assert report["imagingStudy"] == [{"reference": "ImagingStudy/is1"}]  # not the MR study the images are not from
    record = json.loads((run / "published" / "fhir.json").read_text(encoding="utf-8"))
    assert record["entries"][0]["location"] == "DiagnosticReport/0/_history/1"
    actions = [e["action"] for e in okaflow.read_audit(run)]
    assert actions[-1] == "transaction" and "search" in actions


class ForgetfulEHR(MockEHR):
    """Stores the transaction but answers without the report's location; finds the report by identifier after."""

    stored = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.requests.append(request)
            self.stored = True
            sent = len(json.loads(request.content)["entry"])
            answer = {"resourceType": "Bundle", "type": "transaction-response"}
            return httpx.Response(200, json={**answer, "entry": [{"response": {"status": "201 Created"}}] * sent})
        if self.stored and request.url.path.endswith("/DiagnosticReport"):
            self.requests.append(request)
            hit = {"resource": {"resourceType": "DiagnosticReport", "id": "dr9"}}
            return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": [hit]})
        return super().__call__(request)


def test_a_report_stored_without_its_location_is_found_by_publishing_again_as_the_hint_says(tmp_path: Path) -> None:
    run, ehr = make_run(tmp_path / "run"), ForgetfulEHR()
    sink = FHIRSink(ehr.client(), patient="Patient/p1")
    with pytest.raises(okaflow.ClinicalResponseError, match="did not say where") as info:
        sink.publish(run, {})
    assert "publish the run again" in str(info.value.hint)
    assert sink.publish(run, {}) == "https://ehr.test/fhir/DiagnosticReport/dr9 (published before; nothing sent)"
    assert len([r for r in ehr.requests if r.method == "POST"]) == 1


def test_an_r5_server_is_sent_document_references(tmp_path: Path) -> None:
    ehr = MockEHR("5.0.0")
    FHIRSink(ehr.client(), patient="p1").publish(make_run(tmp_path / "run"), {})
    (post,) = [r for r in ehr.requests if r.method == "POST"]
    assert {e["resource"]["resourceType"] for e in json.loads(post.content)["entry"]} == {
        "DiagnosticReport",
        "DocumentReference",
        "Provenance",
    }


def test_no_patient_is_refused_before_any_request(tmp_path: Path) -> None:
    ehr = MockEHR()
    with pytest.raises(okaflow.PublishError) as info:
        FHIRSink(ehr.client()).publish(make_run(tmp_path / "run"), {})
    assert "patient='Patient/<id>'" in str(info.value)
    assert ehr.requests == []


def test_a_case_pulled_from_another_server_gives_no_patient(tmp_path: Path) -> None:
    case = tmp_path / "case"
    case.mkdir()
    pull = {"fhir": {"base_url": "https://other.test/fhir", "patient": "Patient/p1"}}
    (case / "pull.json").write_text(json.dumps(pull), encoding="utf-8")
    with pytest.raises(okaflow.PublishError, match=r"pulled from https://other\.test/fhir"):
        FHIRSink(MockEHR().client()).publish(make_run(tmp_path / "run", source=case), {})
    pull["fhir"]["base_url"] = "https://ehr.test/fhir/"
    (case / "pull.json").write_text(json.dumps(pull), encoding="utf-8")
    assert FHIRSink(MockEHR().client()).publish(make_run(tmp_path / "run2", source=case), {})


def test_include_pdf_without_a_pdf_or_chromium_is_refused_before_any_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OKAFLOW_CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no chromium anywhere
    ehr = MockEHR()
    sink = FHIRSink(ehr.client(), patient="Patient/p1", include_pdf=True)
    with pytest.raises(okaflow.PublishError, match="needs Chromium"):
        sink.publish(make_run(tmp_path / "run"), {})
    monkeypatch.setenv("OKAFLOW_CHROMIUM", str(tmp_path / "no-chromium-here"))
    with pytest.raises(okaflow.PublishError, match="no-chromium-here', which is not a file"):
        sink.publish(make_run(tmp_path / "run2"), {})
    assert ehr.requests == []


def test_a_validation_failure_sends_nothing(tmp_path: Path) -> None:
    ehr = MockEHR()
    sink = FHIRSink(ehr.client(), patient="Patient/p1", code={"code": "x", "bad": "y"})
    with pytest.raises(okaflow.PublishError, match="fails validation"):
        sink.publish(make_run(tmp_path / "run"), {})
    assert [r.method for r in ehr.requests if r.method != "GET"] == []
    assert not (tmp_path / "run" / "published").exists()


def test_a_wrong_patient_reference_is_refused() -> None:
    with pytest.raises(okaflow.PublishError, match="Patient/<id>"):
        FHIRSink(MockEHR().client(), patient="Observation/1")
