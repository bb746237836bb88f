"""The OKA agent with a diffusers generator: a small MR series super-resolved, interleaved in the report,
scored against a reference, replayed byte for byte without the pipeline, and the same from the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import okaflow
from okaflow._cli import main
from okaflow._constants import SYNTHETIC_LABEL
from okaflow.tools.generation import ClassicalGenerator, DiffusersGenerator, GeneratorChain, _pipelines
from okaflow.tools.reporting import label_layout
from okaflow.workflows import RADIOLOGY_REPORT

from .conftest import STEPS, mr_series_case

pytestmark = pytest.mark.integration


def blocks(run_dir: Path) -> list[dict[str, Any]]:
    return list(json.loads((run_dir / "report.json").read_text())["blocks"])


def test_the_agent_super_resolves_a_small_mr_series_and_replays_it_without_the_pipeline(
    generators: dict[str, DiffusersGenerator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = mr_series_case(tmp_path / "case")
    chain = GeneratorChain(generators["sd-upscaler"], ClassicalGenerator())
    result = okaflow.run(case, generator=chain, out=tmp_path / "run")
    (made,) = result.state["generated"]
    key = made["derived_from"][0]
    loaded = okaflow.Case.load(case)
    assert key == loaded.current_images[0].id and loaded.series_size(key) == 3, "the series' middle slice"
    assert (made["task"], made["ai_generated"], made["label"]) == ("super_resolution", True, SYNTHETIC_LABEL)
    prov = made["provenance"]
    assert (prov["backend"], prov["model_id"], prov["seed"], prov["is_model"]) == ("diffusers", "sd-upscaler", 0, True)
    assert made["params"]["pipeline"] == "StableDiffusionUpscalePipeline" and made["params"]["steps"] == STEPS
    assert (made["artifact"]["width"], made["artifact"]["height"]) == label_layout((256, 256)).canvas

    # Interleaved: the series' key image, then at once the image generated from it.
    report = blocks(result.run_dir)
    at = next(i for i, b in enumerate(report) if b["type"] == "image" and b["evidence_id"] == key)
    generated = report[at + 1]
    assert generated["type"] == "generated_image" and generated["derived_from"] == [key]
    assert generated["label"] == SYNTHETIC_LABEL and generated["provenance"]["model_id"] == "sd-upscaler"
    assert "generated detail, not measured" in generated["caption"]
    html = (result.run_dir / "report.html").read_text()
    assert SYNTHETIC_LABEL in html and "sd-upscaler" in html
    manifest = json.loads((result.run_dir / "run.json").read_text())
    assert manifest["settings"]["generator"]["name"] == "diffusers+classical"
    assert manifest["settings"]["generator"]["model_id"] == "sd-upscaler"

    # A rerun names no generator: the recorded pipeline is loaded again from its folder and does the work.
    rerun = okaflow.rerun(result.run_dir, out=tmp_path / "rerun")
    (again,) = rerun.state["generated"]
    assert again["provenance"]["model_id"] == "sd-upscaler" and again["artifact"] == made["artifact"]
    spec = manifest["settings"]["generator"]["rebuild"]
    assert spec["kind"] == "chain" and spec["generators"][0]["pipeline"] == str(
        generators["sd-upscaler"].path.resolve()
    )

    def no_pipeline(*args: object, **kwargs: object) -> None:
        raise AssertionError("a replay must not run the pipeline")

    monkeypatch.setattr(_pipelines, "run_batched", no_pipeline)
    replayed = okaflow.replay(result.run_dir, out=tmp_path / "replay")
    assert replayed.identical, replayed.differing
    for name in ("report.json", "report.md", "report.html"):
        assert (tmp_path / "replay" / name).read_bytes() == (result.run_dir / name).read_bytes()


def _translation_visuals(case: okaflow.Case) -> list[dict[str, Any]]:
    last = case.images[-1]
    return [
        {
            "task": "modality_translation",
            "image_ids": [case.current_images[0].id],
            "params": {"source_domain": "T2", "target": "FLAIR", "reference": last.id, "prompt": "FLAIR MRI slice"},
            "reason": "FLAIR view of the T2 slice, scored against the last slice",
        }
    ]


def test_a_generative_visual_request_reaches_the_pipeline_and_its_scores_reach_the_report(
    generators: dict[str, DiffusersGenerator], tmp_path: Path
) -> None:
    case = mr_series_case(tmp_path / "case")
    workflow = replace(RADIOLOGY_REPORT, name="mr-flair", visuals=_translation_visuals)
    chain = GeneratorChain(generators["sd"], ClassicalGenerator())
    result = okaflow.run(case, workflow=workflow, generator=chain, out=tmp_path / "run")
    (made,) = result.state["generated"]
    params = made["params"]
    assert params["pipeline"] == "StableDiffusionImg2ImgPipeline" and params["prompt"] == "FLAIR MRI slice"
    (score,) = params["metrics"]
    assert score["data_range"] == 255.0 and 0 < score["psnr_db"] < 60 and -1 <= score["ssim"] <= 1
    row = next(r for r in json.loads((result.run_dir / "evidence.json").read_text()) if r["id"] == made["evidence_id"])
    assert row["data"]["metrics"] == score
    assert (
        f"PSNR {score['psnr_db']:.2f} dB"
        in next(b for b in blocks(result.run_dir) if b["type"] == "generated_image")["caption"]
    )


def test_the_cli_picks_the_diffusers_generator(tiny_pipelines: dict[str, Path], tmp_path: Path) -> None:
    case = mr_series_case(tmp_path / "case")
    args = ["run", str(case), "--out", str(tmp_path / "run"), "--quiet", "--generator", "diffusers"]
    assert main([*args[:-2], "--generation-model", str(tiny_pipelines["sd-upscaler"])]) == 2  # needs --generator
    assert main([*args, "--device", "cpu", "--generation-steps", str(STEPS)]) == 2  # needs --generation-model
    code = main([*args, "--generation-model", str(tiny_pipelines["sd-upscaler"]), "--generation-steps", str(STEPS)])
    assert code == 0
    calls = [json.loads(line) for line in (tmp_path / "run" / "generation_calls.jsonl").read_text().splitlines()]
    assert [c["result"]["backend"] for c in calls] == ["diffusers"]
    assert calls[0]["result"]["params_used"]["device"] == "cpu"
    base = ["run", str(case), "--quiet"]
    assert main([*base, "--out", str(tmp_path / "e"), "--generator", "endpoint", "--generation-steps", "2"]) == 2
    assert main([*base, "--out", str(tmp_path / "p"), "--generator", "paint"]) == 2
    assert main([*base, "--out", str(tmp_path / "none"), "--generator", "none"]) == 0
    assert not (tmp_path / "none" / "generation_calls.jsonl").exists()
