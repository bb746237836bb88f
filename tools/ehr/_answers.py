"""What a FHIR server's answers mean: a conditional read's result, a transaction-response's checks, and
the error for a patient the server does not have. Kept apart from the client's HTTP plumbing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from okaflow._errors import ClinicalNotFoundError, ClinicalResponseError, PatientNotFoundError

__all__ = ["ConditionalRead", "check_transaction_response", "patient_not_found"]


@dataclass(frozen=True)
class ConditionalRead:
    """The answer to a conditional read (:meth:`FHIRClient.read` with ``if_none_match`` / ``if_modified_since``).

    Attributes:
        resource: The resource as it is now; None when the server answered 304 Not Modified.
        not_modified: True when the copy the caller holds is still current (HTTP 304).
        etag: The version tag the server sent (``W/"3"``), for the next conditional read.
        last_modified: The server's ``Last-Modified`` header, if any.
    """

    resource: dict[str, Any] | None
    not_modified: bool
    etag: str | None = None
    last_modified: str | None = None

    @property
    def modified(self) -> bool:
        """True when the server sent a (newer) copy of the resource."""
        return not self.not_modified


def patient_not_found(exc: ClinicalNotFoundError, patient_id: str) -> PatientNotFoundError:
    return PatientNotFoundError(
        f"no Patient/{patient_id} on {exc.url.split('/Patient/')[0]}: {exc.message.split(': ', 1)[-1]}",
        patient_id=patient_id,
        url=exc.url,
        status_code=exc.status_code,
        response=exc.response,
        body=exc.body,
        hint="pass the server's resource id; find it from an MRN with FHIRClient.find_patient_ids(mrn)",
    )


def check_transaction_response(answer: dict[str, Any], sent: int, url: str) -> None:
    """Raise unless ``answer`` is a transaction-response Bundle with one 2xx entry per request sent."""
    problem = None
    entries = answer.get("entry") if isinstance(answer.get("entry"), list) else None
    if answer.get("resourceType") != "Bundle" or answer.get("type") != "transaction-response":
        problem = f"a {answer.get('resourceType')!r} of type {answer.get('type')!r}, not a transaction-response Bundle"
    elif entries is None or len(entries) != sent:
        problem = f"{len(entries or [])} response entries for {sent} requests"
    else:
        for index, entry in enumerate(entries):
            status = str(((entry or {}).get("response") or {}).get("status") or "")
            if not status.startswith("2"):
                problem = f"entry {index} has status {status or '(none)'!r}"
                break
    if problem is not None:
        raise ClinicalResponseError(
            f"POST {url} (transaction) answered {problem}",
            system="FHIR",
            url=url,
            hint="the server may have stored part of it: search for what was sent before sending it again",
        )
