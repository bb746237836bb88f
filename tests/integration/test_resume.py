"""Resume: a run stopped mid-way continues from its last checkpoint; no finished step is redone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import okaflow
from okaflow import BackendConnectionError, ConfigurationError, RunDirectoryError
from okaflow._cli import main
from okaflow.model_backend import EvidenceOnlyAnalyst, UnderstandRequest, UnderstandResult
from okaflow.tools.publish import FolderSink

from .conftest import EXAMPLES

pytestmark = pytest.mark.integration
CASE = EXAMPLES / "chest-ct-followup"  # several analyze steps: the analyst calls tools first


class CountingAnalyst(EvidenceOnlyAnalyst):
    """The evidence-only analyst, counting its calls, and losing its server on call ``fail_at``."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.calls = 0
        self.fail_at = fail_at

    def understand(self, request: UnderstandRequest) -> UnderstandResult:
        self.calls += 1
        if self.calls == self.fail_at:
            raise BackendConnectionError("cannot reach http://127.0.0.1:9/v1 (the model server stopped)")
        return super().understand(request)


def report_without_times(run_dir: Path) -> object:
    """The report with every clock reading removed (two runs differ in when, not in what)."""

    def strip(node: object) -> object:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in ("created", "latency_s")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(json.loads((run_dir / "report.json").read_text()))


def test_a_run_stopped_mid_way_resumes_without_redoing_a_step(tmp_path: Path) -> None:
    whole = CountingAnalyst()
    okaflow.run(CASE, backend=whole, out=tmp_path / "whole")
    assert whole.calls >= 2, "the case must take several analyze steps for this test to mean anything"

    failing = CountingAnalyst(fail_at=2)
    with pytest.raises(BackendConnectionError):
        okaflow.run(CASE, backend=failing, out=tmp_path / "run")
    assert not (tmp_path / "run" / "report.json").exists()
    recorded_before = (tmp_path / "run" / "model_calls.jsonl").read_text().splitlines()
    assert len(recorded_before) == 1

    again = CountingAnalyst()
    result = okaflow.resume(tmp_path / "run", backend=again)
    assert result.status == "completed"
    assert again.calls == whole.calls - 1, "only the steps not yet done call the backend"
    calls = [json.loads(line) for line in (tmp_path / "run" / "model_calls.jsonl").read_text().splitlines()]
    assert len(calls) == whole.calls
    steps = [c["request"]["messages"] for c in calls]
    assert len({json.dumps(s) for s in steps}) == len(steps), "no step was asked twice"
    assert report_without_times(tmp_path / "run") == report_without_times(tmp_path / "whole")
    events = [json.loads(line)["node"] for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert events.count("observe") == 1  # the finished steps were not run again
    assert "resume" in events


def test_resuming_a_finished_run_changes_nothing_and_the_recorded_backend_is_rebuilt(tmp_path: Path) -> None:
    first = okaflow.run(CASE, out=tmp_path / "run")
    before = (tmp_path / "run" / "report.html").read_bytes()
    assert main(["resume", str(first.run_dir), "--quiet"]) == 0  # evidence-only, rebuilt from the record
    assert (tmp_path / "run" / "report.html").read_bytes() == before


def test_a_run_waiting_for_approval_is_pointed_to_approve(tmp_path: Path) -> None:
    sinks = [FolderSink(tmp_path / "pub")]
    paused = okaflow.run(CASE, out=tmp_path / "run", sinks=sinks)
    assert paused.status == "awaiting_approval"
    with pytest.raises(okaflow.RunAwaitingApprovalError, match="waiting for approval") as info:
        okaflow.resume(tmp_path / "run", sinks=sinks)
    assert isinstance(info.value, RunDirectoryError) and "okaflow approve" in (info.value.hint or "")
    # The run as it stands comes with the refusal (what okaflow listen records as the job's outcome).
    assert info.value.result.status == "awaiting_approval" and info.value.result.run_dir == paused.run_dir
    assert info.value.result.report_paths == paused.report_paths
    with pytest.raises(ConfigurationError, match="was started to publish"):
        okaflow.resume(tmp_path / "run")  # nothing is published anywhere the run was not told about


def test_listen_keeps_a_job_at_the_gate_but_fails_one_whose_resumed_run_breaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    folder = tmp_path / "jobs" / "job-1"
    shutil.copytree(CASE, folder / "case")
    sinks = [FolderSink(tmp_path / "pub")]
    paused = okaflow.run(folder / "case", out=folder / "runs" / "attempt-1", sinks=sinks)
    service = okaflow.ListenService(tmp_path, sinks=sinks)
    job = okaflow.Job(id="job-1", study_uid="1.2.3", run_dir=str(paused.run_dir))
    kept = service._run_job(job, folder)
    assert kept.status == "awaiting_approval" and kept.run_dir == paused.run_dir

    def broken(*args: object, **kwargs: object) -> None:
        raise RunDirectoryError("artifact x.png exists with content that does not match its name")

    # Any other refusal of a run that has checkpoints fails the job: it is not "awaiting approval".
    monkeypatch.setattr("okaflow._resume.resume", broken)
    with pytest.raises(RunDirectoryError, match="does not match its name"):
        service._run_job(job, folder)
