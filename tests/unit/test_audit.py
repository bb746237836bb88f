"""The audit trail: entries as written, failures recorded and re-raised, tees, and concurrent writers."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import okaflow
from okaflow._audit import auditing


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


def test_a_tee_writes_both_trails_and_auditing_restores_the_clients_trail(tmp_path: Path) -> None:
    site = okaflow.AuditTrail(tmp_path / "site.jsonl")

    class Client:
        audit: okaflow.AuditTrail | None = site

    client = Client()
    with auditing([client, None], okaflow.AuditTrail(tmp_path / "run" / "audit.jsonl")):
        assert client.audit is not None
        client.audit.record("store", system="DIMSE", endpoint="ORTHANC@127.0.0.1:4242", resource="study 1.2")
    assert client.audit is site
    assert len(okaflow.read_audit(tmp_path / "run")) == 1
    assert okaflow.read_audit(tmp_path / "site.jsonl")[0]["resource"] == "study 1.2"


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
