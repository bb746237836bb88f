"""Real DICOM files from pydicom's bundled test data, and small crafted files for the edge cases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from okaflow._case import resolve_image_path

UID_ROOT = "1.2.826.0.1.3680043.8.498.4242"


def testdata(name: str) -> Path:
    """A pydicom test file shipped in its wheel; a file it does not ship is an error, not a skip."""
    return resolve_image_path(f"pydicom:{name}", Path.cwd())


@pytest.fixture
def dicom_file() -> Callable[[str], Path]:
    return testdata


def make_dataset(
    pixels: np.ndarray[Any, Any] | None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    modality: str = "CT",
    sop_class: str = CTImageStorage,
    uid_suffix: str = "1",
    **elements: Any,
) -> Dataset:
    """A minimal image object; ``elements`` are set as DICOM keywords (``RescaleSlope=2`` ...)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = f"{UID_ROOT}.3.{uid_suffix}"
    ds.StudyInstanceUID = f"{UID_ROOT}.1"
    ds.SeriesInstanceUID = f"{UID_ROOT}.2"
    ds.Modality = modality
    ds.StudyDate = "20240131"
    if pixels is not None:
        bits = bits_stored or (8 if pixels.dtype.itemsize == 1 else 16)
        ds.set_pixel_data(pixels, photometric, bits, generate_instance_uid=False)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def write_dataset(path: Path, ds: Dataset, *, file_format: bool = True) -> Path:
    """Save ``ds``: as a DICOM file (preamble + meta) or, with ``file_format=False``, a bare data set."""
    if file_format:
        ds.save_as(path, enforce_file_format=True, implicit_vr=False, little_endian=True)
    else:
        del ds.file_meta
        ds.save_as(path, implicit_vr=False, little_endian=True)
    return path


@pytest.fixture
def ramp() -> np.ndarray[Any, Any]:
    """A 32×48 signed 16-bit ramp from -1000 to 1000 (rows × columns, non-square on purpose)."""
    return np.linspace(-1000, 1000, 32 * 48).round().astype(np.int16).reshape(32, 48)


@pytest.fixture
def make_ds() -> Callable[..., Dataset]:
    return make_dataset


@pytest.fixture
def write_ds(tmp_path: Path) -> Callable[..., Path]:
    """Write a data set under tmp_path: ``write_ds(ds, "name.dcm", file_format=True)``."""

    def write(ds: Dataset, name: str = "image.dcm", *, file_format: bool = True) -> Path:
        return write_dataset(tmp_path / name, ds, file_format=file_format)

    return write
