"""DICOM pixel value transforms: colour to RGB, and the modality LUT / rescale to output units."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, convert_color_space

from okaflow._errors import DICOMError
from okaflow.tools.imaging._dicom_header import HeaderReader, functional_item

__all__ = ["apply_modality_transform", "output_units", "rescale_params", "to_rgb"]


def to_rgb(
    ds: Dataset, arr: npt.NDArray[Any], photometric: str, path: Path, notes: list[str]
) -> tuple[npt.NDArray[Any], int | None]:
    """Colour data as RGB, and the bit depth of the result (None: keep the header's)."""
    if photometric == "PALETTE COLOR":
        try:
            rgb = _palette_to_rgb(arr, ds)
        except Exception as exc:
            raise DICOMError(
                f"cannot apply the palette colour lookup table: {exc}",
                source=path,
                location="(0028,1201) RedPaletteColorLookupTableData",
            ) from exc
        return rgb[..., :3], 8 if rgb.dtype == np.uint8 else 16
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        # pydicom 3 already converts these unless asked for raw data; kept for data it leaves as YBR.
        return convert_color_space(arr, photometric, "RGB"), None
    if photometric in ("YBR_ICT", "YBR_RCT"):
        notes.append(f"{photometric} data was left as decoded; colours may be off")
    return arr, None


def _palette_to_rgb(arr: npt.NDArray[Any], ds: Dataset) -> npt.NDArray[Any]:
    """pydicom's ``apply_color_lut``, applied once per stored value in the image rather than per pixel.

    The palette maps each stored value on its own, so looking up the values ``arr`` spans and then
    indexing that small table gives exactly pydicom's result (segmented palettes, values below the
    first mapped one or past the last entry included) in one gather instead of several passes over
    every pixel: under half the time for an ultrasound frame.
    """
    if arr.size == 0 or arr.dtype.kind not in "iu":
        return apply_color_lut(arr, ds)
    low, high = int(arr.min()), int(arr.max())
    if high - low >= arr.size:  # a table larger than the image saves nothing
        return apply_color_lut(arr, ds)
    table = apply_color_lut(np.arange(low, high + 1, dtype=np.int64), ds)
    # Offsets in a wide type: int16 values from -100 to 32700 would wrap if subtracted in int16.
    index = arr if low == 0 else np.subtract(arr, low, dtype=np.intp)
    return np.take(table, index, axis=0)  # np.take: a quarter of table[...]'s time


def rescale_params(reader: HeaderReader, frames: int) -> list[tuple[float, float]] | None:
    """(slope, intercept) per frame from the top level, shared or per-frame functional groups."""
    slope, intercept = reader.number("RescaleSlope"), reader.number("RescaleIntercept")
    if slope is not None or intercept is not None:
        return [(slope if slope is not None else 1.0, intercept or 0.0)] * frames
    params = []
    for frame in range(frames):
        item = functional_item(reader, "PixelValueTransformationSequence", frame)
        if item is None:
            return None
        s, i = reader.number("RescaleSlope", item), reader.number("RescaleIntercept", item)
        params.append((s if s is not None else 1.0, i or 0.0))
    return params


def apply_modality_transform(
    ds: Dataset, reader: HeaderReader, arr: npt.NDArray[Any], frames: int
) -> tuple[npt.NDArray[np.float32], list[tuple[float, float]] | None, bool]:
    if ds.get("ModalityLUTSequence"):
        return apply_modality_lut(arr, ds).astype(np.float32), None, True
    pixels = arr.astype(np.float32)
    params = rescale_params(reader, frames)
    if params is None:
        return pixels, None, False
    if len(set(params)) == 1:
        slope, intercept = params[0]
        if slope != 1.0:
            pixels *= np.float32(slope)
        if intercept != 0.0:
            pixels += np.float32(intercept)
    else:
        for frame, (slope, intercept) in enumerate(params):
            pixels[frame] = pixels[frame] * np.float32(slope) + np.float32(intercept)
    return pixels, params, False


def output_units(reader: HeaderReader, code: str, rescaled: bool, lut: bool) -> str | None:
    lut_item = reader.item("ModalityLUTSequence") if lut else None
    kind = reader.text("ModalityLUTType", lut_item) if lut_item is not None else reader.text("RescaleType")
    if kind and kind.upper() not in ("US", "UNSPECIFIED"):
        return kind
    if code == "CT" and (rescaled or lut):
        return "HU"
    if code == "PT":
        return reader.text("Units")
    return None
