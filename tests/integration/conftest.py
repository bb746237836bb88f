"""Shared helpers for integration tests: the example cases, pydicom's bundled files, tiny-model builds."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from okaflow._case import resolve_image_path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "cases"
EXAMPLE_CASES = ["chest-ct-followup", "brain-mri", "obstetric-ultrasound"]


def pydicom_file(name: str) -> Path:
    """A pydicom test file shipped in its wheel (CaseError if it does not ship one)."""
    return resolve_image_path(f"pydicom:{name}", Path.cwd())


@pytest.fixture(scope="session")
def build_once() -> Callable[[Path, Path, str], dict[str, Path]]:
    """``build_once(builder, python, kind)``: see :func:`build_tiny`."""
    return build_tiny


def build_tiny(builder: Path, python: Path, kind: str) -> dict[str, Path]:
    """Run a tiny-model builder script (``builder OUT`` prints ``{name: path}`` JSON last) with ``python``,
    once per builder version: the result is cached in ``.cache/<kind>/<builder hash>``."""
    digest = hashlib.sha256(builder.read_bytes()).hexdigest()[:12]
    out = ROOT / ".cache" / kind / digest
    done = out / "built.json"
    if not done.exists():
        shutil.rmtree(out, ignore_errors=True)  # what an interrupted build left
        proc = subprocess.run(
            [str(python), str(builder), str(out)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(f"building the {kind} failed:\n{proc.stderr[-3000:]}")
        done.write_text(proc.stdout.strip().splitlines()[-1], encoding="utf-8")
    return {name: Path(path) for name, path in json.loads(done.read_text(encoding="utf-8")).items()}
