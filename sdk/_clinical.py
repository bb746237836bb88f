"""Typed errors for PACS and EHR servers, shared by the FHIR (httpx) and DICOMweb (requests) clients.

One mapping from an HTTP failure to a :class:`~okaflow.ClinicalSystemError` subclass, whichever HTTP
library saw it: the status decides the class, the server's own words (an OperationOutcome's
diagnostics, an OAuth ``error_description``, the body's start) go into the message, and the hint says
what to do. :class:`HttpxClinicalErrors` plugs it into the retry layer in ``model_backend._http``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from okaflow._errors import (
    ClinicalAuthenticationError,
    ClinicalConnectionError,
    ClinicalNotFoundError,
    ClinicalPermissionDeniedError,
    ClinicalRejectedError,
    ClinicalStatusError,
    ClinicalSystemError,
    ClinicalTimeoutError,
)
from okaflow._server_text import server_said
from okaflow._urls import without_query

if TYPE_CHECKING:
    import httpx

__all__ = ["HttpxClinicalErrors", "connection_error", "status_error"]

_MAX_SAID = 400
_REFUSED_AS_SENT = "the server refused the request as sent: see its message"
_ENV_URL = {"FHIR": " (or $OKAFLOW_FHIR_URL)", "DICOMweb": " (or $OKAFLOW_DICOMWEB_URL)"}


def status_error(
    *,
    system: str,
    method: str,
    url: str,
    status_code: int,
    reason: str,
    body: str,
    response: object,
    attempts: int = 1,
    credentials: bool = False,
) -> ClinicalStatusError:
    """The typed error for an HTTP error status from a PACS or EHR server.

    Args:
        system: ``"FHIR"``, ``"DICOMweb"`` or ``"SMART"`` (a token endpoint), named in the message.
        method, url, status_code, reason, body: What was asked and what answered.
        response: The library's response object, kept on the error.
        attempts: How many attempts were made (named when more than one).
        credentials: Whether the request carried credentials (changes the 401 hint).
    """
    url = without_query(url)
    said = server_said(body, _MAX_SAID)
    answered = f"{method} {url} answered {status_code} {reason}".rstrip()
    if attempts > 1:
        answered += f" after {attempts} attempts"
    message = f"{answered}: {said}" if said else answered
    cls: type[ClinicalStatusError] = ClinicalStatusError
    if status_code == 401:
        cls = ClinicalAuthenticationError
        hint = (
            "the server refused the credentials: check the token (expired? for this server?) or the SMART client"
            if credentials
            else f"the server wants credentials: pass auth= (a bearer token or SMART backend-services auth) "
            f"or set $OKAFLOW_{system.upper()}_TOKEN"
        )
    elif status_code == 403:
        cls = ClinicalPermissionDeniedError
        hint = "the credentials are valid but not for this: ask for the scopes it needs (e.g. system/*.read)"
    elif status_code == 404:
        cls = ClinicalNotFoundError
        hint = (
            "no token endpoint there: check token_url= (or the server's .well-known/smart-configuration)"
            if system == "SMART"
            else "check the id and the base URL (a FHIR base usually ends in /fhir or /R4, DICOMweb in /dicom-web)"
        )
    elif status_code in (400, 409, 412, 422):
        cls = ClinicalRejectedError
        hint = (
            _REFUSED_AS_SENT
            if method == "GET"
            else "the server refused what was sent (see its message); nothing of this request was stored"
        )
    elif status_code == 429:
        hint = "the server is rate-limiting: lower concurrency or raise max_retries"
    elif status_code >= 500:
        hint = "the server failed, also after retries: check its logs"
    else:
        hint = _REFUSED_AS_SENT
    return cls(message, system=system, url=url, status_code=status_code, response=response, body=body, hint=hint)


def connection_error(*, system: str, url: str, exc: BaseException, attempts: int, timeout: bool) -> ClinicalSystemError:
    """The typed error for a server that could not be reached or did not answer in time."""
    url = without_query(url)
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    detail = f"{type(exc).__name__}: {exc or 'no detail'}"
    if timeout:
        return ClinicalTimeoutError(
            f"{url} did not answer in time{tries} ({detail})",
            system=system,
            url=url,
            hint="raise timeout= if the server is slow, or check that it is healthy",
        )
    return ClinicalConnectionError(
        f"cannot reach {url}{tries} ({detail})",
        system=system,
        url=url,
        hint=f"is the {system} server running? check the URL{_ENV_URL.get(system, '')}, host and port",
    )


@dataclass(frozen=True)
class HttpxClinicalErrors:
    """An ``ErrorMapper`` for the retry layer: httpx failures become clinical-system errors."""

    system: str
    credentials: bool = False

    def status_error(self, response: httpx.Response, *, attempts: int) -> ClinicalSystemError:
        request = response.request
        return status_error(
            system=self.system,
            method=request.method,
            url=str(request.url),
            status_code=response.status_code,
            reason=response.reason_phrase,
            body=response.text,
            response=response,
            attempts=attempts,
            credentials=self.credentials,
        )

    def transport_error(self, exc: httpx.TransportError, *, url: str, attempts: int) -> ClinicalSystemError:
        import httpx

        return connection_error(
            system=self.system, url=url, exc=exc, attempts=attempts, timeout=isinstance(exc, httpx.TimeoutException)
        )
