"""C-FIND (Study Root) identifiers for studies, series and instances, and their answers as okaflow's models.

The return keys asked for are those QIDO-RS asks for in :class:`~okaflow.tools.pacs.DICOMwebClient`, so
both clients fill the same fields. UIDs in answers are checked before they can become file names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from okaflow.tools.pacs._models import Instance, Series, Study, check_uid, int_of, text_of

if TYPE_CHECKING:
    import pydicom

__all__ = ["instance_from", "instances_query", "series_from", "series_query", "studies_query", "study_from"]

_STUDY_RETURN_KEYS = (
    "StudyInstanceUID",
    "PatientID",
    "AccessionNumber",
    "StudyDate",
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
_SERIES_RETURN_KEYS = (
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "NumberOfSeriesRelatedInstances",
)
_INSTANCE_RETURN_KEYS = ("SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber")


def _identifier(level: str, matching: Mapping[str, str], returned: tuple[str, ...]) -> pydicom.Dataset:
    from pydicom import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in returned:
        setattr(ds, keyword, "")  # an empty value asks the PACS to return the key
    for keyword, value in matching.items():
        setattr(ds, keyword, value)
    return ds


def studies_query(asked: Mapping[str, str], modality: str | None) -> tuple[pydicom.Dataset, str]:
    """The study-level identifier for exact ``asked`` keys, and the audit resource naming it."""
    matching = dict(asked)
    if modality:
        matching["ModalitiesInStudy"] = modality
    return _identifier("STUDY", matching, _STUDY_RETURN_KEYS), f"studies?{urlencode(matching)}"


def series_query(study_uid: str) -> tuple[pydicom.Dataset, str]:
    """The series-level identifier for one study, and its audit resource."""
    query = _identifier("SERIES", {"StudyInstanceUID": study_uid}, _SERIES_RETURN_KEYS)
    return query, f"studies/{study_uid}/series"


def instances_query(study_uid: str, series_uid: str | None) -> tuple[pydicom.Dataset, str]:
    """The image-level identifier for a study or one of its series, and its audit resource."""
    matching = {"StudyInstanceUID": study_uid}
    if series_uid:
        matching["SeriesInstanceUID"] = series_uid
    resource = f"studies/{study_uid}" + (f"/series/{series_uid}" if series_uid else "") + "/instances"
    return _identifier("IMAGE", matching, _INSTANCE_RETURN_KEYS), resource


def _uid(ds: pydicom.Dataset, keyword: str, url: str, default: str | None = None) -> str:
    return check_uid(ds.get(keyword) or default, keyword, url, system="DIMSE")


def study_from(ds: pydicom.Dataset, url: str) -> Study:
    """A study-level C-FIND answer as a :class:`Study`."""
    modalities = ds.get("ModalitiesInStudy") or []
    return Study(
        study_uid=_uid(ds, "StudyInstanceUID", url),
        patient_id=text_of(ds, "PatientID"),
        accession_number=text_of(ds, "AccessionNumber"),
        study_date=text_of(ds, "StudyDate"),
        description=text_of(ds, "StudyDescription"),
        modalities=tuple(str(m) for m in (modalities if isinstance(modalities, list | tuple) else [modalities])),
        series_count=int_of(ds, "NumberOfStudyRelatedSeries"),
        instance_count=int_of(ds, "NumberOfStudyRelatedInstances"),
    )


def series_from(ds: pydicom.Dataset, url: str, study_uid: str) -> Series:
    """A series-level C-FIND answer as a :class:`Series`."""
    return Series(
        study_uid=_uid(ds, "StudyInstanceUID", url, study_uid),
        series_uid=_uid(ds, "SeriesInstanceUID", url),
        modality=text_of(ds, "Modality"),
        number=int_of(ds, "SeriesNumber"),
        description=text_of(ds, "SeriesDescription"),
        instance_count=int_of(ds, "NumberOfSeriesRelatedInstances"),
    )


def instance_from(ds: pydicom.Dataset, url: str, study_uid: str, series_uid: str | None) -> Instance:
    """An image-level C-FIND answer as an :class:`Instance`."""
    return Instance(
        study_uid=_uid(ds, "StudyInstanceUID", url, study_uid),
        series_uid=_uid(ds, "SeriesInstanceUID", url, series_uid),
        sop_instance_uid=_uid(ds, "SOPInstanceUID", url),
        sop_class_uid=text_of(ds, "SOPClassUID"),
        number=int_of(ds, "InstanceNumber"),
    )
