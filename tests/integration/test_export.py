"""Case bundles: export a run with its inputs, import it elsewhere, replay it byte for byte."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

import okaflow
from okaflow import InputError, ReplayInputsChangedError
from okaflow._cli import main

from .conftest import EXAMPLES

pytestmark = pytest.mark.integration


def test_an_exported_run_replays_identically_after_import_into_another_folder(tmp_path: Path) -> None:
    case = shutil.copytree(EXAMPLES / "chest-ct-followup", tmp_path / "here" / "case")
    original = okaflow.run(case, out=tmp_path / "here" / "run")
    bundle = okaflow.export_run(original.run_dir, tmp_path / "case.zip")
    shutil.rmtree(tmp_path / "here")  # nothing of the original machine's folders is left

    with zipfile.ZipFile(bundle) as zf:
        names = zf.namelist()
    assert {
        "okaflow-export.json",
        "run/run.json",
        "run/model_calls.jsonl",
        "case/case.json",
        "case/bundle.json",
    } <= set(names)
    assert not [n for n in names if n.endswith(("-wal", "-shm"))]
    imported = okaflow.import_run(bundle, tmp_path / "there")
    replayed = okaflow.replay(imported, out=tmp_path / "there" / "replay")
    assert replayed.identical, replayed.differing


def test_an_edited_import_is_refused_by_replay(tmp_path: Path) -> None:
    original = okaflow.run(EXAMPLES / "brain-mri", out=tmp_path / "run")
    bundle = okaflow.export_run(original.run_dir, tmp_path / "case.zip")
    imported = okaflow.import_run(bundle, tmp_path / "there")
    case_json = tmp_path / "there" / "case" / "case.json"
    case_json.write_text(case_json.read_text().replace("headache", "migraine"))
    with pytest.raises(ReplayInputsChangedError, match=r"changed: case\.json"):
        okaflow.replay(imported)


def test_import_refuses_entries_outside_the_target(tmp_path: Path) -> None:
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("okaflow-export.json", '{"format": 1}')
        zf.writestr("run/../../escaped.txt", "x")
    with pytest.raises(InputError, match="outside"):
        okaflow.import_run(evil, tmp_path / "to")
    assert not (tmp_path / "escaped.txt").exists()
    with pytest.raises(InputError, match="not a zip"):
        okaflow.import_run(tmp_path / "evil.zip.missing", tmp_path / "to2")


def test_cli_export_import(tmp_path: Path) -> None:
    original = okaflow.run(EXAMPLES / "obstetric-ultrasound", out=tmp_path / "run")
    assert main(["export", str(original.run_dir), "--out", str(tmp_path / "c.zip")]) == 0
    assert main(["import", str(tmp_path / "c.zip"), "--to", str(tmp_path / "there")]) == 0
    assert main(["replay", str(tmp_path / "there" / "run"), "--json"]) == 0
