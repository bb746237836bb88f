"""CLI exit codes and messages for the paths a user hits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from okaflow._cli import EXIT_CODES, main

from .conftest import EXAMPLES, pydicom_file

pytestmark = pytest.mark.integration
CASE = EXAMPLES / "brain-mri"


def test_missing_case_is_an_input_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope")]) == EXIT_CODES["input"]
    assert "no such file or folder" in capsys.readouterr().err


def test_malformed_case_json_names_file_and_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = tmp_path / "case"
    shutil.copytree(CASE, case)
    manifest = json.loads((case / "case.json").read_text())
    manifest["images"][0]["role"] = "latest"
    (case / "case.json").write_text(json.dumps(manifest))
    assert main(["inspect", str(case)]) == EXIT_CODES["input"]
    err = capsys.readouterr().err
    assert "case.json" in err and "images[0].role" in err


def test_broken_json_names_line_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = tmp_path / "case"
    shutil.copytree(CASE, case)
    (case / "case.json").write_text('{"id": "x",\n "images": [}')
    assert main(["inspect", str(case)]) == EXIT_CODES["input"]
    assert "line 2" in capsys.readouterr().err


def test_truncated_dicom_in_a_case_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = tmp_path / "case"
    case.mkdir()
    shutil.copy(CASE / json.loads((CASE / "case.json").read_text())["bundle"], case / "bundle.json")
    shutil.copy(pydicom_file("MR_truncated.dcm"), case / "scan.dcm")
    assert main(["run", str(case), "--out", str(tmp_path / "run"), "--quiet"]) == EXIT_CODES["input"]
    assert "scan.dcm" in capsys.readouterr().err


def test_unknown_workflow_is_a_configuration_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(CASE), "--workflow", "nope", "--out", str(tmp_path / "r"), "--quiet"])
    assert code == EXIT_CODES["config"]
    assert "radiology-report" in capsys.readouterr().err


def test_run_refuses_to_overwrite_a_run_without_force(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert main(["run", str(CASE), "--out", str(out), "--quiet"]) == 0
    assert main(["run", str(CASE), "--out", str(out), "--quiet"]) == EXIT_CODES["error"]
    assert main(["run", str(CASE), "--out", str(out), "--quiet", "--force"]) == 0


def test_publish_waits_for_approval_then_publishes(tmp_path: Path) -> None:
    out, pub = tmp_path / "run", tmp_path / "pub"
    code = main(["run", str(CASE), "--out", str(out), "--publish-dir", str(pub), "--quiet"])
    assert code == EXIT_CODES["awaiting_approval"]
    assert (out / "report.html").exists() and not pub.exists()
    assert main(["approve", str(out), str(CASE), "--yes", "--by", "dr synthetic", "--publish-dir", str(pub)]) == 0
    assert (pub / "run" / "report.html").exists()
    assert main(["approve", str(out), str(CASE), "--yes", "--publish-dir", str(pub)]) == EXIT_CODES["error"]


def test_unattended_publish_with_yes(tmp_path: Path) -> None:
    out, pub = tmp_path / "run", tmp_path / "pub"
    assert main(["run", str(CASE), "--out", str(out), "--publish-dir", str(pub), "--yes", "--quiet"]) == 0
    assert (pub / "run" / "report.md").exists()


def test_workflows_lists_the_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workflows"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in ("radiology-report", "clinical-vqa", "longitudinal-comparison"))


def test_lenient_skips_an_invalid_entry_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = tmp_path / "case"
    shutil.copytree(CASE, case)
    bundle_path = case / json.loads((case / "case.json").read_text())["bundle"]
    bundle = json.loads(bundle_path.read_text())
    bundle["entry"][2]["resource"]["status"] = "bogus"
    bundle_path.write_text(json.dumps(bundle))
    assert main(["inspect", str(case)]) == EXIT_CODES["input"]
    assert "entry[2].resource.status" in capsys.readouterr().err
    assert main(["inspect", str(case), "--lenient", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert any(w.startswith("skipped entry[2]") for w in summary["warnings"])
    assert main(["run", str(case), "--lenient", "--out", str(tmp_path / "run"), "--quiet"]) == 0


def test_openai_backend_without_a_url_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OKAFLOW_MODEL_URL", raising=False)
    code = main(["run", str(CASE), "--backend", "openai", "--model", "m", "--out", str(tmp_path / "r"), "--quiet"])
    assert code == EXIT_CODES["config"]
    assert "OKAFLOW_MODEL_URL" in capsys.readouterr().err


def test_unreachable_model_server_is_a_backend_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    argv = [
        "run",
        str(CASE),
        "--backend",
        "openai",
        "--model-url",
        "http://127.0.0.1:9/v1",
        "--model",
        "unimedvl",
        "--out",
        str(tmp_path / "r"),
        "--quiet",
    ]
    assert main(argv) == EXIT_CODES["backend"]
    err = capsys.readouterr().err
    assert "127.0.0.1:9" in err


def test_model_flags_need_the_openai_backend(tmp_path: Path) -> None:
    assert main(["run", str(CASE), "--model", "x", "--out", str(tmp_path / "r"), "--quiet"]) == EXIT_CODES["usage"]


def test_approve_refuses_a_different_destination(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(["run", str(CASE), "--out", str(out), "--publish-dir", str(tmp_path / "pub"), "--quiet"])
    assert code == EXIT_CODES["awaiting_approval"]
    assert (
        main(["approve", str(out), str(CASE), "--yes", "--publish-dir", str(tmp_path / "other")])
        == EXIT_CODES["config"]
    )
    assert "same --publish-dir" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_model_serve_and_check_fail_with_actionable_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["model", "serve", str(tmp_path / "no-model"), "--port", "0"]) == 6
    assert "does not exist" in capsys.readouterr().err
    # okaflow's options count after the model folder too; only what follows -- goes to vLLM.
    assert main(["model", "serve", str(tmp_path), "--cpus", "0-x", "--", "--swap-space", "8"]) == 6
    assert "like 0-3,8" in capsys.readouterr().err
    assert main(["model", "serve", str(tmp_path), "--cpus", "0,8-3"]) == 6  # refused, not read as CPU 0 alone
    assert "like 0-3,8" in capsys.readouterr().err
    assert main(["model", "serve", str(tmp_path), "--cpus", "3-"]) == 6  # refused, not read as CPU 3
    assert "like 0-3,8" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", str(tmp_path), "--", "--swap-space", "8"])
    assert "only `okaflow model serve`" in capsys.readouterr().err
    # Nothing listens on a fresh port: a backend (connection) error, naming the URL.
    from okaflow.model_backend import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    assert main(["model", "check", "--model-url", url, "--model", "m"]) == 4
    assert url.removesuffix("/v1") in capsys.readouterr().err


def test_generation_flags_are_checked_before_a_model_is_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The model folder does not exist: loading it first would fail with another error (and take long).
    args = ["run", str(CASE), "--out", str(tmp_path / "run"), "--backend", "transformers", "--model", str(tmp_path)]
    assert main([*args, "--generator", "diffusers"]) == EXIT_CODES["usage"]
    assert "--generator diffusers needs --generation-model" in capsys.readouterr().err
    assert main([*args, "--generator", "painter"]) == EXIT_CODES["usage"]
    assert "unknown --generator 'painter'" in capsys.readouterr().err
    for kind in ("none", "my_pkg.gen:make"):  # the flags would be ignored: refused instead
        assert main([*args, "--generator", kind, "--generation-steps", "4"]) == EXIT_CODES["usage"]
        assert "need --generator diffusers|endpoint" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
