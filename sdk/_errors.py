"""okaflow's error tree: every failure a user can act on has its own class.

::

    OkaflowError
    ├── ConfigurationError          a setting is missing or contradictory
    │   ├── MissingExtraError       an optional dependency group is not installed
    │   ├── MissingWeightsError     a feature needs model weights that are not on this machine (FID)
    │   ├── GenerationTaskError     the generator (or its pipeline) cannot do the requested task
    │   └── GenerationSizeError     a requested or implied image size breaks the generator's limits
    ├── InputError                  a case input cannot be used (names the file and where in it)
    │   ├── CaseError               a case folder / case.json is malformed or incomplete
    │   ├── FHIRError               a FHIR bundle cannot be used
    │   │   ├── FHIRParseError      not JSON, wrong resourceType, fails the FHIR model
    │   │   └── FHIRReferenceError  a reference points at nothing in the bundle
    │   ├── ImageError              an image cannot be used
    │   │   ├── DICOMError          DICOM file unreadable (truncated, not DICOM, bad tag)
    │   │   │   ├── MissingPixelDataError
    │   │   │   └── UnsupportedTransferSyntaxError
    │   │   ├── ImageTooLargeError  over the pixel budget (decompression-bomb guard)
    │   │   └── UnsupportedImageError
    │   └── DeidentificationError   an input cannot be de-identified safely, or an identifier survived
    ├── BackendError                a model or generation backend failed
    │   ├── BackendOutputError      the backend answered, but not with what was asked
    │   │   └── BackendSchemaError  the answer is JSON but does not validate against the asked schema
    │   ├── BackendImageLimitError  more images than the backend takes in one prompt
    │   ├── BackendConnectionError  the backend's server cannot be reached (refused, reset, DNS)
    │   ├── BackendTimeoutError     the backend's server did not answer in time
    │   └── BackendStatusError      the server answered with an HTTP error status
    │       ├── BackendBadRequestError        400: refused as sent
    │       │   └── BackendContextLengthError 400: the prompt and max_tokens exceed the context
    │       ├── BackendAuthenticationError    401: missing or wrong API key
    │       ├── BackendPermissionDeniedError  403: key valid, but not for this
    │       ├── BackendNotFoundError          404: wrong URL or model name
    │       ├── BackendRateLimitedError       429: still rate-limited after retries
    │       └── BackendServerError            5xx: the server failed, still after retries
    ├── ClinicalSystemError         a PACS or EHR server (FHIR REST, DICOMweb, DIMSE) failed or refused
    │   ├── ClinicalConnectionError the server cannot be reached (refused, reset, DNS)
    │   ├── ClinicalTimeoutError    the server did not answer in time
    │   ├── ClinicalResponseError   the server answered 2xx with something unusable (not JSON, not a Bundle)
    │   ├── ClinicalStatusError     the server answered with an HTTP error status
    │   │   ├── ClinicalAuthenticationError  401: no, wrong or expired credentials
    │   │   │   └── TokenRequestError        the authorization server refused a token (SMART backend services)
    │   │   ├── ClinicalPermissionDeniedError 403: authenticated, but not allowed (scopes)
    │   │   ├── ClinicalNotFoundError        404: no such resource or endpoint
    │   │   │   └── PatientNotFoundError     the patient id is unknown to the FHIR server
    │   │   └── ClinicalRejectedError        400/409/412/422: refused as sent (invalid resource, conflict)
    │   ├── AssociationError        a DICOM association was rejected or aborted (DIMSE)
    │   └── DIMSEStatusError        a DIMSE service answered a failure status (C-FIND, C-GET, C-MOVE, C-STORE)
    ├── PublishError                a report cannot be written to a sink as asked (nothing was written)
    ├── AgentError                  the agent graph cannot run
    │   └── RunDirectoryError       the run directory is unusable (exists and is not a run)
    │       └── RunAwaitingApprovalError  the run waits at its approval gate: answer it, do not resume it
    └── ReplayError                 a recorded run cannot be replayed as recorded
        ├── ReplayInputsChangedError  the case files or okaflow's version differ from the record
        └── ReplayMismatchError     the replay asked the model for something the record does not hold

Input errors carry ``source`` (the file), ``location`` (JSON path or DICOM tag) and ``hint``
(what to do); ``str(error)`` joins them into one readable line. HTTP status errors carry
``status_code``, ``request``, ``response`` and the response ``body`` text. Clinical-system errors
carry ``system`` (``"FHIR"``, ``"DICOMweb"``) and ``url``; their status errors also carry ``status_code``,
``response`` (an ``httpx`` or, for DICOMweb, a ``requests`` response) and ``body``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

    from okaflow._run import RunResult

__all__ = [
    "AgentError",
    "AssociationError",
    "BackendAuthenticationError",
    "BackendBadRequestError",
    "BackendConnectionError",
    "BackendContextLengthError",
    "BackendError",
    "BackendImageLimitError",
    "BackendNotFoundError",
    "BackendOutputError",
    "BackendPermissionDeniedError",
    "BackendRateLimitedError",
    "BackendSchemaError",
    "BackendServerError",
    "BackendStatusError",
    "BackendTimeoutError",
    "CaseError",
    "ClinicalAuthenticationError",
    "ClinicalConnectionError",
    "ClinicalNotFoundError",
    "ClinicalPermissionDeniedError",
    "ClinicalRejectedError",
    "ClinicalResponseError",
    "ClinicalStatusError",
    "ClinicalSystemError",
    "ClinicalTimeoutError",
    "ConfigurationError",
    "DICOMError",
    "DIMSEStatusError",
    "DeidentificationError",
    "FHIRError",
    "FHIRParseError",
    "FHIRReferenceError",
    "GenerationSizeError",
    "GenerationTaskError",
    "ImageError",
    "ImageTooLargeError",
    "InputError",
    "MissingExtraError",
    "MissingPixelDataError",
    "MissingWeightsError",
    "OkaflowError",
    "PatientNotFoundError",
    "PublishError",
    "ReplayError",
    "ReplayInputsChangedError",
    "ReplayMismatchError",
    "RunAwaitingApprovalError",
    "RunDirectoryError",
    "TokenRequestError",
    "UnsupportedImageError",
    "UnsupportedTransferSyntaxError",
]


class OkaflowError(Exception):
    """Root of every error okaflow raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} — {self.hint}"


