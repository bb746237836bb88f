"""Reading a STOW-RS answer: which instances the server stored, which it refused, and why.

A STOW-RS response (PS3.18 §10.5.3) is a data set whose Referenced SOP Sequence lists what was stored and
whose Failed SOP Sequence lists what was not, each failure with a Failure Reason (a DIMSE-style status).
Servers answer 200 when everything was stored, 202 when some instances were stored with warnings or
failures, and 409 when none could be. A store is all-or-nothing for okaflow: a report's SR and its
images belong together, so any refused instance is an error that names every refused one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from okaflow._errors import ClinicalRejectedError, ClinicalResponseError

if TYPE_CHECKING:
    import pydicom

__all__ = [
    "DUPLICATE_SOP_INSTANCE",
    "duplicate_instances",
    "failed_in_body",
    "failed_instances",
    "raise_for_failures",
    "rejected",
    "stored_instances",
]

#: "Duplicate SOP Instance": archives that refuse a second copy say so for an instance they already hold,
#: which is what a second publish of the same run (same UIDs) sends. It counts as stored.
DUPLICATE_SOP_INSTANCE = 0x0111

# Failure reasons a STOW-RS server sends (PS3.18 Table I.2-1 and the Storage Service statuses).
_REASONS = {
    0x0110: "processing failure",
    DUPLICATE_SOP_INSTANCE: "duplicate SOP instance",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
    0xA700: "out of resources",
    0xA900: "data set does not match SOP class",
    0xC000: "cannot understand",
    0xC122: "referenced transfer syntax not supported",
}


def failed_instances(answer: pydicom.Dataset) -> dict[str, str]:
    """``{SOP Instance UID: reason}`` for every item of the answer's Failed SOP Sequence, but instances
    refused as duplicates (the server holds them already)."""
    failed: dict[str, str] = {}
    for item in answer.get("FailedSOPSequence") or []:
        uid = str(item.get("ReferencedSOPInstanceUID", "?"))
        code = item.get("FailureReason")
        if code is not None and int(code) == DUPLICATE_SOP_INSTANCE:
            continue
        failed[uid] = _reason(int(code)) if code is not None else "no reason given"
    return failed


def duplicate_instances(answer: pydicom.Dataset) -> list[str]:
    """The instances the answer refused as duplicates: already on the server."""
    return [
        str(item.get("ReferencedSOPInstanceUID", "?"))
        for item in answer.get("FailedSOPSequence") or []
        if item.get("FailureReason") is not None and int(item.FailureReason) == DUPLICATE_SOP_INSTANCE
    ]


def stored_instances(answer: pydicom.Dataset) -> list[str]:
    """The SOP Instance UIDs of the answer's Referenced SOP Sequence, in its order."""
    return [str(item.ReferencedSOPInstanceUID) for item in answer.get("ReferencedSOPSequence") or []]


def failed_in_body(body: str) -> dict[str, str]:
    """The failures named in an error response's DICOM JSON body (a 409's), or none if it holds none."""
    import pydicom

    try:
        answer = pydicom.Dataset.from_json(json.loads(body))
    except (ValueError, TypeError, KeyError):
        return {}
    return failed_instances(answer)


def raise_for_failures(
    answer: pydicom.Dataset, sent: Sequence[str], *, url: str, status_code: int, response: object
) -> list[str]:
    """The stored UIDs, in the order sent; a typed error if any sent instance was refused or is missing.

    Raises:
        ClinicalRejectedError: The answer's Failed SOP Sequence names instances (a 202 with failures).
        ClinicalResponseError: The answer neither stores nor refuses an instance that was sent.
    """
    failed = failed_instances(answer)
    if failed:
        raise rejected(failed, url=url, status_code=status_code, response=response, body=str(answer))
    stored = set(stored_instances(answer)) | set(duplicate_instances(answer))
    missing = [uid for uid in sent if uid not in stored]
    if missing:
        raise ClinicalResponseError(
            f"{url} answered the store without naming {len(missing)} of {len(sent)} instances: {missing[:5]}",
            system="DICOMweb",
            url=url,
            hint="the server may not have stored them: check it, then publish again (the UIDs do not change)",
        )
    return list(sent)


def rejected(
    failed: dict[str, str], *, url: str, status_code: int, response: object, body: str
) -> ClinicalRejectedError:
    """The error naming every refused instance and the server's reason for each."""
    named = "; ".join(f"{uid}: {reason}" for uid, reason in sorted(failed.items()))
    return ClinicalRejectedError(
        f"POST {url} answered {status_code}: {len(failed)} instance(s) not stored ({named})",
        system="DICOMweb",
        url=url,
        status_code=status_code,
        response=response,
        body=body,
        hint="see the reasons; instances the server did store keep their UIDs, so publishing again is safe",
    )


def _reason(code: int) -> str:
    known = _REASONS.get(code) or ("out of resources" if code & 0xFF00 == 0xA700 else None)
    return f"0x{code:04X} {known}" if known else f"0x{code:04X}"
