"""Series grouping and ordering on pydicom's DICOMDIR test study."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from okaflow._types import Modality
from okaflow.tools.imaging import MedicalImage, group_series, load_image, load_images, middle_image

ANGIO = [f"dicomdirtests/98892003/MR700/{n}" for n in (4467, 4528, 4558, 4588, 4618, 4648, 4678)]
PILOT = [f"dicomdirtests/98892003/MR2/{n}" for n in (4950, 4981, 5011)]


def test_series_are_grouped_and_sorted_by_instance_number(dicom_file: Callable[[str], Path]) -> None:
    # Interleave two series, in no particular order.
    names = [
        ANGIO[3],
        PILOT[1],
        ANGIO[0],
        ANGIO[6],
        PILOT[0],
        ANGIO[1],
        ANGIO[5],
        PILOT[2],
        ANGIO[2],
        ANGIO[4],
    ]
    images = load_images([dicom_file(n) for n in names])
    series = group_series(images)
    assert [len(s) for s in series] == [7, 3]  # in order of first appearance
    angio, pilot = series
    assert [i.instance_number for i in angio.images] == [1, 2, 3, 4, 5, 6, 7]
    assert [i.instance_number for i in pilot.images] == [1, 2, 3]
    assert angio.modality is Modality.MRI
    assert angio.series_number == 700
    assert angio.description == pydicom.dcmread(dicom_file(ANGIO[0])).SeriesDescription
    assert angio.series_uid == images[0].series_uid
    assert angio.key == angio.series_uid
    assert middle_image(angio).instance_number == 4
    assert middle_image(pilot).instance_number == 2


def test_slice_location_orders_images_without_instance_numbers(dicom_file: Callable[[str], Path]) -> None:
    images = load_images([dicom_file(n) for n in ANGIO])
    for image in images:
        image.instance_number = None
    ordered = group_series(images)[0].images
    locations = [i.slice_location for i in ordered]
    assert locations == sorted(locations)  # type: ignore[type-var]


def test_non_dicom_images_are_each_their_own_series(tmp_path: Path, dicom_file: Callable[[str], Path]) -> None:
    for name in ("a", "b"):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / f"{name}.png")
    images: list[MedicalImage] = [load_image(tmp_path / "a.png"), load_image(dicom_file("CT_small.dcm"))]
    images.append(load_image(tmp_path / "b.png"))
    series = group_series(images)
    assert len(series) == 3
    assert series[0].series_uid is None
    assert series[0].key == "Image/a"
    assert series[1].modality is Modality.CT
    assert middle_image(series[2]).id == "Image/b"
