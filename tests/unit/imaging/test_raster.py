"""PNG, JPEG and TIFF: bit depths, pages, EXIF orientation, and our own decompression-bomb guard."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from okaflow._errors import ImageError, ImageTooLargeError
from okaflow._types import Modality
from okaflow.tools.imaging import load_image, render_frame


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR declares ``width``×``height`` but which carries almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    idat = zlib.compress(b"\x00" * 16)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    )
    return path


def test_8bit_grey_png(tmp_path: Path) -> None:
    arr = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(arr).save(tmp_path / "grey.png")
    img = load_image(tmp_path / "grey.png")
    assert img.format == "png"
    assert img.id == "Image/grey"
    assert img.pixels.shape == (1, 16, 16)
    assert img.bits_stored == 8
    np.testing.assert_array_equal(img.pixels[0], arr)
    assert img.modality is Modality.OTHER
    assert img.modality_source == "default"
    # An 8-bit file is already a display image: rendered unchanged.
    np.testing.assert_array_equal(np.asarray(render_frame(img)), arr)


def test_16bit_grey_png_keeps_its_depth(tmp_path: Path) -> None:
    arr = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 15).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    img = load_image(tmp_path / "deep.png", modality_hint="xray chest")
    assert img.bits_stored == 16
    np.testing.assert_array_equal(img.pixels[0], arr.astype(np.float32))
    assert img.pixels.max() > 255
    assert img.modality is Modality.CXR
    assert img.modality_source == "hint"
    out = np.asarray(render_frame(img))
    assert out.dtype == np.uint8
    assert out.min() == 0
    assert out.max() == 255


def test_rgb_png_and_grey_saved_as_rgb(tmp_path: Path) -> None:
    colour = np.zeros((8, 8, 3), dtype=np.uint8)
    colour[..., 0] = 200
    Image.fromarray(colour).save(tmp_path / "red.png")
    grey_rgb = np.repeat(np.arange(64, dtype=np.uint8).reshape(8, 8, 1), 3, axis=2)
    Image.fromarray(grey_rgb).save(tmp_path / "grey_rgb.png")
    red = load_image(tmp_path / "red.png")
    assert red.is_color
    assert red.photometric == "RGB"
    assert render_frame(red).mode == "RGB"
    grey = load_image(tmp_path / "grey_rgb.png")
    assert not grey.is_color
    assert grey.metadata["rgb_collapsed_to_grey"] is True


def test_alpha_is_dropped_with_a_warning(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 128
    Image.fromarray(rgba).save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert img.pixels.shape == (1, 4, 4, 3)
    assert any("alpha" in w for w in img.warnings)


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    Image.fromarray(arr).save(tmp_path / "photo.jpg", exif=exif.tobytes(), quality=95)
    img = load_image(tmp_path / "photo.jpg", modality_hint="fundus")
    assert img.format == "jpeg"
    assert (img.rows, img.columns) == (40, 20)  # portrait once rotated
    assert img.metadata["exif_orientation"] == 6
    assert img.modality is Modality.CFP
    # After a clockwise turn the white (former left) half is at the top.
    assert img.pixels[0, :15].mean() > 200
    assert img.pixels[0, 25:].mean() < 50


def test_multipage_tiff_becomes_frames(tmp_path: Path) -> None:
    pages = [Image.fromarray(np.full((10, 12), 40 * i, dtype=np.uint8)) for i in range(3)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    img = load_image(tmp_path / "stack.tif")
    assert img.format == "tiff"
    assert img.pixels.shape == (3, 10, 12)
    assert [float(img.pixels[i, 0, 0]) for i in range(3)] == [0.0, 40.0, 80.0]
    assert render_frame(img, frame=-1).getpixel((0, 0)) == 80


def test_tiff_pages_of_another_size_are_skipped(tmp_path: Path) -> None:
    # A pyramid TIFF: the full image then a thumbnail.
    full = Image.fromarray(np.zeros((32, 32), dtype=np.uint8))
    thumb = Image.fromarray(np.zeros((8, 8), dtype=np.uint8))
    full.save(tmp_path / "pyramid.tif", save_all=True, append_images=[thumb])
    img = load_image(tmp_path / "pyramid.tif")
    assert img.pixels.shape == (1, 32, 32)
    assert img.metadata["pages_skipped"] == [1]


def test_16bit_tiff(tmp_path: Path) -> None:
    arr = np.arange(100, dtype=np.uint16).reshape(10, 10) * 600
    Image.fromarray(arr).save(tmp_path / "deep.tiff")
    np.testing.assert_array_equal(load_image(tmp_path / "deep.tiff").pixels[0], arr.astype(np.float32))


def test_format_comes_from_content_not_name(tmp_path: Path) -> None:
    arr = np.zeros((4, 4), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "actually_png.jpg", format="PNG")
    assert load_image(tmp_path / "actually_png.jpg").format == "png"


def test_oversized_png_header_is_refused_before_decoding(tmp_path: Path) -> None:
    before = Image.MAX_IMAGE_PIXELS
    path = _png_header_only(tmp_path / "bomb.png", 50_000, 50_000)
    with pytest.raises(ImageTooLargeError) as info:
        load_image(path)
    assert "50000×50000 = 2,500,000,000 pixels" in str(info.value)
    assert "max_pixels=" in (info.value.hint or "")
    assert before == Image.MAX_IMAGE_PIXELS  # Pillow's global was never touched


def test_our_budget_replaces_pillows(tmp_path: Path) -> None:
    arr = np.zeros((100, 100), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "small.png")
    with pytest.raises(ImageTooLargeError):
        load_image(tmp_path / "small.png", max_pixels=9_999)
    assert load_image(tmp_path / "small.png", max_pixels=10_000).rows == 100


def test_truncated_png_is_an_image_error(tmp_path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cannot decode the PNG"):
        load_image(tmp_path / "cut.png")


def test_corrupt_header(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(ImageError, match="PNG header"):
        load_image(tmp_path / "bad.png")