class ConfigurationError(OkaflowError):
    """A setting is missing, malformed or contradictory."""


class MissingExtraError(ConfigurationError):
    """An optional dependency group is needed; the message names the install line."""

    def __init__(self, extra: str, *, feature: str, missing: str) -> None:
        super().__init__(
            f"{feature} needs the optional dependency {missing!r}, which is not installed",
            hint=f"pip install 'okaflow[{extra}]'",
        )
        self.extra = extra
        self.missing = missing


class MissingWeightsError(ConfigurationError):
    """A feature needs model weights that okaflow cannot download; the message says which and where to pass them."""


class GenerationTaskError(ConfigurationError):
    """The generator cannot do the requested task (e.g. super-resolution with a text-to-image pipeline).

    Attributes:
        task: The requested task. backend: The generator's name. supported: The tasks it can do.
    """

    def __init__(self, message: str, *, task: str, backend: str, supported: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint or f"{backend} can do: {', '.join(supported) or 'nothing'}")
        self.task = task
        self.backend = backend
        self.supported = supported


class GenerationSizeError(ConfigurationError):
    """An image size breaks the generator's limits (UniMedVL: at most 1024 px a side, multiples of 16).

    Attributes:
        size: The offending ``(width, height)``. max_side: multiple: The limits it breaks.
    """

    def __init__(
        self, message: str, *, size: tuple[int, int], max_side: int, multiple: int, hint: str | None = None
    ) -> None:
        super().__init__(
            message,
            hint=hint
            or f"ask for at most {max_side} px a side in multiples of {multiple}, or build the generator "
            "with the limits its model really has (limits=GenerationLimits(...))",
        )
        self.size = size
        self.max_side = max_side
        self.multiple = multiple


