"""okaflow rerun: fork a run before an analysis step with another backend; the parent is untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import okaflow
from okaflow import RunDirectoryError
from okaflow._cli import main

from .conftest import EXAMPLES
from .test_diff import OneClaim

pytestmark = pytest.mark.integration
CASE = EXAMPLES / "chest-ct-followup"


def models_by_step(state: dict[str, object]) -> list[tuple[int, str]]:
    return [(a["step"], a["provenance"]["model_id"]) for a in state["analyses"]]  # type: ignore[index,union-attr]


def test_fork_before_step_two_keeps_step_one_and_redoes_the_rest(tmp_path: Path) -> None:
    parent = okaflow.run(CASE, out=tmp_path / "parent")
    parent_steps = models_by_step(parent.state)
    assert len(parent_steps) >= 2
    before = {p.name: p.read_bytes() for p in parent.run_dir.iterdir() if p.is_file()}

    child = okaflow.rerun(parent.run_dir, from_step=2, backend=OneClaim(), out=tmp_path / "child")
    assert child.status == "completed"
    steps = models_by_step(child.state)
    assert steps[0] == parent_steps[0]  # kept from the parent
    assert steps[1] == (2, "one-claim-1")  # redone with the new backend
    manifest = json.loads((child.run_dir / "run.json").read_text())
    assert manifest["parent"] == {"run": str(parent.run_dir.resolve()), "from_step": 2}
    assert manifest["backend"]["model_id"] == "one-claim-1"
    assert {p.name: p.read_bytes() for p in parent.run_dir.iterdir() if p.is_file()} == before

    # The child's record is whole: it replays (step 1 from the parent's calls, step 2 from its own).
    replayed = okaflow.replay(child.run_dir, out=tmp_path / "child-replay")
    assert replayed.identical, replayed.differing
    diff = okaflow.diff_runs(parent.run_dir, child.run_dir)
    assert diff.steps[0].same and not diff.steps[1].same


def test_fork_from_a_step_the_run_never_reached_lists_the_steps_it_has(tmp_path: Path) -> None:
    parent = okaflow.run(CASE, out=tmp_path / "parent")
    with pytest.raises(RunDirectoryError, match="no checkpoint before analysis step 40") as info:
        okaflow.rerun(parent.run_dir, from_step=40, out=tmp_path / "child")
    assert "steps it can be forked from: [1, 2" in (info.value.hint or "")


def test_cli_rerun_with_another_step_cap(tmp_path: Path) -> None:
    parent = okaflow.run(CASE, out=tmp_path / "parent")
    assert main(["rerun", str(parent.run_dir), "--from", "1", "--max-steps", "1", "--quiet"]) == 0
    child = tmp_path / "parent-from-1"
    state_steps = json.loads((child / "run.json").read_text())["settings"]["max_steps"]
    assert state_steps == 1
    assert (child / "report.html").is_file()
