"""Record and replay: every example case replays to a byte-identical report; changed inputs are refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import okaflow
from okaflow import ReplayInputsChangedError, ReplayMismatchError
from okaflow._cli import EXIT_CODES, main
from okaflow.agents import _nodes

from .conftest import EXAMPLE_CASES, EXAMPLES

pytestmark = pytest.mark.integration


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("name", EXAMPLE_CASES)
def test_every_example_case_replays_to_a_byte_identical_report(name: str, tmp_path: Path) -> None:
    original = okaflow.run(EXAMPLES / name, out=tmp_path / "run")
    calls = lines(original.run_dir / "model_calls.jsonl")
    assert len(calls) == len(original.state["analyses"])  # one recorded call per analyze step
    assert calls[0]["result"]["provenance"]["prompt_hash"] == calls[0]["prompt_hash"]
    replayed = okaflow.replay(original.run_dir, out=tmp_path / "replay")
    assert replayed.identical, replayed.differing
    assert replayed.unused_model_calls == 0
    for report in ("report.json", "report.md", "report.html"):
        assert (tmp_path / "replay" / report).read_bytes() == (tmp_path / "run" / report).read_bytes()
    # The replay is a run record of its own, so it replays too.
    assert okaflow.replay(tmp_path / "replay", out=tmp_path / "replay-2").identical


def test_generated_images_are_replayed_from_the_record(tmp_path: Path) -> None:
    original = okaflow.run(EXAMPLES / "chest-ct-followup", out=tmp_path / "run")
    generated = lines(original.run_dir / "generation_calls.jsonl")
    assert generated, "the chest CT case asks for derived images"
    assert all(call["images"] for call in generated if not call["result"]["unavailable"])
    replayed = okaflow.replay(original.run_dir, out=tmp_path / "replay")
    assert replayed.identical
    # Timings in the report are the recorded ones, not a re-measurement.
    assert lines(replayed.run.run_dir / "generation_calls.jsonl") == generated


def test_a_changed_case_file_is_named_and_nothing_is_replayed(tmp_path: Path) -> None:
    case = shutil.copytree(EXAMPLES / "brain-mri", tmp_path / "case")
    original = okaflow.run(case, out=tmp_path / "run")
    bundle = case / "bundle.json"
    bundle.write_text(bundle.read_text().replace('"status": "final"', '"status": "amended"', 1))
    with pytest.raises(ReplayInputsChangedError) as info:
        okaflow.replay(original.run_dir, out=tmp_path / "replay")
    (change,) = info.value.changes
    assert change.startswith("changed: bundle.json")
    assert not (tmp_path / "replay").exists()
    assert main(["replay", str(original.run_dir), "--out", str(tmp_path / "cli")]) == EXIT_CODES["replay_refused"]


def test_another_okaflow_version_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = okaflow.run(EXAMPLES / "brain-mri", out=tmp_path / "run")
    monkeypatch.setattr("okaflow._record.__version__", "9.9.9")
    with pytest.raises(ReplayInputsChangedError, match=r"okaflow 9\.9\.9 instead of the recorded"):
        okaflow.replay(original.run_dir, out=tmp_path / "replay")


def test_a_run_that_diverges_from_the_record_says_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = okaflow.run(EXAMPLES / "obstetric-ultrasound", out=tmp_path / "run")
    changed_prompts = _nodes.analysis_messages

    def reworded(*args: object, **kwargs: object) -> list[object]:
        messages = changed_prompts(*args, **kwargs)  # type: ignore[arg-type]
        last = messages[-1]
        return [*messages[:-1], last.model_copy(update={"content": last.content + " Be brief."})]

    monkeypatch.setattr(_nodes, "analysis_messages", reworded)
    with pytest.raises(ReplayMismatchError) as info:
        okaflow.replay(original.run_dir, out=tmp_path / "replay")
    assert any("differs" in d and "Be brief." in d for d in info.value.differences)


def test_cli_replays_and_reports_identical(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    original = okaflow.run(EXAMPLES / "brain-mri", out=tmp_path / "run")
    capsys.readouterr()
    assert main(["replay", str(original.run_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["identical"] is True
    assert result["replay_dir"] == str(tmp_path / "run-replay")
    # A replayed report that differs is exit code 7, with the files named.
    (tmp_path / "run" / "report.md").write_text("tampered")
    assert main(["replay", str(original.run_dir), "--force"]) == EXIT_CODES["differs"]
    assert "report.md" in capsys.readouterr().err
