"""The fonts okaflow draws with: DejaVu Sans as shipped inside matplotlib (a dependency), else Pillow's own.

DejaVu covers typographic punctuation (the em dash of ``SYNTHETIC_LABEL``, the en dash of a reference
range); Pillow's built-in fallback is ASCII-only, so text drawn with it goes through :data:`ASCII_FALLBACK`.
The file is located without importing matplotlib (``import okaflow`` stays light).
"""

from __future__ import annotations

import functools
import importlib.util
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


@functools.lru_cache(maxsize=4)
def _dejavu(name: str) -> Path | None:
    spec = importlib.util.find_spec("matplotlib")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "mpl-data" / "fonts" / "ttf" / name
        if candidate.is_file():
            return candidate
    return None
