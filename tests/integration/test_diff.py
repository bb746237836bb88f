"""okaflow diff: a run and its replay are identical; runs with another backend differ step by step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import okaflow
from okaflow._cli import EXIT_CODES, main
from okaflow._types import Provenance
from okaflow.model_backend import UnderstandRequest, UnderstandResult, prompt_hash

from .conftest import EXAMPLES

pytestmark = pytest.mark.integration
CASE = EXAMPLES / "chest-ct-followup"


class OneClaim:
    """A model that answers every step with one claim about the first creatinine result it is shown."""

    name, model_id, is_model = "one-claim", "one-claim-1", True

    def understand(self, request: UnderstandRequest) -> UnderstandResult:
        first = next(e for e in request.evidence if e.kind == "observation")
        claim = {"section": "findings", "kind": "fact", "text": first.summary, "cites": [first.id]}
        text = json.dumps({"claims": [claim], "tool_calls": [], "visual_requests": [], "done": True})
        return UnderstandResult(
            text=text,
            provenance=Provenance(backend=self.name, model_id=self.model_id, prompt_hash=prompt_hash(request)),
        )

    async def aunderstand(self, request: UnderstandRequest) -> UnderstandResult:
        return self.understand(request)


def test_a_run_and_its_replay_do_not_differ(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = okaflow.run(CASE, out=tmp_path / "a")
    okaflow.replay(run.run_dir, out=tmp_path / "b")
    result = okaflow.diff_runs(tmp_path / "a", tmp_path / "b")
    assert result.identical, result.to_text()
    assert main(["diff", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "identical" in capsys.readouterr().out


def test_another_backend_differs_in_setup_steps_citations_and_text(tmp_path: Path) -> None:
    okaflow.run(CASE, out=tmp_path / "a")
    okaflow.run(CASE, out=tmp_path / "b", backend=OneClaim(), max_steps=2)
    result = okaflow.diff_runs(tmp_path / "a", tmp_path / "b")
    assert not result.identical
    assert any(line.startswith("backend name: 'evidence-only' → 'one-claim'") for line in result.setup)
    assert "setting max_steps: 6 → 2" in result.setup
    first = result.steps[0]
    assert first.model_b == "one-claim-1"
    assert len(first.claims_only_b) == 1
    assert first.tools_a and not first.tools_b  # the evidence-only analyst calls tools first
    assert any(s.claims_only_a and s.model_b is None for s in result.steps[1:])  # b stopped after step 1
    assert result.citations_only_a  # a cites more of the record than b's single claim
    assert any(line.startswith("+") for line in result.report_diff)
    text = result.to_text()
    assert "step 1" in text and "  + [findings]" in text
    page = tmp_path / "diff.html"
    assert main(["diff", str(tmp_path / "a"), str(tmp_path / "b"), "--html", str(page)]) == EXIT_CODES["differs"]
    assert '<table class="diff"' in page.read_text()


def test_diff_refuses_what_is_not_a_run(tmp_path: Path) -> None:
    okaflow.run(CASE, out=tmp_path / "a")
    with pytest.raises(okaflow.RunDirectoryError, match="not an okaflow run directory"):
        okaflow.diff_runs(tmp_path / "a", tmp_path)
