"""The fonts okaflow draws with: DejaVu Sans, shipped in ``fonts/`` beside this module, else Pillow's own.

DejaVu covers typographic punctuation (the em dash of ``SYNTHETIC_LABEL``, the en dash of a reference
range); Pillow's built-in fallback is ASCII-only, so text drawn with it goes through :data:`ASCII_FALLBACK`.
The fallback only serves an install stripped of its package data. Shipping the two files (1.4 MB, under
the DejaVu licence in ``fonts/LICENSE_DEJAVU``) keeps labels and plots the same pixels on every machine,
whatever else is installed; they used to come from matplotlib, a 35 MB dependency for two files.
"""

from __future__ import annotations

import functools
from pathlib import Path

from PIL import ImageFont

__all__ = ["ASCII_FALLBACK", "Font", "font", "font_text"]

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

# Pillow's built-in font lacks typographic punctuation; it would draw boxes instead.
ASCII_FALLBACK = str.maketrans({"—": "-", "–": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "…": "..."})


@functools.lru_cache(maxsize=128)
def font(size: int, *, bold: bool = False) -> tuple[Font, bool]:
    """A sans font at ``size`` px, and whether it is Pillow's ASCII-only fallback."""
    path = _dejavu("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
    if path is not None:
        return ImageFont.truetype(str(path), size), False
    return ImageFont.load_default(size=size), True


def font_text(text: str, size: int, *, bold: bool = False) -> tuple[Font, str]:
    """The font at ``size`` px and ``text`` as it can draw it (ASCII punctuation with the fallback)."""
    chosen, fallback = font(size, bold=bold)
    return chosen, text.translate(ASCII_FALLBACK) if fallback else text


def _dejavu(name: str) -> Path | None:
    path = Path(__file__).with_name("fonts") / name
    return path if path.is_file() else None
