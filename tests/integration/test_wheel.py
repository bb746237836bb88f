"""The built wheel contains only okaflow/ and its dist-info: no top-level `tools`, `agents`..."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_wheel_holds_only_the_okaflow_package(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("okaflow-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    stray = [n for n in names if not (n.startswith("okaflow/") or n.split("/")[0].startswith("okaflow-"))]
    assert not stray, stray
    for module in (
        "okaflow/py.typed",
        "okaflow/tools/analysis/_tools.py",
        "okaflow/agents/_graph.py",
        "okaflow/model_backend/_protocol.py",
        "okaflow/workflows/_builtin.py",
        "okaflow/tools/fhir/_models.py",
        # Labels and plots draw with these; without them they fall back to an ASCII-only font.
        "okaflow/tools/reporting/fonts/DejaVuSans.ttf",
        "okaflow/tools/reporting/fonts/DejaVuSans-Bold.ttf",
        "okaflow/tools/reporting/fonts/LICENSE_DEJAVU",
    ):
        assert module in names, module
