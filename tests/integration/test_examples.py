"""Every example case runs end to end through the CLI on the embedded defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from okaflow import Report
from okaflow._cli import main

from .conftest import EXAMPLE_CASES, EXAMPLES

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", EXAMPLE_CASES)
def test_example_produces_an_honest_interleaved_report(name: str, tmp_path: Path) -> None:
    out = tmp_path / name
    assert main(["run", str(EXAMPLES / name), "--out", str(out), "--quiet"]) == 0
    report = Report.model_validate_json((out / "report.json").read_text(encoding="utf-8"))
    manifest = json.loads((EXAMPLES / name / "case.json").read_text(encoding="utf-8"))
    assert report.model_configured is False and report.backend == "evidence-only"
    images = [b for b in report.blocks if b.type == "image"]
    assert len(images) == len(manifest["images"])
    if manifest["workflow"] != "clinical-vqa":  # the report workflows propose derived images; VQA does not
        assert any(b.type == "generated_image" for b in report.blocks)
    texts = [b for b in report.blocks if b.type == "text" and b.author == "evidence-only"]
    assert texts, "the analyst wrote no claims"
    assert all(not b.flags for b in texts), [(b.text, b.flags) for b in texts if b.flags]
    assert all(b.cites for b in texts)
    cited = set(report.cited_ids())
    assert {e.id for e in report.evidence} == cited & {e.id for e in report.evidence}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") >= len(images)
    assert "No model" in html
    for block in report.blocks:
        if block.type in {"image", "generated_image", "figure"}:
            assert (out / block.image.path).is_file()


def test_chest_ct_has_lab_trends_derived_images_and_a_comparison_with_the_prior_report(tmp_path: Path) -> None:
    out = tmp_path / "ct"
    assert main(["run", str(EXAMPLES / "chest-ct-followup"), "--out", str(out), "--quiet"]) == 0
    report = Report.model_validate_json((out / "report.json").read_text(encoding="utf-8"))
    assert len([b for b in report.blocks if b.type == "figure"]) >= 3
    tasks = [b.task for b in report.blocks if b.type == "generated_image"]
    assert tasks.count("window") == 3 and "super_resolution" in tasks
    comparison = [b for b in report.blocks if b.type == "text" and b.section == "comparison"]
    assert any("DiagnosticReport/dr-cxr-admission" in b.cites for b in comparison)
    # Interleaving: the derived images sit right after the CT they come from.
    kinds = [b.type for b in report.blocks]
    first = kinds.index("image")
    assert kinds[first + 1 : first + 5] == ["generated_image"] * 4


@pytest.mark.parametrize("name", EXAMPLE_CASES)
def test_inspect_reports_what_was_ingested(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(EXAMPLES / name), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] and summary["counts"]["evidence_rows"] > len(summary["images"])
    assert not [w for w in summary["warnings"] if "matches no identifier" in w]


def test_clinical_question_is_answered_from_the_record_only(tmp_path: Path) -> None:
    out = tmp_path / "vqa"
    question = "What is known about her headaches?"
    code = main(
        [
            "run",
            str(EXAMPLES / "brain-mri"),
            "--workflow",
            "clinical-vqa",
            "--task",
            question,
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    report = Report.model_validate_json((out / "report.json").read_text(encoding="utf-8"))
    answers = [b for b in report.blocks if b.type == "text" and b.section == "answer"]
    assert answers and all(not b.flags for b in answers)
    assert "Condition/cond-ndph" in {c for b in answers for c in b.cites}  # "headaches" meets "headache"
