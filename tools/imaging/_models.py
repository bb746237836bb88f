"""The in-memory medical image okaflow works with, whatever file it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from okaflow._constants import UNDERSTANDING_MAX_SIDE, UNDERSTANDING_MIN_SIDE, UNDERSTANDING_MULTIPLE
from okaflow._types import Modality

__all__ = ["ImageFormat", "MedicalImage", "SizePolicy", "VoiFunction", "VoiLut", "Window"]

ImageFormat = Literal["dicom", "png", "jpeg", "tiff"]

# DICOM (0028,1056) VOI LUT Function values; LINEAR is the default when the tag is absent.
VoiFunction = Literal["LINEAR", "LINEAR_EXACT", "SIGMOID"]


@dataclass(frozen=True)
class Window:
    """A display window in the image's output units (HU for CT after the modality LUT).

    ``function`` follows DICOM PS3.3 C.11.2.1.2: ``LINEAR`` (the DICOM default, which maps
    ``center - 0.5 ± (width - 1) / 2``), ``LINEAR_EXACT`` (``center ± width / 2``) or ``SIGMOID``.
    """

    center: float
    width: float
    name: str | None = None
    function: VoiFunction = "LINEAR"

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ValueError(f"a window width must be > 0, got {self.width}")

    @property
    def lower(self) -> float:
        """The value rendered black (before any MONOCHROME1 inversion)."""
        return self.center - self.width / 2

    @property
    def upper(self) -> float:
        """The value rendered white (before any MONOCHROME1 inversion)."""
        return self.center + self.width / 2

    def describe(self) -> str:
        """One line for captions and evidence, e.g. ``lung (C -600, W 1500)``."""
        numbers = f"C {self.center:g}, W {self.width:g}"
        return f"{self.name} ({numbers})" if self.name else numbers


@dataclass(frozen=True, eq=False)
class VoiLut:
    """One item of a DICOM (0028,3010) VOI LUT Sequence, kept to be applied at render time.

    Input values (output units of the modality LUT) below ``first_mapped`` take the first entry,
    values past the table take the last entry (PS3.3 C.11.2.1.1).
    """

    first_mapped: int
    data: npt.NDArray[np.uint16]
    bits: int
    explanation: str | None = None

    def describe(self) -> str:
        """One line for captions and evidence."""
        label = self.explanation or "VOI LUT"
        return f"{label} ({self.data.size} entries from {self.first_mapped})"


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

    def __post_init__(self) -> None:
        if self.multiple < 1 or self.min_side < 1:
            raise ValueError("SizePolicy needs multiple >= 1 and min_side >= 1")
        if self.floor_side > self.cap_side:
            raise ValueError(
                f"SizePolicy(max_side={self.max_side}, min_side={self.min_side}, multiple={self.multiple}) "
                "admits no size: the floor rounded up to the multiple exceeds the cap rounded down"
            )

    @property
    def cap_side(self) -> int:
        """The largest allowed side: ``max_side`` rounded down to the multiple."""
        return self.max_side // self.multiple * self.multiple

    @property
    def floor_side(self) -> int:
        """The smallest allowed side: ``min_side`` rounded up to the multiple."""
        return -(-self.min_side // self.multiple) * self.multiple


@dataclass
class MedicalImage:
    """One image (possibly multi-frame) ready for rendering and measurement.

    ``pixels`` holds the decoded data in output units: after the DICOM modality LUT (so CT is in HU),
    float32, shape ``(frames, rows, cols)`` for grey or ``(frames, rows, cols, 3)`` for colour (RGB).
    Single-frame images have ``frames == 1``.

    ``photometric`` describes ``pixels`` (``MONOCHROME1``, ``MONOCHROME2`` or ``RGB``): YBR and
    PALETTE COLOR data are converted to RGB on load, MONOCHROME1 stays as stored and is inverted only
    at render time. Header windows and VOI LUTs are kept, never applied to ``pixels``, so
    ``voi_lut_applied`` is False for every image okaflow loads (it is True only for pixels a caller
    built that already went through a VOI LUT). Dates are ISO ``YYYY-MM-DD``.
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
    # Added with the loaders; all optional so hand-built images stay valid.
    voi_luts: tuple[VoiLut, ...] = ()
    series_date: str | None = None
    series_number: int | None = None
    bits_stored: int | None = None
    transfer_syntax: str | None = None

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

    @property
    def physical_size_mm(self) -> tuple[float, float] | None:
        """(width, height) in mm from the pixel spacing, or None where the spacing is unknown.

        ``pixel_spacing_mm`` is DICOM order: (row spacing = vertical, column spacing = horizontal).
        """
        if self.pixel_spacing_mm is None:
            return None
        row_mm, col_mm = self.pixel_spacing_mm
        return (self.columns * col_mm, self.rows * row_mm)
