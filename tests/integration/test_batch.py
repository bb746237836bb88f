"""Cohorts: concurrency bounded, failures recorded without stopping the batch, and a second pass resumes."""

from __future__ import annotations

import asyncio
import csv
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import okaflow
from okaflow import BackendConnectionError
from okaflow._cli import EXIT_CODES, main
from okaflow.model_backend import EvidenceOnlyAnalyst, UnderstandRequest, UnderstandResult

from .conftest import EXAMPLE_CASES, EXAMPLES

pytestmark = pytest.mark.integration


class InFlight(EvidenceOnlyAnalyst):
    """The evidence-only analyst, holding each call until ``width`` calls are in flight together.

    If the batch let fewer cases run at once, the calls would wait for the full timeout and the test
    fail; if it let more, ``peak`` would exceed ``width``. No timing luck either way.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.now = 0
        self.peak = 0
        self._full: asyncio.Event | None = None

    async def aunderstand(self, request: UnderstandRequest) -> UnderstandResult:
        self._full = self._full or asyncio.Event()
        self.now += 1
        self.peak = max(self.peak, self.now)
        if self.now >= self.width:
            self._full.set()
        try:
            await asyncio.wait_for(self._full.wait(), timeout=30)
            return self.understand(request)
        finally:
            self.now -= 1


def broken_case(root: Path) -> Path:
    case = shutil.copytree(EXAMPLES / "brain-mri", root / "broken-bundle")
    (case / "bundle.json").write_text("{ not json")
    return case


def test_a_cohort_runs_concurrently_and_a_failure_does_not_stop_it(tmp_path: Path) -> None:
    cases = [EXAMPLES / name for name in EXAMPLE_CASES] * 2 + [broken_case(tmp_path)]
    backend = InFlight(width=3)
    seen: list[tuple[str, int]] = []
    result = okaflow.batch(
        cases,
        out=tmp_path / "cohort",
        concurrency=3,
        backend=backend,
        on_progress=lambda o, n, t: seen.append((o.status, n)),
    )
    assert backend.peak == 3, "three cases in flight at once, never more"
    statuses = [o.status for o in result.outcomes]
    assert statuses == ["done"] * 6 + ["failed"]
    assert "FHIRParseError" in (result.failed[0].reason or "")
    assert [n for _, n in seen] == list(range(1, 8))
    names = sorted(p.name for p in (tmp_path / "cohort").iterdir() if p.is_dir())
    assert names == sorted([*EXAMPLE_CASES, *(f"{n}-2" for n in EXAMPLE_CASES)])  # the broken case left no run
    with result.summary_csv.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows] == statuses
    index = result.index_html.read_text()
    for outcome in result.outcomes[:6]:
        link = Path(outcome.report or "").relative_to(tmp_path / "cohort").as_posix()
        assert f'href="{link}"' in index
        assert (tmp_path / "cohort" / link).is_file()
    assert json.loads(result.summary_json.read_text())["cases"][6]["status"] == "failed"


def test_running_the_batch_again_keeps_finished_cases_resumes_interrupted_ones_and_retries_failures(
    tmp_path: Path,
) -> None:
    out = tmp_path / "cohort"

    # An interrupted case: its run stopped when the model server went away.
    class Stops(EvidenceOnlyAnalyst):
        calls = 0

        def understand(self, request: UnderstandRequest) -> UnderstandResult:
            Stops.calls += 1
            if Stops.calls == 2:
                raise BackendConnectionError("the model server stopped")
            return super().understand(request)

    with pytest.raises(BackendConnectionError):
        okaflow.run(EXAMPLES / "chest-ct-followup", backend=Stops(), out=out / "chest-ct-followup")
    okaflow.run(EXAMPLES / "brain-mri", out=out / "brain-mri")
    broken = broken_case(tmp_path)
    cases = [EXAMPLES / "chest-ct-followup", EXAMPLES / "brain-mri", broken]
    first = okaflow.batch(cases, out=out, concurrency=2)
    assert [o.status for o in first.outcomes] == ["resumed", "kept", "failed"]
    assert (out / "chest-ct-followup" / "report.html").is_file()
    shutil.copy(EXAMPLES / "brain-mri" / "bundle.json", broken / "bundle.json")  # fix the broken case
    second = okaflow.batch(cases, out=out, concurrency=2)
    assert [o.status for o in second.outcomes] == ["kept", "kept", "done"]


def test_cli_batch_exit_code_names_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [str(EXAMPLES / "brain-mri"), str(broken_case(tmp_path))]
    code = main(["batch", *cases, "--out", str(tmp_path / "cohort"), "--concurrency", "2", "--json"])
    assert code == EXIT_CODES["batch_failures"]
    outcomes = json.loads(capsys.readouterr().out)
    assert [o["status"] for o in outcomes] == ["done", "failed"]
    assert main(["batch", cases[0], "--out", str(tmp_path / "ok"), "--quiet"]) == 0


def test_batch_works_where_an_event_loop_is_already_running(tmp_path: Path) -> None:
    """As in a Jupyter notebook: the synchronous batch() is called from inside a running loop."""

    async def notebook_cell() -> okaflow.BatchResult:
        return okaflow.batch([EXAMPLES / "brain-mri"], out=tmp_path / "cohort")

    # A fresh thread, so the cell's loop is the only one whatever an earlier test left on this thread.
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(lambda: asyncio.run(notebook_cell())).result()
    assert [o.status for o in result.outcomes] == ["done"]
