"""DICOM header de-identification: the PS3.15 Annex E Basic Application Level Confidentiality Profile.

The action table (which attribute is removed, emptied, replaced or has its UID replaced) is the
standard's Table E.1-1 as packaged by ``dicom-anonymizer`` (edition 2026c); the actions themselves are
applied here, because a shared case needs them to be *consistent* (see :class:`Pseudonymizer`):

- **U** (UIDs): replaced by keyed ``2.25.`` UIDs, the same in every file, so series and references hold;
- **dates** (DA/DT) the profile would replace or empty are shifted instead — the profile's "Retain
  Longitudinal Temporal Information with Modified Dates" option; times are kept (the shift is whole days);
- **PN**: pseudonym names; **identifiers** (PatientID, AccessionNumber, …): pseudonyms shared with FHIR;
- **D** (dummy), **Z** (empty), **X** (remove) as the table says; where it offers a choice, the
  strictest one that keeps the object readable (remove, else empty);
- private attributes are removed (the profile's default);
- Patient Identity Removed = YES and the De-identification Method (Code Sequence: 113100 basic profile,
  113107 modified dates) are written, so any viewer can tell.

Pixel data is not altered. A file whose header says its pixels carry burned-in annotation cannot be
de-identified by a header profile, so it is refused (:class:`~okaflow.DeidentificationError`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from okaflow._errors import DeidentificationError, MissingExtraError
from okaflow.tools.deid._pseudonyms import Pseudonymizer

__all__ = ["PROFILE_EDITION", "deidentify_dicom"]

PROFILE_EDITION = "2026c"
# DeidentificationMethod is LO (at most 64 characters); the method codes (113100, 113107) say the rest.
_METHOD = "okaflow: PS3.15 Basic Profile, Retain Modified Dates, pseudonyms"

# Identifiers that FHIR may hold too: one pseudonym for both.
_IDENTIFIERS = {
    "PatientID",
    "OtherPatientIDs",
    "IssuerOfPatientID",
    "AccessionNumber",
    "StudyID",
    "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest",
    "RequestedProcedureID",
    "ScheduledProcedureStepID",
    "PerformedProcedureStepID",
}
# The profile's choice codes, strictest that keeps the object valid first.
_CHOICES = {
    "D": "D",
    "Z": "Z",
    "X": "X",
    "U": "U",
    "Z_D": "Z",
    "X_Z": "X",
    "X_D": "X",
    "X_Z_D": "X",
    "X_Z_U_STAR": "U",
}
_DUMMY = {"DS": "0", "IS": "0", "AS": "000Y", "CS": "ANONYMIZED", "UR": "", "AE": "ANONYMIZED"}
_NUMERIC = {"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT"}


@cache
def _table() -> tuple[dict[tuple[int, int], str], list[tuple[int, int, int, int, str]]]:
    """Table E.1-1 as ``{(group, element): action}`` plus masked repeating-group rows."""
    try:
        from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
    except ImportError:
        raise MissingExtraError("deid", feature="DICOM de-identification", missing="dicom-anonymizer") from None
    tables = dicom_anonymization_database_selector(f"dicomfields_{PROFILE_EDITION}")
    exact: dict[tuple[int, int], str] = {}
    masked: list[tuple[int, int, int, int, str]] = []
    for category, action in _CHOICES.items():
        for row in tables[f"{category}_TAGS"]:
            if len(row) == 2:
                exact[(row[0], row[1])] = action
            else:
                masked.append((row[0], row[1], row[2], row[3], action))
    return exact, masked


def _action(group: int, element: int) -> str | None:
    exact, masked = _table()
    found = exact.get((group, element))
    if found is not None:
        return found
    for g, e, gmask, emask, action in masked:
        if group & gmask == g & gmask and element & emask == e & emask:
            return action
    return None


def deidentify_dicom(source: Path, target: Path, pseudonyms: Pseudonymizer) -> None:
    """Write a de-identified copy of the DICOM file ``source`` to ``target``.

    Raises:
        DeidentificationError: The file is not readable DICOM, or says its pixels carry burned-in text.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(source)
    except (InvalidDicomError, OSError, ValueError) as exc:
        raise DeidentificationError(
            f"not a DICOM file okaflow can de-identify ({exc})",
            source=source,
            hint="leave it out of the shared case, or convert it to DICOM",
        ) from None
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        raise DeidentificationError(
            "its header says the pixels carry burned-in annotation, which a header profile cannot remove",
            source=source,
            hint="leave this image out of the shared case, or clean its pixels first and set BurnedInAnnotation to NO",
        )
    ds.remove_private_tags()
    _walk(ds, pseudonyms)
    if ds.file_meta:
        _walk(ds.file_meta, pseudonyms)
    _mark(ds)
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target, enforce_file_format=False)


def _walk(ds: Any, pseudonyms: Pseudonymizer) -> None:
    """Apply the profile to every attribute of ``ds``, in nested sequences too."""
    for elem in list(ds):
        tag = elem.tag
        action = _action(tag.group, tag.element)
        if elem.VR == "SQ":
            if action == "X":
                del ds[tag]
                continue
            for item in elem.value:
                _walk(item, pseudonyms)
            if action == "Z":
                elem.value = []
            continue
        if action is None:
            continue
        handle = _handler(elem, action, pseudonyms)
        if handle is None:
            del ds[tag]
        else:
            handle(elem)


def _handler(elem: Any, action: str, pseudonyms: Pseudonymizer) -> Callable[[Any], None] | None:
    """How to treat one attribute; None: remove it."""
    vr, keyword = elem.VR, elem.keyword
    if vr in ("DA", "DT"):
        # Modified Dates option: move the date instead of replacing, emptying or removing it.
        return lambda e: _set(e, lambda v: pseudonyms.shift_dicom_date(v, vr))
    if action == "X":
        return None
    if vr == "TM":
        return lambda e: None
    if action == "U" or vr == "UI":
        return lambda e: _set(e, pseudonyms.uid)
    if keyword in _IDENTIFIERS:
        return lambda e: _set(e, pseudonyms.identifier)
    if vr == "PN":
        role = "Patient" if keyword.startswith("Patient") else "Person"
        return lambda e: _set(e, lambda v: pseudonyms.dicom_person_name(v, role))
    if action == "Z":
        return lambda e: setattr(e, "value", None if vr in _NUMERIC else "")
    # D: a dummy value of the right type.
    if vr in _NUMERIC or vr.startswith("O"):
        return lambda e: setattr(e, "value", None if vr.startswith("O") else 0)
    return lambda e: setattr(e, "value", _DUMMY.get(vr, "ANONYMIZED"))


def _set(elem: Any, change: Callable[[str], str]) -> None:
    from pydicom.multival import MultiValue

    value = elem.value
    if value in (None, ""):
        return
    if isinstance(value, MultiValue | list):
        elem.value = [change(str(v)) for v in value]
    else:
        elem.value = change(str(value))


def _mark(ds: Any) -> None:
    from pydicom.dataset import Dataset

    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = _METHOD
    codes = []
    for value, meaning in (
        ("113100", "Basic Application Confidentiality Profile"),
        ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = codes
