"""Shared helpers for integration tests: the example cases and pydicom's bundled files."""

from __future__ import annotations

from pathlib import Path

from okaflow._case import resolve_image_path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "cases"
EXAMPLE_CASES = ["chest-ct-followup", "brain-mri", "obstetric-ultrasound"]


def pydicom_file(name: str) -> Path:
    """A pydicom test file shipped in its wheel (CaseError if it does not ship one)."""
    return resolve_image_path(f"pydicom:{name}", Path.cwd())
