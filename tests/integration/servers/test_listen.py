"""okaflow listen: studies sent over real DICOM networking (pynetdicom SCU), records from the real FHIR server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pydicom
import pytest

import okaflow
from okaflow._listen import Job, read_jobs
from okaflow.model_backend import free_port
from okaflow.tools.ehr import FHIRClient
from okaflow.tools.publish import FolderSink

from .conftest import STATIC_TOKEN, FHIRServer, PACSServer, new_patient_with_study, synthetic_dicom

pytestmark = pytest.mark.integration
ADA = "OKA-PACS-001"


def send(port: int, datasets: Iterable[pydicom.Dataset], *, calling_aet: str = "MODALITY") -> list[int]:
    """C-STORE the data sets on one association, as a modality or PACS would; the statuses answered."""
    from pynetdicom import AE

    items = list(datasets)
    ae = AE(ae_title=calling_aet)
    for sop_class in {str(ds.SOPClassUID) for ds in items}:
        ae.add_requested_context(sop_class)
    assoc = ae.associate("127.0.0.1", port, ae_title="OKAFLOW")
    if not assoc.is_established:
        raise ConnectionRefusedError("association rejected or aborted")
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in items]
    finally:
        assoc.release()


def wait_for(spool: Path, done: Callable[[list[Job]], bool], timeout: float = 90.0) -> list[Job]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = read_jobs(spool)
        if jobs and done(jobs):
            return jobs
        time.sleep(0.1)
    raise AssertionError(
        f"jobs did not reach the expected states in {timeout} s: {[j.state for j in read_jobs(spool)]}"
    )


def settled(*states: str) -> Callable[[list[Job]], bool]:
    return lambda jobs: sorted(j.state for j in jobs) == sorted(states)


def fhir_factory(server: FHIRServer) -> Callable[[], FHIRClient]:
    return lambda: FHIRClient(server.base_url, auth=STATIC_TOKEN)


def test_two_studies_become_two_runs_with_the_patients_record_and_one_audit_trail(
    fhir_server: FHIRServer, tmp_path: Path
) -> None:
    port = free_port()
    service = okaflow.ListenService(tmp_path, port=port, fhir=fhir_factory(fhir_server), settle_s=0.2, task="CRP?")
    with service:
        statuses = send(port, [synthetic_dicom("CT_STUDY"), synthetic_dicom("MR_STUDY")])
        jobs = wait_for(tmp_path, settled("completed", "completed"))
    assert statuses == [0, 0]
    for job in jobs:
        assert job.received == 1 and job.attempts == 1 and job.run_dir
        run_dir = Path(job.run_dir)
        report = json.loads((run_dir / "report.json").read_text())
        assert any(b["type"] == "image" for b in report["blocks"]), "the received image is not in the report"
        case = okaflow.Case.load(tmp_path / "jobs" / job.id / "case")
        assert case.task == "CRP?" and len(case.patient.observations) == 7, "not the patient's FHIR record"
        trail = okaflow.read_audit(run_dir)
        actions = [(e["system"], e["action"]) for e in trail]
        assert actions[0] == ("DIMSE", "receive") and trail[0]["endpoint"].startswith("MODALITY@127.0.0.1:")
        assert ("FHIR", "search") in actions and all(e["outcome"] == "success" for e in trail)
        pulled = json.loads((tmp_path / "jobs" / job.id / "case" / "pull.json").read_text())
        assert pulled["fhir"]["patient"] == f"Patient/{fhir_server.patients[ADA]}"
    # The instances are kept exactly as sent.
    for job in jobs:
        stored = next((tmp_path / "jobs" / job.id / "case" / "images").rglob("*.dcm"))
        assert pydicom.dcmread(stored).StudyInstanceUID == job.study_uid


def test_a_fhir_server_that_is_down_is_retried_then_reported_and_the_study_is_kept_for_a_retry(
    fhir_server: FHIRServer, tmp_path: Path
) -> None:
    port = free_port()
    down = f"http://127.0.0.1:{free_port()}/fhir"
    with okaflow.ListenService(tmp_path, port=port, fhir=down, settle_s=0.1, max_attempts=2, retry_delay_s=0.2):
        send(port, [synthetic_dicom("CT_STUDY")])
        (job,) = wait_for(tmp_path, settled("failed"))
    assert job.attempts == 2 and [h["outcome"] for h in job.history] == ["error", "error"]
    assert job.error is not None and job.error["type"] == "ClinicalConnectionError"
    assert list((tmp_path / "jobs" / job.id / "case" / "images").rglob("*.dcm")), "the failed study was not kept"
    # Restarted with the server up, the same spool: the failed study runs again on request.
    service = okaflow.ListenService(tmp_path, port=free_port(), fhir=fhir_factory(fhir_server), settle_s=0.1)
    with service:
        service.retry(job.id)
        (job,) = wait_for(tmp_path, settled("completed"))
    assert job.error is None and job.history[-1]["outcome"] == "completed"


def test_a_patient_unknown_to_the_ehr_fails_at_once_saying_so(fhir_server: FHIRServer, tmp_path: Path) -> None:
    port = free_port()
    stranger = synthetic_dicom("CT_STUDY")
    stranger.PatientID = "NOT-IN-THE-EHR"
    with okaflow.ListenService(tmp_path, port=port, fhir=fhir_factory(fhir_server), settle_s=0.1, max_attempts=3):
        send(port, [stranger])
        (job,) = wait_for(tmp_path, settled("failed"))
    assert job.attempts == 1, "a missing patient is not worth retrying"
    assert job.error is not None and job.error["type"] == "CaseError" and "0 Patients" in job.error["message"]
    assert "--retry" in (job.error["hint"] or "")


def test_without_an_ehr_the_case_holds_only_what_the_header_says(tmp_path: Path) -> None:
    port = free_port()
    with okaflow.ListenService(tmp_path, port=port, settle_s=0.1):
        send(port, [synthetic_dicom("MR_STUDY")])
        (job,) = wait_for(tmp_path, settled("completed"))
    bundle = json.loads((tmp_path / "jobs" / job.id / "case" / "bundle.json").read_text())
    patient, study = (e["resource"] for e in bundle["entry"])
    assert patient["identifier"] == [{"value": ADA}] and patient["name"] == [{"family": "Synthetic", "given": [ADA]}]
    assert patient["meta"]["tag"][0]["code"] == "from-dicom-header"
    assert study["identifier"][0]["value"] == f"urn:oid:{job.study_uid}"


def test_runs_wait_for_approval_before_anything_is_published(tmp_path: Path) -> None:
    port, published = free_port(), tmp_path / "published"
    spool = tmp_path / "spool"
    with okaflow.ListenService(spool, port=port, settle_s=0.1, sinks=[FolderSink(published)]):
        send(port, [synthetic_dicom("CT_STUDY")])
        (job,) = wait_for(spool, settled("awaiting_approval"))
    assert not published.exists(), "published without approval"
    # A human approves the waiting run: then, and only then, it is published.
    assert job.run_dir is not None
    case = spool / "jobs" / job.id / "case"
    result = okaflow.approve(job.run_dir, case, approved=True, by="dr-test", sinks=[FolderSink(published)])
    assert result.status == "completed" and (published / Path(job.run_dir).name / "report.html").is_file()
    # Who allowed the write is beside the run and heads what the sinks added to its audit trail.
    assert json.loads((Path(job.run_dir) / "approval.json").read_text())["by"] == "dr-test"
    assert okaflow.read_audit(job.run_dir)[-1]["action"] == "approve"
    # Unattended publishing is asked for explicitly.
    unattended = tmp_path / "unattended"
    with okaflow.ListenService(
        unattended, port=port, settle_s=0.1, sinks=[FolderSink(published)], require_approval=False
    ):
        send(port, [synthetic_dicom("CT_STUDY")])
        (job,) = wait_for(unattended, settled("completed"))
    assert (published / Path(job.run_dir or "").name / "report.html").is_file()


def test_workers_bound_the_jobs_running_at_once(tmp_path: Path) -> None:
    port, running, peak = free_port(), set(), [0]
    lock = threading.Lock()

    def watch(job: Job) -> None:
        with lock:
            (running.add if job.state == "running" else running.discard)(job.id)
            peak[0] = max(peak[0], len(running))

    studies = []
    for n in range(3):
        ds = synthetic_dicom("CT_STUDY")
        ds.StudyInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["listen-bound", str(n)])
        studies.append(ds)
    with okaflow.ListenService(tmp_path, port=port, settle_s=0.1, workers=1, on_job=watch):
        send(port, studies)
        wait_for(tmp_path, settled("completed", "completed", "completed"))
    assert peak[0] == 1


def test_an_interrupted_job_is_queued_again_on_restart(tmp_path: Path) -> None:
    port = free_port()
    with okaflow.ListenService(tmp_path, port=port, settle_s=0.1):
        send(port, [synthetic_dicom("MR_STUDY")])
        (job,) = wait_for(tmp_path, settled("completed"))
    # As if the process had died mid-run: the job is left "running".
    job.state = "running"
    job.write(tmp_path / "jobs" / job.id)
    with okaflow.ListenService(tmp_path, port=free_port(), settle_s=0.1):
        (job,) = wait_for(tmp_path, lambda jobs: jobs[0].state == "completed" and jobs[0].attempts == 2)
    assert [h["outcome"] for h in job.history] == ["completed", "interrupted", "completed"]


def test_a_job_interrupted_at_the_approval_gate_keeps_its_one_run_on_restart(tmp_path: Path) -> None:
    port, published = free_port(), tmp_path / "published"
    with okaflow.ListenService(tmp_path, port=port, settle_s=0.1, sinks=[FolderSink(published)]):
        send(port, [synthetic_dicom("CT_STUDY")])
        (job,) = wait_for(tmp_path, settled("awaiting_approval"))
    job.state = "running"  # as if the process had died just after the run reached the gate
    job.write(tmp_path / "jobs" / job.id)
    with okaflow.ListenService(tmp_path, port=free_port(), settle_s=0.1, sinks=[FolderSink(published)]):
        (again,) = wait_for(tmp_path, lambda jobs: jobs[0].state == "awaiting_approval" and jobs[0].attempts == 2)
    assert again.run_dir == job.run_dir, "the restart started a second run (and a second model call)"
    assert [p.name for p in (tmp_path / "jobs" / job.id / "runs").iterdir()] == ["attempt-1"]
    assert not published.exists()
    with pytest.raises(okaflow.ConfigurationError, match="no job 'nope'") as info:
        okaflow.ListenService(tmp_path).retry("nope")
    assert "--status" in (info.value.hint or "")


def test_a_sender_the_service_does_not_know_is_rejected(tmp_path: Path) -> None:
    port = free_port()
    with okaflow.ListenService(tmp_path, port=port, allowed_calling_aets=["PACS"]):
        with pytest.raises(ConnectionRefusedError):
            send(port, [synthetic_dicom("CT_STUDY")], calling_aet="STRANGER")
        assert send(port, [synthetic_dicom("CT_STUDY")], calling_aet="PACS") == [0]


def test_the_command_line_service_takes_a_study_lists_it_and_stops_on_sigterm(tmp_path: Path) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys

    port, spool = free_port(), tmp_path / "spool"
    cmd = [sys.executable, "-m", "okaflow", "listen", "--spool", str(spool), "--port", str(port), "--settle", "0.1"]
    service = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:  # plain TCP until the port answers (pynetdicom leaks a socket on a refused connection)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline and service.poll() is None, "okaflow listen did not start"
                time.sleep(0.2)
        assert send(port, [synthetic_dicom("CT_STUDY")]) == [0]
        (job,) = wait_for(spool, settled("completed"))
    finally:
        service.send_signal(signal.SIGTERM)
        output, _ = service.communicate(timeout=60)
    assert service.returncode == 0, output
    assert f"job {job.id}: completed" in output and "stopping" in output
    assert "OKA-PACS-001" not in output and job.study_uid not in output, "the log names the patient or study"
    status = subprocess.run([*cmd[:6], "--status"], capture_output=True, text=True, env=os.environ, check=True)
    assert job.id in status.stdout and "completed" in status.stdout
    refused = subprocess.run([*cmd[:6], "--retry", job.id], capture_output=True, text=True, check=False)
    assert refused.returncode == 6 and "not failed" in refused.stderr


def test_a_study_orthanc_sends_comes_back_to_both_servers_with_every_write_audited(
    fhir_server: FHIRServer, pacs_server: PACSServer, tmp_path: Path
) -> None:
    """The service round trip: Orthanc C-STOREs a study to okaflow listen (on the port Orthanc lists for our
    AE), the patient is matched on sekmet-fhir, and the approved report goes back as FHIR (transaction) and
    DICOM (SR + Secondary Capture by C-STORE)."""
    import httpx

    from okaflow.tools.pacs import DICOMwebClient, DIMSEClient
    from okaflow.tools.publish import DICOMSink, FHIRSink

    patient_id, ds = new_patient_with_study(fhir_server, pacs_server, "OKA-LISTEN-001")
    orthanc = httpx.Client(base_url=pacs_server.http_url, timeout=30)

    ehr, pacs = (
        FHIRClient(fhir_server.base_url, auth=STATIC_TOKEN),
        DIMSEClient("127.0.0.1", pacs_server.dicom_port, called_aet=pacs_server.aet),
    )
    service = okaflow.ListenService(
        tmp_path,
        port=pacs_server.move_port,
        allowed_calling_aets=[pacs_server.aet],
        fhir=fhir_factory(fhir_server),
        settle_s=0.2,
        sinks=[FHIRSink(ehr), DICOMSink(pacs)],
        require_approval=False,
    )
    with ehr, pacs, orthanc, service:
        (found,) = orthanc.post("/tools/lookup", content=str(ds.StudyInstanceUID)).json()
        sent = orthanc.post("/modalities/okaflow/store", json={"Resources": [found["ID"]], "Synchronous": True})
        sent.raise_for_status()
        (job,) = wait_for(tmp_path, settled("completed"))
    run_dir = Path(job.run_dir or "")
    published = json.loads((run_dir / "published" / "fhir.json").read_text())
    with FHIRClient(fhir_server.base_url, auth=STATIC_TOKEN) as reader:
        reports = reader.search("DiagnosticReport", {"subject": f"Patient/{patient_id}"})
    assert len(reports) == 1 and published, "the report did not reach the EHR"
    with DICOMwebClient(pacs_server.dicomweb_url) as web:
        modalities = sorted(s.modality or "" for s in web.search_series(str(ds.StudyInstanceUID)))
    assert "SR" in modalities, f"no SR in the study: {modalities}"
    trail = [(e["system"], e["action"]) for e in okaflow.read_audit(run_dir)]
    assert trail[0] == ("DIMSE", "receive") and ("okaflow", "approve") in trail
    assert ("FHIR", "transaction") in trail and ("DIMSE", "store") in trail
    approve_at = trail.index(("okaflow", "approve"))
    assert all(step[1] in ("receive", "search", "read") for step in trail[:approve_at]), "a write before approval"


def test_a_retry_after_a_failed_second_sink_resumes_the_run_and_writes_nothing_twice(
    fhir_server: FHIRServer, pacs_server: PACSServer, tmp_path: Path
) -> None:
    from okaflow.tools.pacs import DICOMwebClient
    from okaflow.tools.publish import DICOMSink, FHIRSink

    patient_id, ds = new_patient_with_study(fhir_server, pacs_server, "OKA-LISTEN-002")
    port = free_port()
    ehr = FHIRClient(fhir_server.base_url, auth=STATIC_TOKEN)
    down = DICOMwebClient(f"http://127.0.0.1:{free_port()}/dicom-web", max_retries=0)
    service = okaflow.ListenService(
        tmp_path,
        port=port,
        fhir=fhir_factory(fhir_server),
        settle_s=0.1,
        sinks=[FHIRSink(ehr), DICOMSink(down)],
        require_approval=False,
        max_attempts=2,
        retry_delay_s=0.1,
    )
    with ehr, down, service:
        send(port, [ds])
        (job,) = wait_for(tmp_path, settled("failed"))
    assert job.attempts == 2 and job.error is not None and job.error["type"] == "ClinicalConnectionError"
    # The second attempt resumed the first run: the EHR got the report once, not once per attempt.
    with FHIRClient(fhir_server.base_url, auth=STATIC_TOKEN) as reader:
        assert len(reader.search("DiagnosticReport", {"subject": f"Patient/{patient_id}"})) == 1
    assert sorted(p.name for p in (tmp_path / "jobs" / job.id / "runs").iterdir()) == ["attempt-1"]
    # One decision, recorded once: the resumed publish step does not approve again.
    trail = okaflow.read_audit(tmp_path / "jobs" / job.id / "runs" / "attempt-1")
    assert [e["action"] for e in trail].count("approve") == 1


def test_the_storage_scp_refuses_an_oversized_instance_and_stores_the_rest(tmp_path: Path) -> None:
    from okaflow.tools.pacs import IncomingInstance, StorageSCP

    stored: list[IncomingInstance] = []
    port = free_port()
    small = synthetic_dicom("MR_STUDY")  # 64×64: about 9 KB
    big = synthetic_dicom("CT_STUDY")  # 128×128: about 39 KB
    with StorageSCP(stored.append, port=port, max_instance_bytes=20_000):
        assert send(port, [small, big]) == [0x0000, 0xA700]
    assert [i.sop_instance_uid for i in stored] == [str(small.SOPInstanceUID)], "the refused one reached the store"
