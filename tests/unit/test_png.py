"""okaflow._png: the one PNG encoder. Every file is read back with Pillow, which checks CRCs and the zlib stream."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from okaflow._png import png_bytes
from okaflow.tools.imaging import to_png_bytes
from okaflow.tools.reporting import png_bytes as reporting_png_bytes

RNG = np.random.default_rng(7)


def _chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    kinds, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + body) == crc
        kinds.append(kind)
        at += 12 + length
    return kinds


def _read(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.mark.parametrize(
    ("mode", "shape", "dtype"),
    [
        ("L", (37, 53), np.uint8),
        ("LA", (37, 53, 2), np.uint8),
        ("RGB", (37, 53, 3), np.uint8),
        ("RGBA", (37, 53, 4), np.uint8),
        ("I;16", (37, 53), np.uint16),
    ],
)
def test_native_modes_round_trip_exactly(mode: str, shape: tuple[int, ...], dtype: type) -> None:
    # Random pixels make every Up-filter difference wrap around somewhere (a byte below the one above it).
    pixels = RNG.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)
    img = Image.fromarray(pixels, mode=mode) if mode != "I;16" else Image.fromarray(pixels).convert("I;16")
    back = _read(png_bytes(img))
    assert back.mode == mode
    np.testing.assert_array_equal(np.asarray(back), np.asarray(img))


def test_sixteen_bit_samples_keep_all_their_bits_in_either_byte_order() -> None:
    values = np.array([[0, 1, 255, 256], [4095, 32768, 65534, 65535]], dtype=np.uint16)
    little = Image.fromarray(values)
    big = Image.frombytes("I;16B", little.size, values.astype(">u2").tobytes())
    assert png_bytes(big) == png_bytes(little)
    np.testing.assert_array_equal(np.asarray(_read(png_bytes(big))), values)


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (9, 1)])
def test_single_row_and_single_column_images(size: tuple[int, int]) -> None:
    img = Image.fromarray(RNG.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))
    np.testing.assert_array_equal(np.asarray(_read(png_bytes(img))), np.asarray(img))


def test_modes_png_lacks_are_converted_and_alpha_is_kept() -> None:
    bilevel = Image.fromarray(np.eye(8, dtype=bool))
    assert _read(png_bytes(bilevel)).mode == "L"
    np.testing.assert_array_equal(np.asarray(_read(png_bytes(bilevel))), np.eye(8, dtype=np.uint8) * 255)
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 200, 10, 20] + [0] * 762)
    assert _read(png_bytes(palette)).getpixel((0, 0)) == (200, 10, 20)
    palette.info["transparency"] = 1
    assert _read(png_bytes(palette)).getpixel((0, 0)) == (200, 10, 20, 0)
    cmyk = Image.new("CMYK", (3, 3), (0, 255, 255, 0))
    assert _read(png_bytes(cmyk)).getpixel((1, 1)) == (255, 0, 0)
    rgba_palette = Image.new("P", (2, 2), 0)  # alpha in the palette itself, no info["transparency"]
    rgba_palette.putpalette([10, 20, 30, 40] * 256, "RGBA")
    assert _read(png_bytes(rgba_palette)).getpixel((0, 0)) == (10, 20, 30, 40)
    premultiplied = Image.new("LA", (2, 2), (80, 255)).convert("La")
    assert _read(png_bytes(premultiplied)).getpixel((0, 0)) == (80, 255)


def test_sixteen_bit_native_order_keeps_its_bits() -> None:
    values = np.array([[1, 300], [40000, 65535]], dtype=np.uint16)
    native = Image.frombytes("I;16N", (2, 2), values.tobytes())
    np.testing.assert_array_equal(np.asarray(_read(png_bytes(native))), values)


@pytest.mark.parametrize("mode", ["LAB", "HSV"])
def test_modes_without_a_faithful_conversion_are_refused_not_guessed(mode: str) -> None:
    with pytest.raises(ValueError, match=f"mode '{mode}' image as PNG: convert it to RGB"):
        png_bytes(Image.new(mode, (2, 2)))


@pytest.mark.parametrize("mode", ["I", "F"])
def test_wide_integer_and_float_images_are_refused_with_the_way_out(mode: str) -> None:
    with pytest.raises(ValueError, match="window it to 8 bits"):
        png_bytes(Image.new(mode, (4, 4)))


def test_an_image_without_pixels_is_refused() -> None:
    with pytest.raises(ValueError, match="0x5 pixels"):
        png_bytes(Image.new("L", (0, 5)))


def test_only_the_needed_chunks_are_written_and_equal_pixels_give_equal_bytes() -> None:
    plain = Image.fromarray(RNG.integers(0, 256, size=(16, 16, 3), dtype=np.uint8))
    noisy = plain.copy()
    noisy.info.update({"dpi": (300, 300), "gamma": 0.45, "icc_profile": b"x" * 64, "Software": "scanner 1.0"})
    assert png_bytes(noisy) == png_bytes(plain)
    assert _chunks(png_bytes(plain)) == [b"IHDR", b"IDAT", b"IEND"]


def test_imaging_and_reporting_share_the_one_encoder() -> None:
    assert to_png_bytes is png_bytes
    assert reporting_png_bytes is png_bytes
