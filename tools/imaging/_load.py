"""``load_image``: look at a file's first bytes, then hand it to the DICOM or the raster reader."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from okaflow._constants import MAX_IMAGE_PIXELS, MAX_TOTAL_PIXELS
from okaflow._errors import DICOMError, ImageError, UnsupportedImageError
from okaflow._types import Modality
from okaflow.tools.imaging._dicom import read_dicom
from okaflow.tools.imaging._models import MedicalImage
from okaflow.tools.imaging._raster import raster_format, read_raster

__all__ = ["load_image", "load_images", "sniff_format"]

_DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")

SniffedFormat = Literal["dicom", "dicom-no-preamble", "png", "jpeg", "tiff"]


def sniff_format(head: bytes) -> SniffedFormat | None:
    """The format a file's first bytes (at least 132) announce, or None when they announce none.

    ``dicom`` has the 128-byte preamble and ``DICM``; ``dicom-no-preamble`` starts directly with a
    low-numbered group 0002 (file meta) or 0008 (identification) tag in either byte order: old
    ACR-NEMA style files, or files written without the preamble.
    """
    if head[128:132] == b"DICM":
        return "dicom"
    raster = raster_format(head)
    if raster is not None:
        return raster
    for order in ("little", "big"):
        group, element = int.from_bytes(head[0:2], order), int.from_bytes(head[2:4], order)
        if len(head) >= 8 and group in (0x0002, 0x0008) and element < 0x0200:
            return "dicom-no-preamble"
    return None


def load_image(
    path: str | os.PathLike[str],
    *,
    modality_hint: Modality | str | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_total_pixels: int = MAX_TOTAL_PIXELS,
    image_id: str | None = None,
) -> MedicalImage:
    """Load a DICOM, PNG, JPEG or TIFF file as a :class:`MedicalImage`.

    The format comes from the content (DICOM preamble and ``DICM``, a leading DICOM tag for files
    without preamble, PNG/JPEG/TIFF signatures), not from the file name. DICOM pixels go through the
    modality LUT (CT in HU), YBR and palette colour become RGB, multi-frame objects and multi-page
    TIFFs keep every frame. The declared size is checked against the budget before any decoding.

    Args:
        path: The file.
        modality_hint: The modality when the tags cannot tell (always for PNG/JPEG/TIFF); overrides
            the DICOM tags when given. Accepts aliases such as ``"MR"`` or ``"xray chest"``.
        max_pixels: Largest allowed frame, in pixels (default 20 MP, the model's input limit).
        max_total_pixels: Largest allowed total over all frames, in pixels.
        image_id: The evidence id; default ``Image/<SOPInstanceUID>`` for DICOM, else ``Image/<stem>``.

    Returns:
        The image, with header facts filled and any recoverable oddities in ``warnings``.

    Raises:
        ImageError: the file is missing, a directory, or its raster data is corrupt.
        DICOMError: a DICOM file cannot be parsed or decoded (subclasses
            :class:`~okaflow.MissingPixelDataError` for objects without pixels,
            :class:`~okaflow.UnsupportedTransferSyntaxError` when no decoder is installed).
        ImageTooLargeError: the declared size exceeds the budget.
        UnsupportedImageError: the file is in no format okaflow reads.
        ConfigurationError: ``modality_hint`` is not a known modality.
    """
    file = Path(path)
    if file.is_dir():
        raise ImageError("a directory, not an image file", source=file, hint="pass its files to load_images()")
    try:
        with file.open("rb") as fp:
            head = fp.read(132)
    except FileNotFoundError as exc:
        raise ImageError("no such file", source=file) from exc
    except OSError as exc:
        raise ImageError(f"cannot open the file: {exc}", source=file) from exc
    fmt = sniff_format(head)
    budget = {"max_pixels": max_pixels, "max_total_pixels": max_total_pixels}
    if fmt in ("dicom", "dicom-no-preamble"):
        return read_dicom(file, force=fmt != "dicom", modality_hint=modality_hint, image_id=image_id, **budget)
    if fmt in ("png", "jpeg", "tiff"):
        return read_raster(file, fmt, modality_hint=modality_hint, image_id=image_id, **budget)
    if file.suffix.lower() in _DICOM_SUFFIXES:
        raise DICOMError(
            "not a DICOM file: no 'DICM' marker at byte 128 and no DICOM tag at the start",
            source=file,
            hint="the file may be empty, truncated, or another format renamed to .dcm",
        )
    raise UnsupportedImageError(
        f"not a DICOM, PNG, JPEG or TIFF file (starts with {head[:8]!r})",
        source=file,
        hint="convert it to PNG or DICOM",
    )


def load_images(
    paths: Iterable[str | os.PathLike[str]],
    *,
    modality_hint: Modality | str | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_total_pixels: int = MAX_TOTAL_PIXELS,
) -> list[MedicalImage]:
    """Load several files with :func:`load_image`, in the order given.

    The first file that cannot be loaded raises its error (nothing is skipped silently).
    """
    return [
        load_image(p, modality_hint=modality_hint, max_pixels=max_pixels, max_total_pixels=max_total_pixels)
        for p in paths
    ]
