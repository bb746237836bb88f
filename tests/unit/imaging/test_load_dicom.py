"""Loading real DICOM files: units, colour, frames, header facts, and every error a user can meet."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import JPEGLSLossless

from okaflow._errors import (
    DICOMError,
    ImageError,
    ImageTooLargeError,
    MissingPixelDataError,
    UnsupportedImageError,
    UnsupportedTransferSyntaxError,
)
from okaflow._types import Modality
from okaflow.tools.imaging import load_image, load_images

Files = Callable[[str], Path]


def _raw(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path).pixel_array


def test_ct_small_is_in_hounsfield_units(dicom_file: Files) -> None:
    path = dicom_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    img = load_image(path)
    expected = _raw(path).astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert img.pixels.dtype == np.float32
    assert img.pixels.shape == (1, 128, 128)
    np.testing.assert_array_equal(img.pixels[0], expected.astype(np.float32))
    assert img.units == "HU"
    assert img.pixels.min() == pytest.approx(128 - 1024)
    assert img.modality is Modality.CT
    assert img.modality_source == "dicom:Modality=CT"


def test_ct_small_header_facts(dicom_file: Files) -> None:
    path = dicom_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    img = load_image(path)
    assert img.id == f"Image/{ds.SOPInstanceUID}"
    assert (img.study_uid, img.series_uid, img.sop_uid) == (
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
    )
    assert img.study_date == f"{ds.StudyDate[:4]}-{ds.StudyDate[4:6]}-{ds.StudyDate[6:]}"
    assert img.pixel_spacing_mm == pytest.approx(tuple(float(v) for v in ds.PixelSpacing))
    assert img.slice_thickness_mm == pytest.approx(float(ds.SliceThickness))
    assert img.instance_number == int(ds.InstanceNumber)
    assert img.slice_location == pytest.approx(float(ds.SliceLocation))
    assert img.format == "dicom"
    assert img.transfer_syntax == "Explicit VR Little Endian"
    assert img.metadata["pixel_spacing_source"] == "PixelSpacing"
    assert img.warnings == []


def test_image_id_can_be_given(dicom_file: Files) -> None:
    assert load_image(dicom_file("CT_small.dcm"), image_id="Image/ct-1").id == "Image/ct-1"


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
    ],
)
def test_lossless_mr_decodes_identically_in_every_transfer_syntax(dicom_file: Files, name: str) -> None:
    reference = load_image(dicom_file("MR_small.dcm"))
    other = load_image(dicom_file(name))
    assert other.transfer_syntax != reference.transfer_syntax or name == "MR_small_expb.dcm"
    np.testing.assert_array_equal(other.pixels, reference.pixels)
    assert other.modality is Modality.MRI
    assert other.header_windows == reference.header_windows


def test_compressed_ct_in_jpeg2000_is_rescaled(dicom_file: Files) -> None:
    path = dicom_file("693_J2KI.dcm")
    img = load_image(path)
    assert img.pixels.shape == (1, 512, 512)
    assert img.units == "HU"
    np.testing.assert_array_equal(img.pixels[0], _raw(path).astype(np.float32) - 1024)
    assert img.header_windows[0].center == 40
    assert img.header_windows[0].width == 100


def test_multiframe_ybr_jpeg_ultrasound_becomes_rgb_frames(dicom_file: Files) -> None:
    path = dicom_file("examples_ybr_color.dcm")
    img = load_image(path)
    assert img.pixels.shape == (30, 240, 320, 3)
    assert img.photometric == "RGB"
    assert img.metadata["photometric_interpretation_stored"] == "YBR_FULL_422"
    assert img.modality is Modality.US
    # pydicom's own RGB conversion is the reference.
    np.testing.assert_array_equal(img.pixels, _raw(path).astype(np.float32))


def test_uncompressed_ybr_full_422_is_converted_to_rgb(dicom_file: Files) -> None:
    ybr = load_image(dicom_file("SC_ybr_full_422_uncompressed.dcm"))
    rgb = load_image(dicom_file("SC_rgb_small_odd.dcm"))
    assert ybr.photometric == "RGB"
    assert ybr.pixels.shape == (1, 100, 100, 3)
    assert rgb.pixels.shape == (1, 3, 3, 3)


def test_ybr_jpeg_and_rgb_jpeg_of_the_same_picture_agree(dicom_file: Files) -> None:
    # dcmtk wrote the same test picture as RGB and as YBR_FULL JPEG: after conversion they match
    # up to JPEG loss.
    as_rgb = load_image(dicom_file("SC_rgb_dcmtk_+eb+cr.dcm")).pixels
    as_ybr = load_image(dicom_file("SC_rgb_dcmtk_+eb+cy+n1.dcm")).pixels
    assert float(np.abs(as_rgb - as_ybr).mean()) < 3.0


def test_palette_colour_goes_through_the_colour_lut(dicom_file: Files) -> None:
    path = dicom_file("examples_palette.dcm")
    img = load_image(path)
    ds = pydicom.dcmread(path)
    assert img.photometric == "RGB"
    assert img.pixels.shape == (1, 350, 800, 3)
    np.testing.assert_array_equal(img.pixels[0], apply_color_lut(ds.pixel_array, ds).astype(np.float32))
    assert img.bits_stored == 16  # the palette has 16-bit entries


def _segmented_palette(first_map: int) -> Dataset:
    """A 16-bit segmented palette (PS3.3 C.7.9.2): a discrete run, then a linear ramp, per channel."""
    ds = Dataset()
    ds.RedPaletteColorLookupTableDescriptor = [64, first_map, 16]
    for colour, start in (("Red", 0), ("Green", 1000), ("Blue", 60000)):
        discrete = [0, 4, start, start + 10, start + 20, start + 30]
        ramp = [1, 60, 65535 - start]  # linear from the last value to this one over 60 entries
        setattr(ds, f"Segmented{colour}PaletteColorLookupTableData", np.array(discrete + ramp, "<u2").tobytes())
    ds.set_original_encoding(False, True)
    return ds


@pytest.mark.parametrize(
    "values",
    [
        np.arange(-5, 80, dtype=np.int16).reshape(5, 17),  # below the first mapped value and past the last entry
        np.array([[3, 3], [3, 3]], dtype=np.uint16),  # one stored value
        np.array([[[0, 70], [9, 12]], [[63, 64], [8, 9]]], dtype=np.int32),  # frames
        np.array([[-100, 32700], [9, 12]] * 9000, dtype=np.int16),  # offsets past int16's range
    ],
)
def test_palette_lookup_matches_pydicom_per_pixel(values: np.ndarray) -> None:
    from okaflow.tools.imaging._dicom_values import to_rgb

    ds = _segmented_palette(first_map=8)
    rgb, bits = to_rgb(ds, values, "PALETTE COLOR", Path("made.dcm"), [])
    np.testing.assert_array_equal(rgb, apply_color_lut(values, ds))
    assert rgb.dtype == np.uint16 and bits == 16


def test_palette_with_a_value_span_wider_than_the_image_is_looked_up_per_pixel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from okaflow.tools.imaging import _dicom_values

    looked_up: list[npt.NDArray[Any]] = []

    def spy(arr: npt.NDArray[Any], ds: Any) -> npt.NDArray[Any]:
        looked_up.append(arr)
        return apply_color_lut(arr, ds)

    monkeypatch.setattr(_dicom_values, "apply_color_lut", spy)
    ds = _segmented_palette(first_map=0)
    values = np.array([[-(2**30), 2**30]], dtype=np.int64)  # a table over the span would need 2**31 rows
    rgb, _ = _dicom_values.to_rgb(ds, values, "PALETTE COLOR", Path("made.dcm"), [])
    np.testing.assert_array_equal(rgb, apply_color_lut(values, ds))
    assert len(looked_up) == 1 and looked_up[0] is values  # pydicom's lookup over the pixels, no table


def test_multiframe_rle_rgb_keeps_frames(dicom_file: Files) -> None:
    img = load_image(dicom_file("SC_rgb_rle_2frame.dcm"))
    assert img.pixels.shape == (2, 100, 100, 3)


def test_multiframe_grey_keeps_frames(dicom_file: Files) -> None:
    img = load_image(dicom_file("rtdose.dcm"))
    assert img.frames == 15
    assert not img.is_color


def test_recoverable_pydicom_warnings_are_kept_on_the_image(dicom_file: Files) -> None:
    # pytest turns warnings into errors here: none may escape the loader.
    img = load_image(dicom_file("MR_small_padded.dcm"))
    assert any("excess padding" in w for w in img.warnings)
    assert img.pixels.shape == (1, 64, 64)


def test_truncated_pixel_data_is_a_dicom_error_at_the_pixel_data_tag(dicom_file: Files) -> None:
    with pytest.raises(DICOMError) as info:
        load_image(dicom_file("MR_truncated.dcm"))
    assert not isinstance(info.value, MissingPixelDataError)
    assert info.value.location == "(7FE0,0010) PixelData"
    assert "less than expected" in str(info.value)
    assert info.value.source
    assert info.value.source.endswith("MR_truncated.dcm")


@pytest.mark.parametrize("name", ["rtplan.dcm", "rtplan_truncated.dcm", "test-SR.dcm", "waveform_ecg.dcm"])
def test_objects_without_pixels(dicom_file: Files, name: str) -> None:
    with pytest.raises(MissingPixelDataError) as info:
        load_image(dicom_file(name))
    assert info.value.location == "(7FE0,0010) PixelData"
    assert "SOP class" in info.value.reason
    assert info.value.hint


def test_corrupt_compressed_data_is_a_dicom_error(dicom_file: Files) -> None:
    with pytest.raises(DICOMError, match="could not decode the JPEG Extended"):
        load_image(dicom_file("JPEG-lossy.dcm"))


def test_malformed_number_of_frames_names_the_tag(dicom_file: Files) -> None:
    with pytest.raises(DICOMError) as info:
        load_image(dicom_file("badVR.dcm"))
    assert info.value.location == "(0028,0008) NumberOfFrames"


def test_missing_decoder_names_the_syntax_and_the_extra(dicom_file: Files, monkeypatch: pytest.MonkeyPatch) -> None:
    decoder = get_decoder(JPEGLSLossless)
    # Simulate an installation without the codecs extra: the decoder has no usable plugin.
    monkeypatch.setattr(decoder, "_available", {})
    with pytest.raises(UnsupportedTransferSyntaxError) as info:
        load_image(dicom_file("MR_small_jpeg_ls_lossless.dcm"))
    assert "JPEG-LS Lossless" in str(info.value)
    assert info.value.hint == "pip install 'okaflow[codecs]'"
    assert info.value.location == "(0002,0010) TransferSyntaxUID"


def test_unknown_transfer_syntax(
    make_ds: Callable[..., Dataset], write_ds: Callable[..., Path], ramp: np.ndarray
) -> None:
    ds = make_ds(ramp)
    ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.8.498.999"  # a private, unknown syntax
    with pytest.raises(UnsupportedTransferSyntaxError, match="no decoder exists"):
        load_image(write_ds(ds))


def test_decompression_bomb_is_refused_before_decoding(
    make_ds: Callable[..., Dataset], write_ds: Callable[..., Path]
) -> None:
    ds = make_ds(np.zeros((4, 4), dtype=np.uint16))
    ds.Rows, ds.Columns = 60000, 60000  # 3.6 GP declared, 32 bytes present
    with pytest.raises(ImageTooLargeError) as info:
        load_image(write_ds(ds))
    assert "60000×60000 = 3,600,000,000 pixels" in str(info.value)
    assert "max_pixels=" in (info.value.hint or "")
    assert "Rows" in (info.value.location or "")


def test_total_pixel_budget_over_frames(dicom_file: Files) -> None:
    with pytest.raises(ImageTooLargeError, match="30 frames") as info:
        load_image(dicom_file("examples_ybr_color.dcm"), max_total_pixels=1_000_000)
    assert "max_total_pixels=" in (info.value.hint or "")
    assert load_image(dicom_file("examples_ybr_color.dcm"), max_pixels=76_800).frames == 30


def test_missing_pixel_data_in_a_crafted_file(make_ds: Callable[..., Dataset], write_ds: Callable[..., Path]) -> None:
    with pytest.raises(MissingPixelDataError, match=r"CT Image Storage.*probably truncated"):
        load_image(write_ds(make_ds(None)))


def test_missing_rows_names_the_tag(
    make_ds: Callable[..., Dataset], write_ds: Callable[..., Path], ramp: np.ndarray
) -> None:
    ds = make_ds(ramp)
    del ds.Rows
    with pytest.raises(DICOMError) as info:
        load_image(write_ds(ds))
    assert info.value.location == "(0028,0010) Rows"


def test_file_without_preamble_or_meta_is_read(
    make_ds: Callable[..., Dataset], write_ds: Callable[..., Path], ramp: np.ndarray
) -> None:
    path = write_ds(make_ds(ramp, RescaleSlope=1, RescaleIntercept=0), "bare.dcm", file_format=False)
    assert path.read_bytes()[128:132] != b"DICM"
    img = load_image(path)
    np.testing.assert_array_equal(img.pixels[0], ramp.astype(np.float32))
    assert any("assumed Explicit VR Little Endian" in w for w in img.warnings)


def test_header_only_truncation_is_a_dicom_error(dicom_file: Files, tmp_path: Path) -> None:
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(dicom_file("CT_small.dcm").read_bytes()[:700])
    with pytest.raises(DICOMError, match="probably truncated"):
        load_image(cut)


def test_not_dicom_with_a_dicom_name(tmp_path: Path) -> None:
    fake = tmp_path / "scan.dcm"
    fake.write_text("this is a text file, not a scan\n" * 10)
    with pytest.raises(DICOMError, match="not a DICOM file"):
        load_image(fake)


def test_unknown_format(tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("hello\n" * 40)
    with pytest.raises(UnsupportedImageError):
        load_image(other)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "absent.dcm")
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)


def test_load_images_keeps_order(dicom_file: Files) -> None:
    paths = [dicom_file("MR_small.dcm"), dicom_file("CT_small.dcm")]
    assert [i.modality for i in load_images(paths)] == [Modality.MRI, Modality.CT]
