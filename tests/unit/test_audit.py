"""The audit trail: entries as written, failures recorded and re-raised, tees, and concurrent writers."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import okaflow
from okaflow._audit import auditing, trail_for


def test_watch_records_success_with_status_and_failure_naming_the_error(tmp_path: Path) -> None:
    trail = okaflow.AuditTrail(tmp_path / "audit.jsonl", actor="okaflow/test client=x")
    with trail.watch("read", system="FHIR", endpoint="http://ehr/fhir", resource="Patient/1") as entry:
        entry["status"] = 200
    endpoint = "http://ehr/fhir"
    with (
        pytest.raises(okaflow.ClinicalTimeoutError),
        trail.watch("read", system="FHIR", endpoint=endpoint, resource="Patient/2"),
    ):
        raise okaflow.ClinicalTimeoutError("no answer in 5 s", system="FHIR", url="http://ehr/fhir/Patient/2")
    first, second = okaflow.read_audit(tmp_path)
    assert first["outcome"] == "success" and first["status"] == 200 and first["actor"] == "okaflow/test client=x"
    assert second["outcome"] == "failure" and second["resource"] == "Patient/2"
    assert second["detail"].startswith("ClinicalTimeoutError: [FHIR] no answer")


def test_auditing_tees_to_a_clients_own_trail_and_stays_in_its_own_thread(tmp_path: Path) -> None:
    site = okaflow.AuditTrail(tmp_path / "site.jsonl")
    run_a, run_b = (okaflow.AuditTrail(tmp_path / r / "audit.jsonl") for r in ("a", "b"))
    barrier = threading.Barrier(2)

    def one_run(trail: okaflow.AuditTrail, resource: str) -> None:
        with auditing(trail):
            barrier.wait()  # both runs inside their blocks at once, as a service's workers are
            shared = trail_for(site)
            assert shared is not None
            shared.record("store", system="DIMSE", endpoint="ORTHANC@127.0.0.1:4242", resource=resource)

    threads = [threading.Thread(target=one_run, args=a) for a in ((run_a, "study 1"), (run_b, "study 2"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e["resource"] for e in okaflow.read_audit(tmp_path / "a")] == ["study 1"]
    assert [e["resource"] for e in okaflow.read_audit(tmp_path / "b")] == ["study 2"]
    assert sorted(e["resource"] for e in okaflow.read_audit(tmp_path / "site.jsonl")) == ["study 1", "study 2"]
    assert trail_for(site) is site and trail_for(None) is None, "outside a block a client keeps its own trail"
    # Nested: a block inside a block that already tees keeps every trail.
    outer = okaflow.AuditTrail(tmp_path / "outer.jsonl", also=okaflow.AuditTrail(tmp_path / "central.jsonl"))
    with auditing(outer):
        chained = trail_for(site)
        assert chained is not None
        chained.record("read", system="FHIR", endpoint="e", resource="Patient/9")
    for name in ("outer.jsonl", "central.jsonl", "site.jsonl"):
        assert okaflow.read_audit(tmp_path / name)[-1]["resource"] == "Patient/9", name


def test_concurrent_writers_never_interleave_lines(tmp_path: Path) -> None:
    trail = okaflow.AuditTrail(tmp_path / "audit.jsonl")

    def write(n: int) -> None:
        for i in range(200):
            trail.record("search", system="FHIR", endpoint="e", resource=f"Observation?n={n}&i={i}" + "x" * 500)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(okaflow.read_audit(tmp_path)) == 800
