"""Modality recognition from DICOM tags and from hints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from okaflow._errors import ConfigurationError
from okaflow._types import Modality
from okaflow.tools.imaging import MODALITY_ALIASES, detect_modality, load_image, parse_modality


def _ds(**elements: object) -> Dataset:
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        ("MR", Modality.MRI),
        ("mri", Modality.MRI),
        ("xray chest", Modality.CXR),
        ("Chest X-Ray", Modality.CXR),
        ("CXR", Modality.CXR),
        ("ct", Modality.CT),
        ("colour fundus", Modality.CFP),
        ("H&E", Modality.HIS),
        ("whole-slide", Modality.HIS),
        ("OCT", Modality.OCT),
        ("ultrasound", Modality.US),
        ("Endoscopy", Modality.ENDOSCOPY),
        (Modality.OCT, Modality.OCT),
    ],
)
def test_hint_aliases(hint: str | Modality, expected: Modality) -> None:
    assert parse_modality(hint) is expected


def test_every_enum_value_is_its_own_alias() -> None:
    for modality in Modality:
        assert parse_modality(modality.value.lower()) is modality
        assert modality in MODALITY_ALIASES


def test_unknown_hint_lists_accepted_values() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_modality("spectroscopy")
    text = str(info.value)
    assert "spectroscopy" in text
    for modality in Modality:
        assert modality.value in text


@pytest.mark.parametrize(
    ("elements", "expected", "source"),
    [
        ({"Modality": "CT"}, Modality.CT, "dicom:Modality=CT"),
        ({"Modality": "MR"}, Modality.MRI, "dicom:Modality=MR"),
        ({"Modality": "US"}, Modality.US, "dicom:Modality=US"),
        ({"Modality": "CR", "BodyPartExamined": "CHEST"}, Modality.CXR, "dicom:Modality=CR+chest"),
        ({"Modality": "DX", "StudyDescription": "XR THORAX PA"}, Modality.CXR, "dicom:Modality=DX+chest"),
        ({"Modality": "DX", "BodyPartExamined": "KNEE"}, Modality.OTHER, "dicom:Modality=DX (not chest)"),
        ({"Modality": "OP"}, Modality.CFP, "dicom:Modality=OP"),
        ({"Modality": "OPT"}, Modality.OCT, "dicom:Modality=OPT"),
        ({"Modality": "ES"}, Modality.ENDOSCOPY, "dicom:Modality=ES"),
        ({"Modality": "SM"}, Modality.HIS, "dicom:Modality=SM"),
        ({"Modality": "GM"}, Modality.HIS, "dicom:Modality=GM"),
        ({"Modality": "NM"}, Modality.OTHER, "dicom:Modality=NM"),
        (
            {"Modality": "XC", "SeriesDescription": "Fundus OD"},
            Modality.CFP,
            "dicom:Modality=XC+description 'Fundus'",
        ),
        ({"Modality": "OT", "StudyDescription": "Colonoscopy"}, Modality.ENDOSCOPY, None),
        ({"Modality": "SC", "SeriesDescription": "H&E slide"}, Modality.HIS, None),
        ({"Modality": "OT", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.77.1.6"}, Modality.HIS, None),
        ({}, Modality.OTHER, "default"),
    ],
)
def test_detect_from_tags(elements: dict[str, str], expected: Modality, source: str | None) -> None:
    modality, how = detect_modality(_ds(**elements))
    assert modality is expected
    if source is not None:
        assert how == source


def test_hint_wins_over_tags() -> None:
    assert detect_modality(_ds(Modality="OT"), hint="fundus") == (Modality.CFP, "hint")
    assert detect_modality(None) == (Modality.OTHER, "default")


def test_real_files(dicom_file: Callable[[str], Path]) -> None:
    assert load_image(dicom_file("CT_small.dcm")).modality is Modality.CT
    assert load_image(dicom_file("examples_rgb_color.dcm")).modality is Modality.US
    cr = load_image(dicom_file("dicomdirtests/77654033/CR1/6154"))  # a cervical spine CR
    assert cr.modality is Modality.OTHER
    assert cr.modality_source == "dicom:Modality=CR (not chest)"


def test_a_hint_that_contradicts_the_tags_is_noted(dicom_file: Callable[[str], Path]) -> None:
    img = load_image(dicom_file("CT_small.dcm"), modality_hint="MRI")
    assert img.modality is Modality.MRI
    assert img.modality_source == "hint"
    assert any("overrides CT" in w for w in img.warnings)


def test_bad_hint_on_load(tmp_path: Path, make_ds: Callable[..., Dataset], write_ds: Callable[..., Path]) -> None:
    path = write_ds(make_ds(np.zeros((2, 2), np.uint8)))
    with pytest.raises(ConfigurationError, match="unknown modality hint"):
        load_image(path, modality_hint="X")
