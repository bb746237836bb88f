"""Burn a visible "synthetic" label into an image's pixels.

A generated image must say what it is even after it has left the report (copied, screenshotted, sent
to a PACS as Secondary Capture). So the label is pixels, not metadata: a black band with white bold
text and a yellow rule, sized to the image. On large images the band covers at most ~15% of the
height; on small ones, where legible text would cover too much, the canvas grows instead so that no
source pixel is hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageDraw, ImageFont

from okaflow._constants import SYNTHETIC_LABEL
from okaflow.tools.reporting._fonts import Font, font_text
from okaflow.tools.reporting._fonts import font as _sans

__all__ = ["LabelLayout", "label_layout", "stamp_label"]


BAND_COLOUR = (0, 0, 0)
TEXT_COLOUR = (255, 255, 255)
RULE_COLOUR = (255, 200, 0)

# Below this pixel size bold sans text stops being readable on a screen.
_MIN_FONT_PX = 11
# When the canvas grows anyway, a bigger font only makes the band bulkier.
_MAX_GROWN_FONT_PX = 24
_MAX_COVER_FRACTION = 0.15
_TEXT_WIDTH_FRACTION = 0.92


@dataclass(frozen=True)
class LabelLayout:
    """Where and how large the label band is for one image size.

    Attributes:
        font_px: Font size in pixels.
        lines: The label text split into the lines drawn.
        band_height: Height of the band in output pixels (rule included).
        grow: True when the band is added above/below the image; False when it covers the image.
        canvas: Output size ``(width, height)``.
        offset: Where the source image's top-left corner lands on the canvas.
    """

    font_px: int
    lines: tuple[str, ...]
    band_height: int
    grow: bool
    canvas: tuple[int, int]
    offset: tuple[int, int]


def stamp_label(
    img: Image.Image,
    text: str = SYNTHETIC_LABEL,
    *,
    position: Literal["top", "bottom"] = "top",
) -> Image.Image:
    """Return a copy of ``img`` with ``text`` burnt in as a high-contrast band.

    Args:
        img: An 8-bit greyscale, palette or colour image (any size from a few pixels up).
        text: The label; defaults to ``SYNTHETIC_LABEL`` ("AI-GENERATED — NOT FOR DIAGNOSIS").
        position: Band at the ``"top"`` or ``"bottom"`` edge.

    Returns:
        A new RGB image. It has the input's size when the band fits in ~15% of the height with
        legible text; otherwise it is taller (and, for very narrow images, wider) than the input.

    Raises:
        ValueError: ``img`` is a 16/32-bit or float image (window it to 8 bits first), ``text``
            is blank, or ``position`` is neither ``"top"`` nor ``"bottom"``.
    """
    if img.mode in {"I", "I;16", "I;16B", "I;16L", "F"}:
        raise ValueError(f"stamp_label needs an 8-bit image, got mode {img.mode!r}; window it to 8 bits first")
    if position not in ("top", "bottom"):
        raise ValueError(f"position must be 'top' or 'bottom', got {position!r}")
    layout = label_layout(img.size, text, position=position)
    font = _font(layout.font_px)

    src = img.convert("RGB")
    canvas = Image.new("RGB", layout.canvas, BAND_COLOUR) if layout.grow else src.copy()
    if layout.grow:
        canvas.paste(src, layout.offset)
    width, height = layout.canvas
    top = 0 if position == "top" else height - layout.band_height
    rule = max(1, round(layout.font_px / 10))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, top, width - 1, top + layout.band_height - 1), fill=BAND_COLOUR)
    # The rule sits on the edge that meets the image, so a dark image cannot swallow the band.
    rule_y = top + layout.band_height - rule if position == "top" else top
    draw.rectangle((0, rule_y, width - 1, rule_y + rule - 1), fill=RULE_COLOUR)

    ascent, descent = font.getmetrics() if isinstance(font, ImageFont.FreeTypeFont) else (layout.font_px, 0)
    line_h = ascent + descent
    pad = _pad(layout.font_px)
    y = top + pad + (rule if position == "bottom" else 0)
    for line in layout.lines:
        draw.text((width / 2, y), line, font=font, fill=TEXT_COLOUR, anchor="ma")
        y += line_h
    return canvas


def label_layout(
    size: tuple[int, int], text: str = SYNTHETIC_LABEL, *, position: Literal["top", "bottom"] = "top"
) -> LabelLayout:
    """Compute the band for an image of ``size`` without drawing it (useful for DICOM annotations).

    Args:
        size: The source image's ``(width, height)``.
        text: The label text.
        position: ``"top"`` or ``"bottom"``.

    Returns:
        The layout :func:`stamp_label` will use.
    """
    if not text.strip():
        raise ValueError("the label text is empty")
    text = _normalise_text(text)
    width, height = size
    avail = max(1.0, width * _TEXT_WIDTH_FRACTION)
    fit = _fit_font_px(text, avail)
    # Overlay when a legible one-line band fits in the cover budget (shrinking the font if needed).
    overlay_px = fit
    while overlay_px >= _MIN_FONT_PX and _band_height(overlay_px, 1) > _MAX_COVER_FRACTION * height:
        overlay_px -= 1
    if overlay_px >= _MIN_FONT_PX:
        band = _band_height(overlay_px, 1)
        return LabelLayout(overlay_px, (text,), band, False, (width, height), (0, 0))

    # Growing the canvas: keep the text legible, wrap it, and widen only if one word cannot fit.
    font_px = max(_MIN_FONT_PX, min(fit, _MAX_GROWN_FONT_PX))
    font = _font(font_px)
    tokens = _tokens(text)
    # Wrap to the image width, or to the widest unbreakable token when that is wider still.
    lines = _wrap(tokens, font, max(avail, max(font.getlength(t) for t in tokens)))
    widest = max(font.getlength(line) for line in lines)
    canvas_w = max(width, int(widest + 2 * _pad(font_px) + 0.999))
    band = _band_height(font_px, len(lines))
    offset_x = (canvas_w - width) // 2
    offset_y = band if position == "top" else 0
    return LabelLayout(font_px, tuple(lines), band, True, (canvas_w, height + band), (offset_x, offset_y))


def _normalise_text(text: str) -> str:
    """One line of single-spaced text, in ASCII punctuation if only the fallback font is available."""
    return font_text(" ".join(text.split()), _MIN_FONT_PX, bold=True)[1]


def _pad(font_px: int) -> int:
    return max(2, round(font_px * 0.3))


def _band_height(font_px: int, n_lines: int) -> int:
    font = _font(font_px)
    ascent, descent = font.getmetrics() if isinstance(font, ImageFont.FreeTypeFont) else (font_px, 0)
    rule = max(1, round(font_px / 10))
    return n_lines * (ascent + descent) + 2 * _pad(font_px) + rule


def _fit_font_px(text: str, avail: float) -> int:
    """Largest font size whose one-line rendering of ``text`` fits in ``avail`` pixels."""
    probe = 100
    length = _font(probe).getlength(text)
    size = max(1, int(probe * avail / max(length, 1.0)))
    # Glyph widths are not exactly linear in size (hinting), so step down until it really fits.
    while size > 1 and _font(size).getlength(text) > avail:
        size -= 1
    return size


def _tokens(text: str) -> list[str]:
    """Words, with a free-standing dash kept on the end of the word before it ("GENERATED —")."""
    tokens: list[str] = []
    for word in text.split(" "):
        if tokens and word in {"—", "–", "-", "--"}:
            tokens[-1] = f"{tokens[-1]} {word}"
        else:
            tokens.append(word)
    return tokens


def _wrap(tokens: list[str], font: Font, avail: float) -> list[str]:
    lines: list[str] = []
    for word in tokens:
        if lines and font.getlength(f"{lines[-1]} {word}") <= avail:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _font(size: int) -> Font:
    """The labels' font: bold sans at ``size`` px."""
    return _sans(size, bold=True)[0]
