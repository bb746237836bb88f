"""Size rules: the pixel budget checked before decoding, and the model-input size policy."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from okaflow._errors import ImageTooLargeError
from okaflow.tools.imaging._models import SizePolicy

__all__ = ["check_pixel_budget", "fit_to_policy", "policy_size", "round_to_multiple"]

DEFAULT_POLICY = SizePolicy()  # frozen, so one shared default instance is safe


def check_pixel_budget(
    *,
    rows: int,
    columns: int,
    frames: int,
    max_pixels: int,
    max_total_pixels: int,
    source: str | Path | None,
    location: str | None,
) -> None:
    """Refuse an image whose header declares more pixels than the budget, before anything is decoded.

    Compressed pixel data can declare a huge size in a few bytes (a decompression bomb), so the
    check uses the declared size, never the decoded array.

    Raises:
        ImageTooLargeError: a frame is over ``max_pixels`` or all frames are over ``max_total_pixels``.
    """
    per_frame = rows * columns
    if per_frame > max_pixels:
        raise ImageTooLargeError(
            f"{columns}×{rows} = {per_frame:,} pixels per frame exceeds the budget of {max_pixels:,}",
            source=source,
            location=location,
            hint="pass a larger max_pixels= to load_image if the file is trusted",
        )
    total = per_frame * frames
    if total > max_total_pixels:
        raise ImageTooLargeError(
            f"{frames} frames of {columns}×{rows} = {total:,} pixels in total exceeds the budget of "
            f"{max_total_pixels:,}",
            source=source,
            location=location,
            hint="pass a larger max_total_pixels= to load_image if the file is trusted",
        )


def round_to_multiple(value: float, multiple: int) -> int:
    """``value`` rounded to the nearest multiple of ``multiple``, never below one multiple."""
    return max(multiple, round(value / multiple) * multiple)


def policy_size(
    width: int, height: int, policy: SizePolicy = DEFAULT_POLICY
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The size an image of ``width``×``height`` takes under ``policy``.

    Returns:
        ``((resized_w, resized_h), (canvas_w, canvas_h))``: the image is resized to the first size and,
        where the policy pads, centred on a black canvas of the second (equal when nothing is padded).
    """
    if width < 1 or height < 1:
        raise ValueError(f"cannot size an empty image ({width}×{height})")
    cap, floor, m = policy.cap_side, policy.floor_side, policy.multiple
    long_side, short_side = max(width, height), min(width, height)
    # Scale so the long side fits the cap and the short side reaches the floor; when both cannot
    # hold (aspect ratio beyond cap/floor) the cap wins and the short side is padded instead.
    scale = min(1.0, cap / long_side)
    if short_side * scale < floor:
        scale = min(floor / short_side, cap / long_side)
    new_w = min(cap, round_to_multiple(width * scale, m))
    new_h = min(cap, round_to_multiple(height * scale, m))
    canvas_w, canvas_h = new_w, new_h
    if policy.pad_to_min:
        canvas_w, canvas_h = max(new_w, floor), max(new_h, floor)
    return (new_w, new_h), (canvas_w, canvas_h)


def fit_to_policy(img: Image.Image, policy: SizePolicy = DEFAULT_POLICY) -> Image.Image:
    """Resize a rendered image for a model under a :class:`SizePolicy`.

    The long side is capped at ``max_side`` and the short side raised to ``min_side``, both rounded to
    the nearest ``multiple`` (like Qwen2-VL's ``smart_resize``: the aspect ratio is kept up to that
    rounding, at most half a multiple per side). Where the aspect ratio is more extreme than
    ``max_side / min_side``, the cap wins: the image is scaled to the cap and, with ``pad_to_min``,
    centred on a black canvas whose short side is ``min_side`` rounded up to the multiple; without
    ``pad_to_min`` the short side stays below the floor. Resampling is bicubic (antialiased when
    downscaling), as in UniMedVL's own preprocessing (BAGEL's ``MaxLongEdgeMinShortEdgeResize``) and in
    the image processors of Qwen2-VL, LLaVA and CLIP: the model sees the kind of pixels it was trained
    on, and a third less work than Lanczos.

    Args:
        img: A rendered image (``L``, ``RGB``; other modes are converted to ``RGB``).
        policy: The size policy; the default matches UniMedVL's understanding encoder.

    Returns:
        A new image; the input is not modified.
    """
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    (new_w, new_h), (canvas_w, canvas_h) = policy_size(img.width, img.height, policy)
    resized = img.copy() if img.size == (new_w, new_h) else img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    if (canvas_w, canvas_h) == (new_w, new_h):
        return resized
    canvas = Image.new(resized.mode, (canvas_w, canvas_h), 0)
    canvas.paste(resized, ((canvas_w - new_w) // 2, (canvas_h - new_h) // 2))
    return canvas
