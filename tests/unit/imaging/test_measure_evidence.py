"""Measurements match numpy on the same pixels; evidence states them verbatim."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest

from okaflow.tools.imaging import HU_BANDS, image_evidence, load_image, measure_image, measurement_evidence

Files = Callable[[str], Path]


def test_ct_measurements(dicom_file: Files) -> None:
    img = load_image(dicom_file("CT_small.dcm"))
    hu = img.pixels[0].astype(np.float64)
    m = measure_image(img)
    assert (m.rows, m.columns, m.frames, m.frames_measured) == (128, 128, 1, 1)
    assert m.units == "HU"
    assert m.channel == "value"
    assert m.min == hu.min()
    assert m.max == hu.max()
    assert m.mean == pytest.approx(hu.mean())
    assert m.std == pytest.approx(hu.std())
    assert m.percentiles["p50"] == pytest.approx(np.percentile(hu, 50))
    row_mm, col_mm = img.pixel_spacing_mm or (0, 0)
    assert m.width_mm == pytest.approx(128 * col_mm)
    assert m.height_mm == pytest.approx(128 * row_mm)
    assert m.hu_bands is not None
    assert sum(m.hu_bands.values()) == pytest.approx(1.0)
    assert m.hu_bands["air"] == pytest.approx(float((hu < -900).mean()))
    assert m.hu_bands["bone"] == pytest.approx(float((hu >= 300).mean()))
    assert set(m.hu_bands) == {name for name, *_ in HU_BANDS} | {"other"}


def test_non_ct_has_no_hu_bands_and_colour_uses_luma(dicom_file: Files) -> None:
    assert measure_image(load_image(dicom_file("MR_small.dcm"))).hu_bands is None
    us = load_image(dicom_file("examples_ybr_color.dcm"))
    m = measure_image(us, frame=3)
    assert m.channel == "luma"
    assert m.frame == 3
    assert m.frames == 30
    assert m.frames_measured == 1
    rgb = us.pixels[3].astype(np.float64)
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    assert m.mean == pytest.approx(luma.mean(), rel=1e-5)
    assert measure_image(us).frames_measured == 30


def test_image_evidence(dicom_file: Files) -> None:
    path = dicom_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    img = load_image(path)
    ev = image_evidence(img)
    assert ev.id == img.id
    assert ev.kind == "image"
    assert ev.summary.startswith("CT image 128×128 px (0.66×0.66 mm pixels)")
    assert f"study date {img.study_date}" in ev.summary
    assert ev.time == img.study_date
    assert ev.data["sop_uid"] == ds.SOPInstanceUID
    assert ev.data["units"] == "HU"
    assert "patient_id" not in ev.data  # no identifiers in evidence


def test_measurement_evidence_states_the_numbers(dicom_file: Files) -> None:
    img = load_image(dicom_file("CT_small.dcm"), image_id="Image/ct1")
    m = measure_image(img)
    items = measurement_evidence(img, m)
    ids = [e.id for e in items]
    assert ids == [
        "Measurement/ct1/size",
        "Measurement/ct1/intensity",
        "Measurement/ct1/percentiles",
        "Measurement/ct1/hu_bands",
    ]
    assert all(e.kind == "measurement" for e in items)
    size, intensity, percentiles, bands = items
    side = round(128 * (img.pixel_spacing_mm or (0, 0))[0], 1)
    assert size.summary.startswith(f"Image size 128×128 px, field of view {side}×{side} mm (pixel spacing 0.66×0.66")
    stats = intensity.data
    for key, label in (("min", "min"), ("max", "max"), ("mean", "mean"), ("std", "SD")):
        assert f"{label} {stats[key]} HU" in intensity.summary
    assert stats["mean"] == round(m.mean, 1)
    assert f"p50 {percentiles.data['percentiles']['p50']} HU" in percentiles.summary
    assert f"air (< -900 HU) {bands.data['percent']['air']}%" in bands.summary
    assert "not a segmentation" in bands.summary


def test_frame_measurements_have_their_own_ids(dicom_file: Files) -> None:
    img = load_image(dicom_file("examples_ybr_color.dcm"), image_id="Image/us")
    items = measurement_evidence(img, measure_image(img, frame=2))
    assert [e.id for e in items] == [
        "Measurement/us/size-frame2",
        "Measurement/us/intensity-frame2",
        "Measurement/us/percentiles-frame2",
    ]
    assert "Intensity of frame 2, luma (0–255)" in items[1].summary
