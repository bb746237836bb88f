"""The package's shape: one namespace, a light import, a sorted public surface, clear extras errors."""

from __future__ import annotations

import subprocess
import sys

import okaflow

FOLDERS = ("sdk", "agents", "tools", "model_backend", "workflows")


def test_public_surface_is_sorted_and_resolves() -> None:
    assert okaflow.__all__ == sorted(okaflow.__all__)
    for name in okaflow.__all__:
        assert getattr(okaflow, name) is not None, name


def test_import_okaflow_stays_light() -> None:
    code = (
        "import sys, okaflow; heavy = [m for m in ('langgraph', 'matplotlib', 'pydicom', 'torch', 'transformers',"
        " 'diffusers', 'vllm', 'fhir', 'PIL') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import okaflow pulled in: {out.stdout}"


def test_no_folder_name_is_importable_as_a_second_module() -> None:
    import okaflow.agents
    import okaflow.model_backend
    import okaflow.tools.analysis
    import okaflow.workflows  # noqa: F401

    assert not [f for f in FOLDERS if f in sys.modules]


def test_missing_extra_error_names_the_install_line() -> None:
    err = okaflow.MissingExtraError("codecs", feature="JPEG 2000 decoding", missing="pylibjpeg-openjpeg")
    assert "pip install 'okaflow[codecs]'" in str(err)
    assert isinstance(err, okaflow.ConfigurationError)
