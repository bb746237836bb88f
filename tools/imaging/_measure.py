"""Honest, measurable image properties: size, physical extent, intensity statistics, HU bands.

Nothing here is a finding. HU bands are conventional attenuation ranges, not a segmentation:
"12 % of pixels are between -190 and -30 HU" is a measurement; "12 % fat" would be a claim.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from okaflow.tools.imaging._models import MedicalImage
from okaflow.tools.imaging._render import frame_index

__all__ = ["HU_BANDS", "MEASURED_PERCENTILES", "ImageMeasurements", "measure_image"]

# (name, lower bound inclusive, upper bound exclusive, label); pixels in no band count as "other".
HU_BANDS: tuple[tuple[str, float, float, str], ...] = (
    ("air", -np.inf, -900.0, "< -900 HU"),
    ("fat", -190.0, -30.0, "-190 to -30 HU"),
    ("soft_tissue", -30.0, 100.0, "-30 to 100 HU"),
    ("bone", 300.0, np.inf, "≥ 300 HU"),
)
MEASURED_PERCENTILES = (5, 25, 50, 75, 95)
# ITU-R BT.601 luma weights: colour images are measured on brightness.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class ImageMeasurements:
    """What :func:`measure_image` measured, in the image's output units (``units``; HU for CT).

    ``pixel_spacing_mm`` is DICOM order (row spacing, column spacing); ``width_mm``/``height_mm``
    are the field of view it implies. ``hu_bands`` maps each :data:`HU_BANDS` name (plus ``other``)
    to the fraction of measured pixels in that range, for images in HU only. Pixels equal to the
    DICOM PixelPaddingValue (outside the scanned field) are not measured: ``padding_pixels``.
    """

    image_id: str
    frame: int | None
    frames: int
    frames_measured: int
    rows: int
    columns: int
    pixel_spacing_mm: tuple[float, float] | None
    width_mm: float | None
    height_mm: float | None
    units: str | None
    channel: str
    pixel_count: int
    padding_pixels: int
    min: float
    max: float
    mean: float
    std: float
    percentiles: dict[str, float] = field(default_factory=dict)
    hu_bands: dict[str, float] | None = None


def measure_image(image: MedicalImage, *, frame: int | None = None) -> ImageMeasurements:
    """Measure one frame, or all frames together when ``frame`` is None.

    Colour images are measured on their BT.601 luma (``channel="luma"``), grey images on their
    values (``channel="value"``).

    Raises:
        IndexError: ``frame`` is out of range.
        ValueError: every pixel is padding, so there is nothing to measure.
    """
    if frame is None:
        values: npt.NDArray[np.float32] = image.pixels
        measured_frames = image.frames
    else:
        values = image.pixels[frame_index(image, frame)]
        measured_frames = 1
    channel = "value"
    if image.is_color:
        values = values @ _LUMA
        channel = "luma"
    flat = values.reshape(-1)
    padding = image.metadata.get("pixel_padding_value")
    padding_pixels = 0
    if padding is not None and not image.is_color:
        keep = flat != np.float32(padding)
        padding_pixels = int(flat.size - np.count_nonzero(keep))
        if padding_pixels:
            flat = flat[keep]
    if flat.size == 0:
        raise ValueError(f"{image.id}: every pixel equals the PixelPaddingValue; nothing to measure")
    quantiles = np.percentile(flat, MEASURED_PERCENTILES)
    physical = image.physical_size_mm
    bands = _hu_bands(flat) if image.units == "HU" and not image.is_color else None
    return ImageMeasurements(
        image_id=image.id,
        frame=None if frame is None else frame_index(image, frame),
        frames=image.frames,
        frames_measured=measured_frames,
        rows=image.rows,
        columns=image.columns,
        pixel_spacing_mm=image.pixel_spacing_mm,
        width_mm=physical[0] if physical else None,
        height_mm=physical[1] if physical else None,
        units=image.units,
        channel=channel,
        pixel_count=int(flat.size),
        padding_pixels=padding_pixels,
        min=float(flat.min()),
        max=float(flat.max()),
        mean=float(flat.mean(dtype=np.float64)),
        std=float(flat.std(dtype=np.float64)),
        percentiles={f"p{p}": float(q) for p, q in zip(MEASURED_PERCENTILES, quantiles, strict=True)},
        hu_bands=bands,
    )


def _hu_bands(flat: npt.NDArray[np.float32]) -> dict[str, float]:
    total = flat.size
    fractions: dict[str, float] = {}
    for name, lower, upper, _ in HU_BANDS:
        fractions[name] = int(np.count_nonzero((flat >= lower) & (flat < upper))) / total
    fractions["other"] = max(0.0, 1.0 - sum(fractions.values()))
    return fractions
