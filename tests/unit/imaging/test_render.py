"""Windows, frames, montages, the model size policy and deterministic PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from okaflow._constants import GENERATION_MAX_SIDE, GENERATION_MULTIPLE
from okaflow._errors import ConfigurationError
from okaflow._types import Modality
from okaflow.tools.imaging import (
    CT_WINDOW_PRESETS,
    MedicalImage,
    SizePolicy,
    Window,
    fit_to_policy,
    load_image,
    policy_size,
    render_for_model,
    render_frame,
    render_montage,
    resolve_window,
    to_png_bytes,
)

Files = Callable[[str], Path]


def _image(pixels: np.ndarray, **fields: object) -> MedicalImage:
    values = pixels.astype(np.float32)
    defaults: dict[str, object] = {
        "id": "Image/t",
        "source": None,
        "format": "dicom",
        "modality": Modality.OTHER,
    }
    defaults.update(fields)
    return MedicalImage(modality_source="default", pixels=values, **defaults)  # type: ignore[arg-type]


def test_presets() -> None:
    assert {"lung", "mediastinum", "soft_tissue", "bone", "brain", "liver", "stroke", "subdural"} <= set(
        CT_WINDOW_PRESETS
    )
    lung = CT_WINDOW_PRESETS["lung"]
    assert (lung.center, lung.width) == (-600, 1500)
    assert all(isinstance(w, Window) and w.name == name for name, w in CT_WINDOW_PRESETS.items())


def test_ct_default_is_soft_tissue_and_presets_apply(dicom_file: Files) -> None:
    img = load_image(dicom_file("CT_small.dcm"))  # no header window in this file
    assert render_frame(img).info["okaflow_window"] == "soft_tissue (C 40, W 400)"
    lung = np.asarray(render_frame(img, window="lung")).astype(int)
    bone = np.asarray(render_frame(img, window=CT_WINDOW_PRESETS["bone"])).astype(int)
    hu = img.pixels[0]
    # Spot-check the LINEAR formula (PS3.3 C.11.2.1.2.1) for the lung window.
    expected = np.clip(((hu - (-600 - 0.5)) / (1500 - 1)) + 0.5, 0, 1) * 255 + 0.5
    assert np.abs(lung - np.floor(expected)).max() <= 1
    assert not np.array_equal(lung, bone)
    assert render_frame(img, window="Soft-Tissue").info["okaflow_window"].startswith("soft_tissue")


def test_window_below_and_above_saturate() -> None:
    img = _image(np.array([[[-2000, 0, 2000]]]), units="HU", modality=Modality.CT)
    out = np.asarray(render_frame(img, window=Window(center=0, width=100, function="LINEAR_EXACT")))
    assert out.tolist() == [[0, 128, 255]]


def test_explicit_beats_header_beats_auto(dicom_file: Files) -> None:
    img = load_image(dicom_file("MR_small.dcm"))  # header window C 600 W 1600
    assert resolve_window(img, None, img.pixels[0]) == img.header_windows[0]
    explicit = Window(center=100, width=50)
    assert resolve_window(img, explicit, img.pixels[0]) is explicit
    auto = resolve_window(img, "auto", img.pixels[0])
    assert isinstance(auto, Window)
    lo, hi = np.percentile(img.pixels[0], [0.5, 99.5])
    assert auto.lower == pytest.approx(lo)
    assert auto.upper == pytest.approx(hi)


def test_auto_window_for_images_without_a_window(dicom_file: Files) -> None:
    img = load_image(dicom_file("JPEG2000.dcm"))  # NM without a header window
    assert render_frame(img).info["okaflow_window"].startswith("auto 0.5–99.5 percentile")
    out = np.asarray(render_frame(img))
    assert out.min() == 0
    assert out.max() == 255


def test_window_errors(dicom_file: Files) -> None:
    mr = load_image(dicom_file("MR_small.dcm"))
    with pytest.raises(ConfigurationError, match="in HU"):
        render_frame(mr, window="lung")
    with pytest.raises(ConfigurationError, match="unknown window"):
        render_frame(mr, window="sunset")
    with pytest.raises(ConfigurationError, match="1 header window"):
        render_frame(mr, window="header:3")
    with pytest.raises(ValueError, match="width"):
        Window(center=0, width=0)


def test_frames_and_the_middle(dicom_file: Files) -> None:
    img = load_image(dicom_file("examples_ybr_color.dcm"))
    middle = np.asarray(render_frame(img, frame="middle"))
    np.testing.assert_array_equal(middle, np.asarray(render_frame(img)))
    np.testing.assert_array_equal(middle, img.pixels[15].astype(np.uint8))
    np.testing.assert_array_equal(np.asarray(render_frame(img, frame=-1)), img.pixels[29].astype(np.uint8))
    with pytest.raises(IndexError, match="30 frame"):
        render_frame(img, frame=30)


def test_16bit_colour_is_scaled_from_its_depth(dicom_file: Files) -> None:
    img = load_image(dicom_file("SC_rgb_rle_16bit.dcm"))
    out = np.asarray(render_frame(img))
    assert out.dtype == np.uint8
    assert out.max() == 255


def test_montage_grid(dicom_file: Files) -> None:
    img = load_image(dicom_file("examples_ybr_color.dcm"))
    montage = render_montage(img, max_frames=9)
    assert montage.size == (3 * 320, 3 * 240)
    frames = montage.info["okaflow_frames"]
    assert len(frames) == 9
    assert frames[0] == 0
    assert frames[-1] == 29
    tile = np.asarray(montage)[240:480, 320:640]  # the fifth tile, row 1 column 1
    np.testing.assert_array_equal(tile, img.pixels[frames[4]].astype(np.uint8))
    single = load_image(dicom_file("CT_small.dcm"))
    np.testing.assert_array_equal(np.asarray(render_montage(single)), np.asarray(render_frame(single)))


@pytest.mark.parametrize(
    ("size", "resized", "canvas"),
    [
        ((512, 512), (518, 518), (518, 518)),  # nearest multiple of 14
        ((64, 64), (378, 378), (378, 378)),  # small: raised to the floor
        ((4000, 3000), (980, 728), (980, 728)),  # large: capped
        ((256, 1024), (252, 980), (378, 980)),  # too elongated: capped, then padded to the floor
        ((3, 3), (378, 378), (378, 378)),
    ],
)
def test_policy_sizes(size: tuple[int, int], resized: tuple[int, int], canvas: tuple[int, int]) -> None:
    assert policy_size(*size) == (resized, canvas)


def test_fit_to_policy_output_obeys_the_policy() -> None:
    policy = SizePolicy()
    for w, h in [(1, 1), (37, 999), (5000, 20), (640, 480), (980, 378), (2000, 2000)]:
        out = fit_to_policy(Image.new("L", (w, h), 200), policy)
        assert max(out.size) <= policy.max_side
        assert min(out.size) >= policy.min_side
        assert out.width % 14 == 0
        assert out.height % 14 == 0


def test_fit_to_policy_pads_with_black_and_centres() -> None:
    out = fit_to_policy(Image.new("L", (1024, 256), 255))
    arr = np.asarray(out)
    assert out.size == (980, 378)
    assert arr[0].max() == 0
    assert arr[-1].max() == 0
    assert arr[189].min() == 255  # the image, centred


def test_fit_without_padding_and_generation_policy() -> None:
    no_pad = fit_to_policy(Image.new("L", (1024, 256)), SizePolicy(pad_to_min=False))
    assert no_pad.size == (980, 252)
    generation = SizePolicy(max_side=GENERATION_MAX_SIDE, min_side=256, multiple=GENERATION_MULTIPLE)
    out = fit_to_policy(Image.new("RGB", (3000, 2000)), generation)
    assert out.size == (1024, 688)
    assert out.mode == "RGB"


def test_invalid_policy() -> None:
    with pytest.raises(ValueError, match="admits no size"):
        SizePolicy(max_side=400, min_side=399, multiple=14)


def test_render_for_model(dicom_file: Files) -> None:
    out = render_for_model(load_image(dicom_file("693_J2KI.dcm")), window="lung")
    assert out.size == (518, 518)
    assert out.mode == "L"
    assert out.info["okaflow_window"].startswith("lung")


def test_png_bytes_are_deterministic_and_carry_no_metadata() -> None:
    base = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8))
    noisy = base.copy()
    noisy.info.update({"dpi": (300, 300), "okaflow_window": "x", "Software": "scanner 1.0"})
    first, second = to_png_bytes(base), to_png_bytes(noisy)
    assert first == second
    assert b"pHYs" not in first
    assert b"tEXt" not in first
    assert b"tIME" not in first
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(first))), np.asarray(base))
