"""Shared helpers for integration tests: the example cases and pydicom's bundled files."""

from __future__ import annotations

import warnings
from pathlib import Path

from pydicom.data import get_testdata_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "cases"
EXAMPLE_CASES = ["chest-ct-followup", "brain-mri", "obstetric-ultrasound"]


def pydicom_file(name: str) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = get_testdata_file(name)
    assert found is not None, name
    return Path(str(found))
