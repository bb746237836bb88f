"""The in-memory medical image okaflow works with, whatever file it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from okaflow._constants import UNDERSTANDING_MAX_SIDE, UNDERSTANDING_MIN_SIDE, UNDERSTANDING_MULTIPLE
from okaflow._types import Modality

__all__ = ["ImageFormat", "MedicalImage", "SizePolicy", "Window"]

ImageFormat = Literal["dicom", "png", "jpeg", "tiff"]


@dataclass(frozen=True)
class Window:
    """A display window in the image's output units (HU for CT after the modality LUT)."""

    center: float
    width: float
    name: str | None = None


@dataclass(frozen=True)
class SizePolicy:
    """How an image is resized for a model: aspect kept, long side capped, short side floored,
    both rounded to a multiple. Defaults match UniMedVL's understanding encoder.

    Where the cap and the floor cannot both hold with the aspect kept (very elongated images),
    the cap wins and the short side is padded up to the floor by ``pad_to_min``.
    """

    max_side: int = UNDERSTANDING_MAX_SIDE
    min_side: int = UNDERSTANDING_MIN_SIDE
    multiple: int = UNDERSTANDING_MULTIPLE
    pad_to_min: bool = True


@dataclass
class MedicalImage:
    """One image (possibly multi-frame) ready for rendering and measurement.

    ``pixels`` holds the decoded data in output units: after the DICOM modality LUT (so CT is in HU),
    float32, shape ``(frames, rows, cols)`` for grey or ``(frames, rows, cols, 3)`` for colour (RGB).
    Single-frame images have ``frames == 1``.
    """

    id: str
    source: Path | None
    format: ImageFormat
    modality: Modality
    modality_source: str
    pixels: npt.NDArray[np.float32]
    photometric: str = "MONOCHROME2"
    dicom_modality: str | None = None
    patient_id: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    study_date: str | None = None
    series_description: str | None = None
    study_description: str | None = None
    body_part: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    slice_thickness_mm: float | None = None
    instance_number: int | None = None
    slice_location: float | None = None
    header_windows: tuple[Window, ...] = ()
    voi_lut_applied: bool = False
    units: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def rows(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def columns(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def is_color(self) -> bool:
        return self.pixels.ndim == 4
