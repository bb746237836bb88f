"""Tiny seeded diffusers pipelines (real diffusers code on the CPU) and a small MR series case.

``tests/models/build_tiny_pipelines.py`` builds the pipelines with this interpreter, once per builder
version (cached under ``.cache/tiny-pipelines/<builder hash>``).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from okaflow._case import resolve_image_path
from okaflow.tools.generation import DiffusersGenerator

ROOT = Path(__file__).resolve().parents[3]
BUILDER = ROOT / "tests" / "models" / "build_tiny_pipelines.py"
EXAMPLES = ROOT / "examples" / "cases"
# Few steps: the tests check routing, determinism and provenance, not image quality.
STEPS = 2


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``gpu`` run where CUDA exists and are skipped, saying why, where the machine has no GPU
    (before any fixture builds a GPU-sized pipeline).

    The skip is for missing hardware only: on a machine with an NVIDIA GPU whose torch cannot use it (the
    CPU wheel that scripts/bootstrap.sh installs by default), the tests fail and say how to set it up.
    """
    if item.get_closest_marker("gpu") is None:
        return
    import torch

    if torch.cuda.is_available():
        return
    if shutil.which("nvidia-smi") or Path("/dev/nvidiactl").exists():
        pytest.fail(
            f"this machine has an NVIDIA GPU, but torch {torch.__version__} cannot use it: put a CUDA build of "
            "torch into .venv (.venv/bin/pip install torch --index-url https://download.pytorch.org/whl/<cuda>, "
            "or build .venv afresh with OKAFLOW_TORCH set for scripts/bootstrap.sh) and run again"
        )
    pytest.skip("needs a CUDA device: this machine has no NVIDIA GPU (no nvidia-smi, no /dev/nvidiactl)")


@pytest.fixture(scope="session")
def tiny_pipelines(build_once: Callable[[Path, Path, str], dict[str, Path]]) -> dict[str, Path]:
    """Paths of the tiny ``sd``, ``sd-upscaler``, ``instruct-pix2pix`` and ``ddpm`` pipelines."""
    return build_once(BUILDER, Path(sys.executable), "tiny-pipelines")


@pytest.fixture(scope="session")
def generators(tiny_pipelines: dict[str, Path]) -> dict[str, DiffusersGenerator]:
    """One generator per tiny pipeline, loaded once for the session."""
    return {name: DiffusersGenerator(path, steps=STEPS) for name, path in tiny_pipelines.items()}


def mr_series_case(folder: Path, slices: int = 3) -> Path:
    """A case folder: the brain-MRI bundle and a small MR series (``slices`` 64×64 slices of one series)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "brain-mri" / "bundle.json", folder / "bundle.json")
    source = pydicom.dcmread(resolve_image_path("pydicom:MR_small.dcm", EXAMPLES))
    series_uid = generate_uid(entropy_srcs=["okaflow-test-mr-series"])
    names = []
    for index in range(slices):
        ds = source.copy()
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["okaflow-test-mr-series", str(index)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(index * 5)]
        arr = ds.pixel_array.copy()
        arr[index * 8 : index * 8 + 8, :] = arr.max()  # each slice differs
        ds.PixelData = arr.tobytes()
        name = f"mr-{index + 1}.dcm"
        ds.save_as(folder / name)
        names.append(name)
    case = {
        "id": "mr-series",
        "title": "Small MR series for super-resolution",
        "task": "Report this brain MRI series.",
        "workflow": "radiology-report",
        "bundle": "bundle.json",
        "images": [{"path": n, "modality": "MR", "role": "current"} for n in names],
    }
    (folder / "case.json").write_text(json.dumps(case, indent=1), encoding="utf-8")
    return folder
