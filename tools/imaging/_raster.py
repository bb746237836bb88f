"""PNG, JPEG and TIFF to :class:`MedicalImage` through Pillow, under okaflow's own pixel budget.

Pillow's decompression-bomb guard reads the process-global ``Image.MAX_IMAGE_PIXELS``. Rather than
change that global for everyone, the file is opened with the format's plugin class directly (which
parses only the header), the declared size is checked against ``max_pixels``, and only then are the
pixels decoded. Pillow's warning for sizes between its limit and twice it is silenced because ours
has already decided; TIFF decoding still stops at twice Pillow's limit (about 179 MP per page).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, PngImagePlugin, TiffImagePlugin

from okaflow._errors import ImageError, ImageTooLargeError
from okaflow._types import Modality
from okaflow.tools.imaging._dicom import captured_warnings
from okaflow.tools.imaging._modality import detect_modality
from okaflow.tools.imaging._models import ImageFormat, MedicalImage
from okaflow.tools.imaging._policy import check_pixel_budget

__all__ = ["raster_format", "read_raster"]

_SIGNATURES: tuple[tuple[bytes, ImageFormat], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
)
_GREY_MODES = {"1": 8, "L": 8, "LA": 8, "I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16, "I": 32, "F": 32}


def raster_format(head: bytes) -> ImageFormat | None:
    """The raster format a file's first bytes announce, or None."""
    return next((fmt for magic, fmt in _SIGNATURES if head.startswith(magic)), None)


def _open(fp: IO[bytes], fmt: ImageFormat, path: Path) -> ImageFile.ImageFile:
    try:
        if fmt == "png":
            return PngImagePlugin.PngImageFile(fp)
        if fmt == "jpeg":
            return JpegImagePlugin.jpeg_factory(fp)
        return TiffImagePlugin.TiffImageFile(fp)
    except Exception as exc:  # SyntaxError, OSError, struct.error ... all mean an unreadable header
        raise ImageError(f"cannot read the {fmt.upper()} header: {exc}", source=path) from exc


def _page_sizes(im: ImageFile.ImageFile, fmt: ImageFormat) -> list[tuple[int, int, str]]:
    """(width, height, mode) of every page, read from the headers only."""
    pages = [(im.width, im.height, im.mode)]
    if fmt == "tiff":
        for index in range(1, getattr(im, "n_frames", 1)):
            im.seek(index)
            pages.append((im.width, im.height, im.mode))
        im.seek(0)
    return pages


def _to_array(page: Image.Image) -> tuple[npt.NDArray[Any], int | None, bool]:
    """Pixels as (rows, cols) grey or (rows, cols, 3) RGB, their bit depth, and whether alpha was dropped."""
    mode = page.mode
    dropped_alpha = False
    if mode in ("LA", "RGBA", "PA") or (mode == "P" and "transparency" in page.info):
        alpha = np.asarray(page.getchannel("A") if mode != "P" else page.convert("RGBA").getchannel("A"))
        dropped_alpha = bool((alpha != 255).any())
    if mode == "1" or mode == "LA":
        page = page.convert("L")
    elif mode not in _GREY_MODES and mode != "RGB":
        page = page.convert("RGB")
    arr = np.asarray(page)
    if mode == "F":
        return arr, None, dropped_alpha
    return arr, _GREY_MODES.get(page.mode, 8), dropped_alpha


def _channels_equal(pixels: npt.NDArray[Any]) -> bool:
    return np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2])


def read_raster(
    path: Path,
    fmt: ImageFormat,
    *,
    modality_hint: Modality | str | None,
    max_pixels: int,
    max_total_pixels: int,
    image_id: str | None,
) -> MedicalImage:
    """Read one PNG, JPEG or TIFF file (see :func:`okaflow.tools.imaging.load_image`)."""
    notes: list[str] = []
    metadata: dict[str, Any] = {}
    with captured_warnings(notes), path.open("rb") as fp:
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        im = _open(fp, fmt, path)
        pages = _page_sizes(im, fmt)
        width, height, mode = pages[0]
        kept = [i for i, page in enumerate(pages) if page == pages[0]]
        if len(kept) < len(pages):
            skipped = [i for i in range(len(pages)) if i not in kept]
            notes.append(f"skipped TIFF pages {skipped}: size or mode differs from page 0 ({width}×{height} {mode})")
            metadata["pages_skipped"] = skipped
        check_pixel_budget(
            rows=height,
            columns=width,
            frames=len(kept),
            max_pixels=max_pixels,
            max_total_pixels=max_total_pixels,
            source=path,
            location=f"{fmt.upper()} header size",
        )
        arrays, bits, dropped_alpha, orientation = [], None, False, None
        dpi = im.info.get("dpi")
        for index in kept:
            try:
                im.seek(index)
                page = ImageOps.exif_transpose(im)  # loads the pixels, then applies EXIF Orientation
                if orientation is None:
                    # Read after loading: a PNG's eXIf chunk may follow the pixel data.
                    orientation = im.getexif().get(0x0112)
            except Image.DecompressionBombError as exc:
                raise ImageTooLargeError(
                    f"Pillow refused to decode the page: {exc}",
                    source=path,
                    hint="split the TIFF or raise PIL.Image.MAX_IMAGE_PIXELS yourself",
                ) from exc
            except Exception as exc:  # truncated or corrupt data
                raise ImageError(f"cannot decode the {fmt.upper()} pixel data: {exc}", source=path) from exc
            arr, bits, alpha = _to_array(page)
            arrays.append(arr)
            dropped_alpha = dropped_alpha or alpha
        im.close()
    if orientation and orientation != 1:
        metadata["exif_orientation"] = int(orientation)
    if dpi:
        metadata["dpi"] = [float(v) for v in dpi]
    if dropped_alpha:
        notes.append("dropped a non-opaque alpha channel")
    pixels = np.stack(arrays)
    if pixels.ndim == 4 and _channels_equal(pixels):
        # Grey pictures saved as RGB (common for exported X-rays) are grey: window and measure them so.
        pixels = pixels[..., 0]
        metadata["rgb_collapsed_to_grey"] = True
    metadata["mode"] = mode
    if len(kept) > 1:
        metadata["pages"] = len(pages)
    modality, modality_source = detect_modality(None, hint=modality_hint)
    return MedicalImage(
        id=image_id or f"Image/{path.stem}",
        source=path,
        format=fmt,
        modality=modality,
        modality_source=modality_source,
        pixels=pixels.astype(np.float32),
        photometric="RGB" if pixels.ndim == 4 else "MONOCHROME2",
        metadata=metadata,
        warnings=notes,
        bits_stored=bits,
    )
