"""What QIDO-RS says about studies, series and instances, read with pydicom from DICOM JSON."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from okaflow._errors import ClinicalResponseError

if TYPE_CHECKING:
    import pydicom

__all__ = ["Instance", "Series", "Study", "check_uid", "dataset_from_json", "int_of", "text_of"]

UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def check_uid(value: object, what: str, url: str) -> str:
    """``value`` if it is a well-formed DICOM UID (digits and dots, at most 64 characters).

    UIDs from a server become file names, so anything else (``..``, ``/``) is refused.
    """
    text = str(value or "")
    if len(text) > 64 or not UID_PATTERN.match(text):
        raise ClinicalResponseError(
            f"{url} gave a malformed {what} {text[:80]!r}",
            system="DICOMweb",
            url=url,
            hint="the server's data is not valid DICOM: a UID is digits and dots, at most 64 characters",
        )
    return text


@dataclass(frozen=True)
class Study:
    """One study as QIDO-RS describes it."""

    study_uid: str
    patient_id: str | None
    accession_number: str | None
    study_date: str | None
    description: str | None
    modalities: tuple[str, ...]
    series_count: int | None
    instance_count: int | None


@dataclass(frozen=True)
class Series:
    """One series of a study."""

    study_uid: str
    series_uid: str
    modality: str | None
    number: int | None
    description: str | None
    instance_count: int | None


@dataclass(frozen=True)
class Instance:
    """One instance (a DICOM object) of a series."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str | None
    number: int | None


def dataset_from_json(item: Mapping[str, Any], url: str) -> pydicom.Dataset:
    """One QIDO-RS result as a pydicom data set."""
    import pydicom

    try:
        return pydicom.Dataset.from_json(dict(item))
    except Exception as exc:  # pydicom raises several types for malformed DICOM JSON
        raise ClinicalResponseError(
            f"{url} answered DICOM JSON that pydicom cannot read ({type(exc).__name__}: {exc})",
            system="DICOMweb",
            url=url,
        ) from exc


def text_of(ds: pydicom.Dataset, keyword: str) -> str | None:
    """An element as text, None when absent or empty."""
    value = ds.get(keyword)
    return str(value) if value not in (None, "") else None


def int_of(ds: pydicom.Dataset, keyword: str) -> int | None:
    """An element as an int, None when absent, empty or not a number."""
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
