"""C-FIND (Study Root) identifiers for studies, series and instances, and their answers as okaflow's models.

The return keys asked for are those QIDO-RS asks for in :class:`~okaflow.tools.pacs.DICOMwebClient`, so
both clients fill the same fields. UIDs in answers are checked before they can become file names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from okaflow.tools.pacs._models import STUDY_FIELDS

if TYPE_CHECKING:
    import pydicom

__all__ = ["instances_query", "series_query", "studies_query"]

_STUDY_RETURN_KEYS = ("StudyInstanceUID", *STUDY_FIELDS)
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
