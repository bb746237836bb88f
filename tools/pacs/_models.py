"""Studies, series and instances as a PACS describes them (QIDO-RS or C-FIND), and the rules both clients share.

Both :class:`~okaflow.tools.pacs.DICOMwebClient` and :class:`~okaflow.tools.pacs.DIMSEClient` answer with these
models, check UIDs before they become file names, and match study keys exactly (:func:`exact_study_keys`,
:func:`study_matches`), so :func:`okaflow.pull_case` can use either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from okaflow._errors import ClinicalResponseError, ConfigurationError

if TYPE_CHECKING:
    import pydicom

__all__ = [
    "STUDY_FIELDS",
    "Instance",
    "Series",
    "Study",
    "check_uid",
    "dataset_from_json",
    "exact_study_keys",
    "instance_file",
    "instance_from",
    "int_of",
    "series_from",
    "study_from",
    "study_matches",
    "text_of",
]

UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def check_uid(value: object, what: str, url: str, *, system: str = "DICOMweb") -> str:
    """``value`` if it is a well-formed DICOM UID (digits and dots, at most 64 characters).

    UIDs from a server become file names, so anything else (``..``, ``/``) is refused, naming the
    ``system`` (``"DICOMweb"``, ``"DIMSE"``) and ``url`` that sent it.
    """
    text = str(value or "")
    if len(text) > 64 or not UID_PATTERN.match(text):
        raise ClinicalResponseError(
            f"{url} gave a malformed {what} {text[:80]!r}",
            system=system,
            url=url,
            hint="the server's data is not valid DICOM: a UID is digits and dots, at most 64 characters",
        )
    return text


@dataclass(frozen=True)
class Study:
    """One study as the PACS describes it (QIDO-RS or C-FIND)."""

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


def instance_file(folder: Path, series_uid: str, sop_instance_uid: str) -> Path:
    """Where an instance is kept under ``folder``: ``<series UID>/<SOP instance UID>.dcm``, as every
    download and receive writes it. The UIDs become path parts: pass checked ones (:func:`check_uid`)."""
    return folder / series_uid / f"{sop_instance_uid}.dcm"


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


#: What a study search asks the PACS to return beside the Study Instance UID (QIDO-RS fields, C-FIND keys).
STUDY_FIELDS = (
    "StudyDate",
    "StudyDescription",
    "AccessionNumber",
    "PatientID",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)


def _uid(ds: pydicom.Dataset, keyword: str, url: str, system: str, default: str | None = None) -> str:
    # A lower-level answer may leave the parent's UID out or empty (C-FIND return keys often are):
    # the parent asked about stands in for it.
    return check_uid(ds.get(keyword) or default, keyword, url, system=system)


def study_from(ds: pydicom.Dataset, url: str, *, system: str) -> Study:
    """A study-level search answer (QIDO-RS or C-FIND) as a :class:`Study`."""
    modalities = ds.get("ModalitiesInStudy") or []
    return Study(
        study_uid=_uid(ds, "StudyInstanceUID", url, system),
        patient_id=text_of(ds, "PatientID"),
        accession_number=text_of(ds, "AccessionNumber"),
        study_date=text_of(ds, "StudyDate"),
        description=text_of(ds, "StudyDescription"),
        modalities=tuple(str(m) for m in (modalities if isinstance(modalities, list | tuple) else [modalities])),
        series_count=int_of(ds, "NumberOfStudyRelatedSeries"),
        instance_count=int_of(ds, "NumberOfStudyRelatedInstances"),
    )


def series_from(ds: pydicom.Dataset, url: str, study_uid: str, *, system: str) -> Series:
    """A series-level search answer as a :class:`Series` of the study asked about."""
    return Series(
        study_uid=_uid(ds, "StudyInstanceUID", url, system, study_uid),
        series_uid=_uid(ds, "SeriesInstanceUID", url, system),
        modality=text_of(ds, "Modality"),
        number=int_of(ds, "SeriesNumber"),
        description=text_of(ds, "SeriesDescription"),
        instance_count=int_of(ds, "NumberOfSeriesRelatedInstances"),
    )


def instance_from(ds: pydicom.Dataset, url: str, study_uid: str, series_uid: str | None, *, system: str) -> Instance:
    """An instance-level search answer as an :class:`Instance` of the study (and series) asked about."""
    return Instance(
        study_uid=_uid(ds, "StudyInstanceUID", url, system, study_uid),
        series_uid=_uid(ds, "SeriesInstanceUID", url, system, series_uid),
        sop_instance_uid=_uid(ds, "SOPInstanceUID", url, system),
        sop_class_uid=text_of(ds, "SOPClassUID"),
        number=int_of(ds, "InstanceNumber"),
    )


def exact_study_keys(*, patient_id: str | None, accession_number: str | None, study_uid: str | None) -> dict[str, str]:
    """The study keys asked for, by DICOM keyword; a value a PACS would match as a pattern is refused.

    ``*`` and ``?`` are wildcards in both QIDO-RS and C-FIND, ``\\`` separates a list of values, and an
    empty value matches everything: each could bring back another patient's study.
    """
    keys = {"PatientID": patient_id, "AccessionNumber": accession_number, "StudyInstanceUID": study_uid}
    asked = {k: v for k, v in keys.items() if v is not None}
    for key, value in asked.items():
        if not value or any(c in value for c in "*?\\"):
            raise ConfigurationError(f"{key} {value!r} would match as a pattern", hint="pass an exact value")
    return asked


def study_matches(study: Study, asked: Mapping[str, str]) -> bool:
    """Whether ``study`` has exactly the asked values (a server may match fuzzily or ignore case)."""
    have = {
        "PatientID": study.patient_id,
        "AccessionNumber": study.accession_number,
        "StudyInstanceUID": study.study_uid,
    }
    return all(have[key] == value for key, value in asked.items())