class InputError(OkaflowError):
    """A case input cannot be used. Names the file, the place in it, and the fix."""

    def __init__(
        self,
        message: str,
        *,
        source: str | Path | None = None,
        location: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.source = str(source) if source is not None else None
        self.location = location
        where = ""
        if self.source and location:
            where = f"{self.source} at {location}: "
        elif self.source:
            where = f"{self.source}: "
        elif location:
            where = f"at {location}: "
        super().__init__(f"{where}{message}", hint=hint)
        self.reason = message


class CaseError(InputError):
    """A case folder or case.json is malformed or incomplete."""


class FHIRError(InputError):
    """A FHIR bundle or resource cannot be used."""


class FHIRParseError(FHIRError):
    """Not JSON, not a Bundle, or a resource that fails the FHIR model."""


class FHIRReferenceError(FHIRError):
    """A reference in the bundle points at a resource that is not there."""


class ImageError(InputError):
    """An image file cannot be used."""


class DICOMError(ImageError):
    """A DICOM file cannot be read (truncated, not DICOM, malformed element)."""


class MissingPixelDataError(DICOMError):
    """The DICOM object has no Pixel Data (e.g. an SR or a header-only file)."""


class UnsupportedTransferSyntaxError(DICOMError):
    """The pixel data is compressed with a syntax no installed decoder handles."""


class ImageTooLargeError(ImageError):
    """The image exceeds the pixel budget (a guard against decompression bombs)."""


class UnsupportedImageError(ImageError):
    """The file is not an image format okaflow reads."""


class DeidentificationError(InputError):
    """De-identification cannot promise what it must: an input it cannot clean (pixels with burned-in
    text, a file type it cannot read), or an original identifier still found in what would be shared.
    The message names the file and the kind of identifier, never the identifier itself."""


class BackendError(OkaflowError):
    """A model or generation backend failed."""

    def __init__(self, message: str, *, backend: str | None = None, hint: str | None = None) -> None:
        super().__init__(message if backend is None else f"[{backend}] {message}", hint=hint)
        self.backend = backend


class BackendOutputError(BackendError):
    """The backend answered, but the answer is not what was asked (e.g. fails the JSON schema)."""

    def __init__(
        self, message: str, *, backend: str | None = None, raw: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, backend=backend, hint=hint)
        self.raw = raw


class BackendSchemaError(BackendOutputError):
    """The answer parsed, but does not validate against the schema or model it was asked for.

    Attributes:
        raw: The answer's text. errors: The validation errors (pydantic's ``errors()`` form).
    """

    def __init__(
        self,
        message: str,
        *,
        backend: str | None = None,
        raw: str | None = None,
        errors: list[dict[str, object]] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, backend=backend, raw=raw, hint=hint)
        self.errors = errors or []


class BackendImageLimitError(BackendError):
    """A request carries more images than the backend accepts in one prompt (raised before sending).

    Attributes:
        count: Images in the request. limit: The most the backend takes.
    """

    def __init__(self, message: str, *, count: int, limit: int, backend: str | None = None) -> None:
        super().__init__(
            message,
            backend=backend,
            hint="send fewer images per request; the OKA agent splits them into batches by itself",
        )
        self.count = count
        self.limit = limit


class BackendConnectionError(BackendError):
    """The backend's server cannot be reached: connection refused or reset, DNS failure, dropped stream."""


class BackendTimeoutError(BackendError):
    """The backend's server did not connect or answer within the configured timeout."""


class BackendStatusError(BackendError):
    """The backend's server answered with an HTTP error status.

    Attributes:
        status_code: The HTTP status code.
        request: The :class:`httpx.Request` that was sent (the last attempt's).
        response: The :class:`httpx.Response` that answered.
        body: The response body as text.
    """

    def __init__(
        self,
        message: str,
        *,
        request: httpx.Request,
        response: httpx.Response,
        body: str,
        backend: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, backend=backend, hint=hint)
        self.status_code = response.status_code
        self.request = request
        self.response = response
        self.body = body


class BackendBadRequestError(BackendStatusError):
    """400: the server refused the request as sent (e.g. the prompt exceeds the context length)."""


class BackendContextLengthError(BackendBadRequestError):
    """400: the prompt (text and image tokens) plus ``max_tokens`` exceed the model's context length."""


class BackendAuthenticationError(BackendStatusError):
    """401: the API key is missing or wrong."""


class BackendPermissionDeniedError(BackendStatusError):
    """403: the API key is valid but may not use this model or endpoint."""


class BackendNotFoundError(BackendStatusError):
    """404: the URL or the model name does not exist on the server."""


class BackendRateLimitedError(BackendStatusError):
    """429: the server is still rate-limiting after every retry."""


class BackendServerError(BackendStatusError):
    """5xx: the server failed, and kept failing through every retry."""


class ClinicalSystemError(OkaflowError):
    """A PACS or EHR server (FHIR REST, DICOMweb) failed or refused; the message names the URL.

    Attributes:
        system: Which kind of server: ``"FHIR"``, ``"DICOMweb"``, ``"SMART"`` (a token endpoint).
        url: The URL that was asked (without credentials).
    """

    def __init__(self, message: str, *, system: str, url: str, hint: str | None = None) -> None:
        super().__init__(f"[{system}] {message}", hint=hint)
        self.system = system
        self.url = url


class ClinicalConnectionError(ClinicalSystemError):
    """The server cannot be reached: connection refused or reset, DNS failure."""


class ClinicalTimeoutError(ClinicalSystemError):
    """The server did not connect or answer within the configured timeout."""


class ClinicalResponseError(ClinicalSystemError):
    """The server answered with a success status but an unusable body: not JSON, not the resource asked
    for, a paging link that loops or leaves the server."""


class ClinicalStatusError(ClinicalSystemError):
    """The server answered with an HTTP error status.

    Attributes:
        status_code: The HTTP status code.
        response: The response: an :class:`httpx.Response` (FHIR, SMART), a ``requests.Response`` (DICOMweb).
        body: The response body as text.
    """

    def __init__(
        self,
        message: str,
        *,
        system: str,
        url: str,
        status_code: int,
        response: object,
        body: str,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, system=system, url=url, hint=hint)
        self.status_code = status_code
        self.response = response
        self.body = body


class ClinicalAuthenticationError(ClinicalStatusError):
    """401: the request carried no credentials, or wrong or expired ones."""


class TokenRequestError(ClinicalAuthenticationError):
    """The authorization server refused to issue an access token (SMART backend services).

    Attributes:
        error: The OAuth error code (``invalid_client``, ``invalid_scope`` …), when the server sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status_code: int,
        response: object,
        body: str,
        error: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(
            message, system="SMART", url=url, status_code=status_code, response=response, body=body, hint=hint
        )
        self.error = error


class ClinicalPermissionDeniedError(ClinicalStatusError):
    """403: the credentials are valid but do not allow this request (e.g. the token's scopes)."""


class ClinicalNotFoundError(ClinicalStatusError):
    """404: the resource or endpoint does not exist on the server."""


class PatientNotFoundError(ClinicalNotFoundError):
    """The FHIR server has no Patient with the id asked for.

    Attributes:
        patient_id: The id that was asked for.
    """

    def __init__(
        self,
        message: str,
        *,
        patient_id: str,
        url: str,
        status_code: int,
        response: object,
        body: str,
        hint: str | None = None,
    ) -> None:
        super().__init__(
            message, system="FHIR", url=url, status_code=status_code, response=response, body=body, hint=hint
        )
        self.patient_id = patient_id


class ClinicalRejectedError(ClinicalStatusError):
    """400/409/412/422: the server refused the request as sent: an invalid resource, a failed business rule,
    a version conflict. The server's own words (an OperationOutcome) are in the message."""


class AssociationError(ClinicalSystemError):
    """A DICOM association could not be used: rejected by the peer (wrong called/calling AE title, no
    accepted presentation context) or aborted. A peer that cannot be reached is a
    :class:`ClinicalConnectionError`, one that does not answer a :class:`ClinicalTimeoutError`.

    Attributes:
        reason: The peer's rejection or abort reason, in words, when it gave one.
    """

    def __init__(self, message: str, *, url: str, reason: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, system="DIMSE", url=url, hint=hint)
        self.reason = reason


class DIMSEStatusError(ClinicalSystemError):
    """A DIMSE service answered with a failure (or refused) status.

    Attributes:
        service: ``"C-FIND"``, ``"C-GET"``, ``"C-MOVE"``, ``"C-STORE"``, ``"C-ECHO"``.
        status: The DIMSE status code (e.g. ``0xA701``: out of resources; ``0xA801``: move destination unknown).
    """

    def __init__(self, message: str, *, url: str, service: str, status: int, hint: str | None = None) -> None:
        super().__init__(message, system="DIMSE", url=url, hint=hint)
        self.service = service
        self.status = status


class PublishError(OkaflowError):
    """A report cannot be written to a sink as asked, and nothing was written: the run has nothing the sink
    can attach to (no DICOM study for a PACS, no patient for an EHR), or what okaflow built for the sink
    fails validation. A server that refuses what was sent is a :class:`ClinicalRejectedError`."""


class AgentError(OkaflowError):
    """The agent graph cannot run as configured."""


class RunDirectoryError(AgentError):
    """The run directory cannot be used."""


class RunAwaitingApprovalError(RunDirectoryError):
    """The run waits at its approval gate, so there is nothing to resume: answer it with ``okaflow.approve``.

    Attributes:
        result: The run as it stands (status ``"awaiting_approval"``).
    """

    def __init__(self, message: str, *, result: RunResult, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.result = result


class ReplayError(OkaflowError):
    """A recorded run cannot be replayed as it was recorded."""


class ReplayInputsChangedError(ReplayError):
    """The inputs of a replay differ from the record: changed, missing or new case files, another okaflow.

    Attributes:
        changes: One line per difference (``"changed: bundle.json"``, ``"okaflow 0.2.0 instead of 0.1.0"``).
    """

    def __init__(self, message: str, *, changes: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.changes = changes


class ReplayMismatchError(ReplayError):
    """The replay asked the model for something the record does not hold.

    Attributes:
        differences: How the request differs from the closest recorded one.
    """

    def __init__(self, message: str, *, differences: list[str] | None = None) -> None:
        super().__init__(
            message,
            hint="the run diverged from the record (changed workflow, tools or settings): rerun it with a backend",
        )
        self.differences = differences or []
