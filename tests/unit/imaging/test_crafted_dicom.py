"""Crafted DICOM files for the header features the bundled files lack."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import MRImageStorage

from okaflow.tools.imaging import Window, load_image, measure_image, render_frame

MakeDs = Callable[..., Dataset]
WriteDs = Callable[..., Path]


def _item(**elements: object) -> Dataset:
    item = Dataset()
    for keyword, value in elements.items():
        setattr(item, keyword, value)
    return item


def _lut(descriptor: list[int], data: list[int], **elements: object) -> Dataset:
    # LUTData's VR is ambiguous (US or OW); write it as OW bytes like most modalities do.
    item = _item(**elements)
    item.add_new(0x00283002, "US", descriptor)  # LUTDescriptor
    item.add_new(0x00283006, "OW", np.asarray(data, dtype="<u2").tobytes())  # LUTData
    return item


def test_rescale_slope_and_intercept(make_ds: MakeDs, write_ds: WriteDs) -> None:
    raw = np.arange(12, dtype=np.uint16).reshape(3, 4) * 100
    img = load_image(write_ds(make_ds(raw, RescaleSlope=2, RescaleIntercept=-100)))
    np.testing.assert_array_equal(img.pixels[0], raw.astype(np.float32) * 2 - 100)
    assert img.units == "HU"
    assert img.metadata["rescale"] == [[2.0, -100.0]]


def test_rescale_on_mr_has_no_unit(make_ds: MakeDs, write_ds: WriteDs, ramp: np.ndarray) -> None:
    ds = make_ds(ramp, modality="MR", sop_class=MRImageStorage, RescaleSlope=0.5, RescaleIntercept=0)
    img = load_image(write_ds(ds))
    np.testing.assert_allclose(img.pixels[0], ramp * 0.5)
    assert img.units is None


def test_rescale_type_names_the_unit(make_ds: MakeDs, write_ds: WriteDs, ramp: np.ndarray) -> None:
    ds = make_ds(ramp, modality="MR", RescaleSlope=1, RescaleIntercept=0, RescaleType="ADC")
    assert load_image(write_ds(ds)).units == "ADC"


def test_modality_lut_sequence(make_ds: MakeDs, write_ds: WriteDs) -> None:
    raw = np.array([[0, 1], [2, 3]], dtype=np.uint16)
    lut = _lut([4, 0, 16], [10, 20, 30, 40], ModalityLUTType="OD")
    img = load_image(write_ds(make_ds(raw, modality="CR", ModalityLUTSequence=[lut])))
    np.testing.assert_array_equal(img.pixels[0], [[10, 20], [30, 40]])
    assert img.units == "OD"
    assert img.metadata["modality_lut_sequence"] is True


def test_multi_valued_header_windows_with_explanations(make_ds: MakeDs, write_ds: WriteDs, ramp: np.ndarray) -> None:
    ds = make_ds(
        ramp,
        RescaleSlope=1,
        RescaleIntercept=0,
        WindowCenter=[40, 400],
        WindowWidth=[400, 1800],
        WindowCenterWidthExplanation=["SOFT", "BONE"],
    )
    img = load_image(write_ds(ds))
    assert img.header_windows == (
        Window(center=40, width=400, name="SOFT"),
        Window(center=400, width=1800, name="BONE"),
    )
    default = np.asarray(render_frame(img))
    np.testing.assert_array_equal(default, np.asarray(render_frame(img, window=img.header_windows[0])))
    np.testing.assert_array_equal(
        np.asarray(render_frame(img, window="header:1")),
        np.asarray(render_frame(img, window=Window(400, 1800))),
    )


def test_voi_lut_function_is_read(make_ds: MakeDs, write_ds: WriteDs, ramp: np.ndarray) -> None:
    ds = make_ds(ramp, WindowCenter=0, WindowWidth=500, VOILUTFunction="SIGMOID")
    img = load_image(write_ds(ds))
    assert img.header_windows[0].function == "SIGMOID"
    out = np.asarray(render_frame(img)).astype(int)
    expected = np.floor(255 / (1 + np.exp(-4 * ramp / 500)) + 0.5)  # PS3.3 C.11.2.1.3.1
    assert np.abs(out - expected).max() <= 1


def test_voi_lut_sequence_is_applied_at_render_time(make_ds: MakeDs, write_ds: WriteDs) -> None:
    raw = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)
    # An inverting 12-bit VOI LUT: the rendering must follow the table, not a linear window.
    lut = _lut([4096, 0, 12], list(range(4095, -1, -1)), LUTExplanation="INVERT")
    img = load_image(write_ds(make_ds(raw, modality="MR", bits_stored=12, VOILUTSequence=[lut])))
    assert len(img.voi_luts) == 1
    assert img.voi_luts[0].explanation == "INVERT"
    np.testing.assert_array_equal(img.pixels[0], raw)  # pixels stay in modality units
    out = np.asarray(render_frame(img))
    expected = np.floor((4095 - raw) * (255 / 4095) + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    assert render_frame(img).info["okaflow_window"].startswith("INVERT")


def test_header_window_beats_voi_lut(make_ds: MakeDs, write_ds: WriteDs) -> None:
    raw = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)
    lut = _lut([4096, 0, 12], list(range(4095, -1, -1)))
    ds = make_ds(raw, modality="MR", bits_stored=12, VOILUTSequence=[lut], WindowCenter=2048, WindowWidth=4096)
    img = load_image(write_ds(ds))
    out = np.asarray(render_frame(img))
    assert out[0, 0] < out[-1, -1]  # the linear header window, not the inverting table
    voi = np.asarray(render_frame(img, window="voi"))
    assert voi[0, 0] > voi[-1, -1]


def test_monochrome1_renders_inverted(make_ds: MakeDs, write_ds: WriteDs) -> None:
    raw = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)
    common = {"modality": "CR", "bits_stored": 12, "WindowCenter": 2048, "WindowWidth": 4096}
    mono1 = load_image(write_ds(make_ds(raw, photometric="MONOCHROME1", **common), "m1.dcm"))
    mono2 = load_image(write_ds(make_ds(raw, photometric="MONOCHROME2", **common), "m2.dcm"))
    assert mono1.photometric == "MONOCHROME1"
    np.testing.assert_array_equal(mono1.pixels, mono2.pixels)  # stored values are not touched
    one, two = np.asarray(render_frame(mono1)).astype(int), np.asarray(render_frame(mono2)).astype(int)
    np.testing.assert_array_equal(one + two, np.full_like(one, 255))
    assert one[0, 0] == 255  # the lowest stored value is white in MONOCHROME1


def test_monochrome1_real_cr(dicom_file: Callable[[str], Path]) -> None:
    img = load_image(dicom_file("dicomdirtests/77654033/CR1/6154"))
    assert img.photometric == "MONOCHROME1"
    out = np.asarray(render_frame(img, window="full")).astype(int)
    assert out[img.pixels[0] == img.pixels[0].min()].min() == 255


def test_pixel_padding_is_excluded_from_measurements(make_ds: MakeDs, write_ds: WriteDs) -> None:
    raw = np.full((8, 8), 1024, dtype=np.int16)
    raw[:, :2] = -2000  # outside the reconstruction circle
    ds = make_ds(raw, RescaleSlope=1, RescaleIntercept=-1024, PixelPaddingValue=-2000)
    ds["PixelPaddingValue"].VR = "SS"
    img = load_image(write_ds(ds))
    assert img.metadata["pixel_padding_value"] == -3024
    m = measure_image(img)
    assert m.padding_pixels == 16
    assert m.pixel_count == 48
    assert m.min == m.max == 0.0


def test_enhanced_multiframe_functional_groups(make_ds: MakeDs, write_ds: WriteDs) -> None:
    raw = np.stack([np.full((4, 4), 100, np.uint16), np.full((4, 4), 100, np.uint16)])
    shared = _item(PixelMeasuresSequence=[_item(PixelSpacing=[0.5, 0.25], SliceThickness=2.0)])
    frames = [
        _item(PixelValueTransformationSequence=[_item(RescaleSlope=1, RescaleIntercept=-1000, RescaleType="HU")]),
        _item(PixelValueTransformationSequence=[_item(RescaleSlope=2, RescaleIntercept=-1000, RescaleType="HU")]),
    ]
    ds = make_ds(raw, SharedFunctionalGroupsSequence=[shared], PerFrameFunctionalGroupsSequence=frames)
    img = load_image(write_ds(ds))
    assert img.pixel_spacing_mm == (0.5, 0.25)
    assert img.slice_thickness_mm == 2.0
    assert img.pixels[0, 0, 0] == -900
    assert img.pixels[1, 0, 0] == -800
    assert img.physical_size_mm == (1.0, 2.0)  # 4 columns × 0.25 mm, 4 rows × 0.5 mm


def test_ultrasound_region_calibration_gives_spacing(make_ds: MakeDs, write_ds: WriteDs) -> None:
    region = _item(PhysicalUnitsXDirection=3, PhysicalUnitsYDirection=3, PhysicalDeltaX=0.01, PhysicalDeltaY=0.02)
    ds = make_ds(np.zeros((4, 4), np.uint8), modality="US", SequenceOfUltrasoundRegions=[region])
    img = load_image(write_ds(ds))
    assert img.pixel_spacing_mm == pytest.approx((0.2, 0.1))
    assert img.metadata["pixel_spacing_source"] == "SequenceOfUltrasoundRegions"


def test_malformed_optional_element_becomes_a_warning(make_ds: MakeDs, write_ds: WriteDs, ramp: np.ndarray) -> None:
    path = write_ds(make_ds(ramp, RescaleSlope=1, RescaleIntercept=0, InstanceNumber="424242"))
    # pydicom refuses to write a bad IS, so patch the bytes: InstanceNumber becomes "4242A2".
    path.write_bytes(path.read_bytes().replace(b"424242", b"4242A2"))
    img = load_image(path)
    assert img.instance_number is None
    assert any("InstanceNumber" in w for w in img.warnings)
