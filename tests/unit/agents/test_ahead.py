"""Work done ahead: what a run needs later, made while it waits on the model (RunContext.prepare_ahead)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from okaflow import Case, arun
from okaflow._png import png_bytes
from okaflow._turns import RunTurn, Turns
from okaflow.agents._state import RunContext
from okaflow.model_backend import UnderstandRequest, UnderstandResult
from okaflow.tools.reporting import ArtifactStore, plot_observation_trend
from tests.unit.model_backend.conftest import run_async

from .conftest import ScriptedBackend


class AnswersOnceTheTrendIsDrawn(ScriptedBackend):
    """A model that answers only when the case's trend figure is on disk, or after 5 s."""

    def __init__(self, root: Path, figure_name: str) -> None:
        super().__init__([{"claims": []}])
        self.root, self.figure_name = root, figure_name
        self.drawn_before_answer = False

    async def aunderstand(self, request: UnderstandRequest) -> UnderstandResult:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not self.drawn_before_answer:
            self.drawn_before_answer = any(self.root.rglob(self.figure_name))
            await asyncio.sleep(0.01)
        return self.understand(request)


def test_the_trend_figure_is_drawn_while_the_model_answers_and_the_report_uses_it(
    ct_pair_case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OKAFLOW_CPU_SLOTS", raising=False)  # 0 would turn work ahead off
    points = next(iter(ct_pair_case.patient.observation_series(min_points=2).values()))
    figure = png_bytes(plot_observation_trend(points))
    name = f"{hashlib.sha256(figure).hexdigest()}.png"
    backend = AnswersOnceTheTrendIsDrawn(tmp_path, name)

    result = run_async(lambda: arun(ct_pair_case, backend=backend, out=tmp_path / "run"))

    assert backend.drawn_before_answer
    figures = [b for b in result.report.blocks if b.type == "figure" and "over time" in b.caption]
    assert [Path(f.image.path).name for f in figures] == [name]


def _context(tmp_path: Path, case: Case, turn: RunTurn | None) -> RunContext:
    return RunContext(case=case, run_dir=tmp_path, artifacts=ArtifactStore(tmp_path), turn=turn)


def test_prepared_makes_once_whoever_asks_first(ct_pair_case: Case, tmp_path: Path) -> None:
    ctx, calls = _context(tmp_path, ct_pair_case, None), []

    def make() -> int:
        calls.append(threading.get_ident())
        time.sleep(0.02)  # long enough for every thread to ask while the first makes it
        return 42

    threads = [threading.Thread(target=lambda: ctx.prepared("x", make)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ctx.prepared("x", make) == 42
    assert len(calls) == 1


async def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_a_failure_ahead_is_met_again_by_the_node_that_needs_it(ct_pair_case: Case, tmp_path: Path) -> None:
    calls: list[str] = []

    def broken() -> int:
        calls.append("make")
        raise OSError("disk full")

    async def scenario() -> None:
        ctx = _context(tmp_path, ct_pair_case, RunTurn(Turns(slots=1), 0))
        ctx.prepare_ahead("x", lambda: ctx.prepared("x", broken))
        await _until(lambda: bool(calls))
        await ctx.end_ahead()  # the work ahead failed quietly and kept nothing...
        with pytest.raises(OSError, match="disk full"):
            ctx.prepared("x", broken)  # ...so the node makes it again and meets the error itself

    run_async(scenario)
    assert calls == ["make", "make"]


def test_the_run_ends_after_work_already_in_its_thread_and_only_then_frees_its_slot(
    ct_pair_case: Case, tmp_path: Path
) -> None:
    events: list[str] = []

    def work() -> None:
        events.append("started")
        time.sleep(0.1)
        events.append("written")

    async def scenario() -> None:
        turns = Turns(slots=1)
        ctx = _context(tmp_path, ct_pair_case, RunTurn(turns, 0))
        ctx.prepare_ahead("x", work)
        await _until(lambda: bool(events))
        taken = asyncio.create_task(turns.acquire(1))
        await ctx.end_ahead()
        assert events == ["started", "written"]  # nothing is written after the run has ended
        await asyncio.wait_for(taken, timeout=1)  # and the slot came back once

    run_async(scenario)


def test_work_still_waiting_for_the_cpu_when_the_run_ends_is_cancelled_unrun(
    ct_pair_case: Case, tmp_path: Path
) -> None:
    ran: list[str] = []

    async def scenario() -> None:
        turns = Turns(slots=1)
        await turns.acquire(5)  # another run computes for as long as this run lasts
        ctx = _context(tmp_path, ct_pair_case, RunTurn(turns, 0))
        ctx.prepare_ahead("x", lambda: ran.append("x"))
        await asyncio.sleep(0.01)
        await ctx.end_ahead()
        turns.release()
        await asyncio.sleep(0.01)

    run_async(scenario)
    assert ran == []


@pytest.mark.parametrize("slots", [None, 0], ids=["no turn", "OKAFLOW_CPU_SLOTS=0"])
def test_without_turns_nothing_is_done_ahead(ct_pair_case: Case, tmp_path: Path, slots: int | None) -> None:
    ran: list[str] = []

    async def scenario() -> None:
        turn = None if slots is None else RunTurn(Turns(slots=slots), 0)
        ctx = _context(tmp_path, ct_pair_case, turn)
        ctx.prepare_ahead("x", lambda: ran.append("x"))
        await asyncio.sleep(0.05)
        await ctx.end_ahead()

    run_async(scenario)
    assert ran == []
