"""Rendering a :class:`MedicalImage` to an 8-bit picture: one frame, a montage, or a model input."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

from okaflow.tools.imaging._models import MedicalImage, SizePolicy, VoiLut, Window
from okaflow.tools.imaging._policy import DEFAULT_POLICY, fit_to_policy
from okaflow.tools.imaging._window import apply_voi_lut_8bit, apply_window_8bit, resolve_window

__all__ = ["frame_index", "render_for_model", "render_frame", "render_montage"]

FrameSpec = int | Literal["middle"] | None


def frame_index(image: MedicalImage, frame: FrameSpec) -> int:
    """The 0-based frame ``frame`` names: an index (negative counts from the end), or ``"middle"``/None
    for the middle frame (``frames // 2``; frame 0 of a single-frame image).

    Raises:
        IndexError: the index is outside the image's frames.
    """
    if frame is None or frame == "middle":
        return image.frames // 2
    if not -image.frames <= frame < image.frames:
        raise IndexError(f"frame {frame} is out of range: {image.id} has {image.frames} frame(s)")
    return frame % image.frames


def _to_uint8(
    image: MedicalImage, values: npt.NDArray[np.float32], window: Window | VoiLut | None
) -> npt.NDArray[np.uint8]:
    if isinstance(window, VoiLut):
        out = apply_voi_lut_8bit(values, window)
    elif isinstance(window, Window):
        out = apply_window_8bit(values, window)
    else:
        # Colour shown as stored: 8-bit data as is, deeper data scaled from its bit depth.
        bits = image.bits_stored or 8
        if bits > 8:
            scaled = values * np.float32(255.0 / (2**bits - 1))
            scaled += np.float32(0.5)
            np.clip(scaled, np.float32(0.0), np.float32(255.0), out=scaled)
        else:  # 8-bit samples are whole numbers already: clip only guards hand-built images
            scaled = np.clip(values, np.float32(0.0), np.float32(255.0))
        out = scaled.astype(np.uint8)
    if image.photometric == "MONOCHROME1":
        # MONOCHROME1 stores low values as white: windows apply to stored values, then invert.
        np.subtract(np.uint8(255), out, out=out)
    return out


def _describe(window: Window | VoiLut | None) -> str:
    return window.describe() if window is not None else "as stored"


def render_frame(
    image: MedicalImage,
    *,
    frame: FrameSpec = None,
    window: Window | str | None = None,
) -> Image.Image:
    """Render one frame as an 8-bit ``L`` (grey) or ``RGB`` image.

    The window follows :func:`resolve_window`'s precedence: explicit > header window > VOI LUT >
    CT soft-tissue preset > full range for 8-bit raster files > robust 0.5–99.5 percentile of the
    frame. MONOCHROME1 images are inverted after windowing. The window used is described in the
    result's ``info["okaflow_window"]`` (never written by :func:`to_png_bytes`).

    Args:
        image: The image.
        frame: A frame index, ``"middle"``, or None (the middle frame).
        window: A :class:`Window`, a CT preset name such as ``"lung"``, ``"header"``, ``"voi"``,
            ``"auto"``, ``"full"``, or None for the default.

    Raises:
        IndexError: ``frame`` is out of range.
        ConfigurationError: ``window`` names nothing usable for this image.
    """
    values = image.pixels[frame_index(image, frame)]
    resolved = resolve_window(image, window, values)
    picture = Image.fromarray(_to_uint8(image, values, resolved))
    picture.info["okaflow_window"] = _describe(resolved)
    return picture


def render_montage(
    image: MedicalImage,
    *,
    max_frames: int = 16,
    window: Window | str | None = None,
    columns: int | None = None,
) -> Image.Image:
    """Tile up to ``max_frames`` evenly spaced frames into one image, all with the same window.

    The window is resolved once over all the chosen frames, so tiles are comparable. The grid is
    ``columns`` wide (default: the ceiling of the square root of the tile count), filled row by
    row; unused cells are black. A single-frame image gives the same picture as :func:`render_frame`
    with the default window resolved over that frame.
    """
    if max_frames < 1:
        raise ValueError("max_frames must be >= 1")
    count = min(image.frames, max_frames)
    indices = sorted({round(i) for i in np.linspace(0, image.frames - 1, count)})
    values = image.pixels[indices]
    resolved = resolve_window(image, window, values)
    tiles = _to_uint8(image, values, resolved)
    cols = columns or math.ceil(math.sqrt(len(indices)))
    rows = math.ceil(len(indices) / cols)
    h, w = image.rows, image.columns
    canvas = np.zeros((rows * h, cols * w, *tiles.shape[3:]), dtype=np.uint8)
    for n, tile in enumerate(tiles):
        r, c = divmod(n, cols)
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    picture = Image.fromarray(canvas)
    picture.info["okaflow_window"] = _describe(resolved)
    picture.info["okaflow_frames"] = indices
    return picture


def render_for_model(
    image: MedicalImage,
    *,
    policy: SizePolicy = DEFAULT_POLICY,
    frame: FrameSpec = None,
    window: Window | str | None = None,
) -> Image.Image:
    """:func:`render_frame` then :func:`fit_to_policy`: a frame sized for the model's encoder."""
    rendered = render_frame(image, frame=frame, window=window)
    sized = fit_to_policy(rendered, policy)
    sized.info["okaflow_window"] = rendered.info["okaflow_window"]
    return sized
