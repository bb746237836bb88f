"""stamp_label: a legible band burnt into the pixels, covering little, never hiding small images."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageFont

from okaflow._constants import DERIVED_LABEL, SYNTHETIC_LABEL
from okaflow.tools.reporting import _fonts, label_layout, stamp_label


def _band_stats(img: Image.Image, top: int, bottom: int) -> tuple[int, int]:
    """Counts of near-black and near-white pixels in rows [top, bottom)."""
    grey = np.asarray(img.convert("L"))[top:bottom]
    return int((grey < 40).sum()), int((grey > 215).sum())


@pytest.mark.parametrize("size", [(512, 512), (1024, 1024), (640, 360), (1024, 300)])
def test_large_images_keep_their_size_and_lose_at_most_15_percent(
    size: tuple[int, int], make_xray: Callable[..., Image.Image]
) -> None:
    src = make_xray(size)
    out = stamp_label(src)
    layout = label_layout(size)
    assert out.size == size
    assert out.mode == "RGB"
    assert not layout.grow
    assert layout.band_height <= 0.15 * size[1]
    src_rgb = np.asarray(src.convert("RGB")).astype(int)
    out_px = np.asarray(out).astype(int)
    # The band differs from the source, the rest is untouched.
    assert (out_px[: layout.band_height] != src_rgb[: layout.band_height]).any(axis=2).mean() > 0.5
    assert np.array_equal(out_px[layout.band_height :], src_rgb[layout.band_height :])
    dark, light = _band_stats(out, 0, layout.band_height)
    assert dark > 0
    assert light > 0.03 * size[0] * layout.band_height


@pytest.mark.parametrize("size", [(64, 64), (128, 128), (32, 300), (1024, 64)])
def test_small_images_grow_the_canvas_and_keep_every_source_pixel(
    size: tuple[int, int], make_xray: Callable[..., Image.Image]
) -> None:
    src = make_xray(size)
    out = stamp_label(src)
    layout = label_layout(size)
    assert layout.grow
    assert out.size == layout.canvas
    assert out.height > size[1]
    assert out.width >= size[0]
    x, y = layout.offset
    pasted = np.asarray(out)[y : y + size[1], x : x + size[0]]
    assert np.array_equal(pasted, np.asarray(src.convert("RGB")))
    dark, light = _band_stats(out, 0, layout.band_height)
    assert dark > 0
    assert light > 50
    assert layout.font_px >= 11


def test_text_scales_with_width() -> None:
    assert label_layout((1024, 1024)).font_px > 2 * label_layout((400, 400)).font_px
    assert label_layout((1024, 1024)).lines == (SYNTHETIC_LABEL,)


def test_bottom_position_puts_the_band_at_the_bottom(make_xray: Callable[..., Image.Image]) -> None:
    src = make_xray((512, 512))
    out = stamp_label(src, DERIVED_LABEL, position="bottom")
    band = label_layout((512, 512), DERIVED_LABEL, position="bottom").band_height
    assert np.array_equal(np.asarray(out)[: 512 - band], np.asarray(src.convert("RGB"))[: 512 - band])
    assert _band_stats(out, 512 - band, 512)[1] > 0


def test_label_text_is_rendered_not_just_a_band(make_xray: Callable[..., Image.Image]) -> None:
    """Different texts give different pixels (a blank band would be the same for both)."""
    src = make_xray((512, 512))
    a = np.asarray(stamp_label(src, "AI-GENERATED"))
    b = np.asarray(stamp_label(src, "DERIVED"))
    assert not np.array_equal(a, b)


def test_rgb_and_palette_input_and_input_not_mutated() -> None:
    src = Image.new("RGB", (600, 400), (10, 120, 200))
    before = src.tobytes()
    out = stamp_label(src)
    assert src.tobytes() == before
    assert out.getpixel((300, 399)) == (10, 120, 200)
    assert stamp_label(Image.new("P", (600, 400))).mode == "RGB"


def test_stamping_is_deterministic(make_xray: Callable[..., Image.Image]) -> None:
    assert stamp_label(make_xray((300, 300))).tobytes() == stamp_label(make_xray((300, 300))).tobytes()


@pytest.mark.parametrize("mode", ["I;16", "F"])
def test_high_bit_depth_is_refused(mode: str) -> None:
    with pytest.raises(ValueError, match="8-bit"):
        stamp_label(Image.new(mode, (64, 64)))


def test_blank_text_and_bad_position_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        stamp_label(Image.new("L", (64, 64)), "   ")
    with pytest.raises(ValueError, match="position"):
        stamp_label(Image.new("L", (64, 64)), position="left")  # type: ignore[arg-type]


def test_labels_draw_with_the_shipped_dejavu_font() -> None:
    """The font files ship with okaflow, so the em dash is drawn as such on every install."""
    face, fallback = _fonts.font(20, bold=True)
    assert not fallback
    assert isinstance(face, ImageFont.FreeTypeFont) and face.getname() == ("DejaVu Sans", "Bold")
    assert label_layout((1024, 1024)).lines == (SYNTHETIC_LABEL,)


def test_fallback_font_uses_ascii_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without DejaVu the built-in font is used, and the em dash (which it lacks) becomes '-'."""
    monkeypatch.setattr(_fonts, "_dejavu", lambda name: None)
    _fonts.font.cache_clear()
    try:
        layout = label_layout((1024, 1024))
        assert layout.lines == ("AI-GENERATED - NOT FOR DIAGNOSIS",)
        out = stamp_label(Image.new("L", (1024, 1024), 128))
        assert _band_stats(out, 0, layout.band_height)[1] > 0
    finally:
        _fonts.font.cache_clear()
