"""A DICOMweb client: QIDO-RS searches, WADO-RS retrieval and STOW-RS storage, via dicomweb-client.

dicomweb-client speaks HTTP through ``requests``, so the one retry layer here is urllib3's ``Retry``
mounted on the session, set from okaflow's retry defaults (backoff with jitter, ``Retry-After``
honoured, retries of connection failures and 408/429/5xx on GETs only: a STOW-RS POST is never
retried here, the caller publishes again with the same UIDs), and dicomweb-client's own retrying is
switched off. Every request is bounded by a timeout. Failures become
:class:`~okaflow.ClinicalSystemError` subclasses naming the URL.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from okaflow._audit import AuditAction, AuditTrail, watched
from okaflow._clinical import connection_error, status_error
from okaflow._closing import Closing
from okaflow._constants import (
    CLINICAL_CONNECT_TIMEOUT_S,
    CLINICAL_READ_TIMEOUT_S,
    ENV_DICOMWEB_TOKEN,
    ENV_DICOMWEB_URL,
    HTTP_BACKOFF_BASE_S,
    HTTP_BACKOFF_CAP_S,
    HTTP_MAX_RETRIES,
)
from okaflow._errors import ClinicalResponseError, ConfigurationError, MissingExtraError
from okaflow._urls import without_credentials
from okaflow.tools.pacs._models import (
    STUDY_FIELDS,
    Instance,
    Series,
    Study,
    dataset_from_json,
    exact_study_keys,
    instance_file,
    instance_from,
    series_from,
    study_from,
    study_matches,
)
from okaflow.tools.pacs._stow import failed_in_body, raise_for_failures, rejected

if TYPE_CHECKING:
    import pydicom
    import requests

__all__ = ["EXPLICIT_VR_LITTLE_ENDIAN_FRAMES", "DICOMwebClient"]

#: Uncompressed frames: the media type Orthanc (and most servers) answer a frame request with.
EXPLICIT_VR_LITTLE_ENDIAN_FRAMES = ("application/octet-stream", "1.2.840.10008.1.2.1")


def _dicomweb() -> Any:
    try:
        import dicomweb_client
    except ImportError as exc:
        raise MissingExtraError("pacs", feature="DICOMweb", missing=exc.name or "dicomweb-client") from None
    return dicomweb_client


class DICOMwebClient(Closing):
    """Searches, retrieves from and stores to one DICOMweb server (QIDO-RS, WADO-RS, STOW-RS). A context manager.

    Args:
        url: The DICOMweb root (``https://pacs.example/dicom-web``); default ``$OKAFLOW_DICOMWEB_URL``.
        token: A bearer token sent with every request; default ``$OKAFLOW_DICOMWEB_TOKEN`` if set.
        headers: More request headers.
        timeout: Bound on each request in seconds (default connect 5 s, read 60 s).
        max_retries: Retries on connection failures and 408/429/5xx.
        session: A ``requests.Session`` of your own (auth, TLS, proxies, your own retry adapter): used as
            given, without okaflow's retry adapter, and not closed by :meth:`close`.
        audit: An :class:`~okaflow.AuditTrail` that records every request (also settable as ``.audit``).

    Raises:
        MissingExtraError: dicomweb-client is not installed (``pip install 'okaflow[pacs]'``).
        ConfigurationError: no URL, or one that is not http(s).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        max_retries: int = HTTP_MAX_RETRIES,
        session: requests.Session | None = None,
        audit: AuditTrail | None = None,
    ) -> None:
        dicomweb_client = _dicomweb()
        import requests
        from requests.adapters import HTTPAdapter

        root = url or os.environ.get(ENV_DICOMWEB_URL)
        if not root:
            raise ConfigurationError(
                f"no DICOMweb URL: pass url= or set ${ENV_DICOMWEB_URL}", hint="e.g. https://pacs.example/dicom-web"
            )
        if not root.startswith(("http://", "https://")):
            raise ConfigurationError(f"the DICOMweb URL {root!r} is not http(s)")
        if max_retries < 0:
            raise ConfigurationError(f"max_retries must be 0 or more, not {max_retries}")
        self.url = root.rstrip("/")
        token = token or os.environ.get(ENV_DICOMWEB_TOKEN) or None
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        self._credentials = "Authorization" in sent
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(max_retries=_retry(max_retries))
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self._session = session
        read = CLINICAL_READ_TIMEOUT_S if timeout is None else float(timeout)
        try:
            self._client = dicomweb_client.DICOMwebClient(
                self.url, session=session, headers=sent or None, timeout=(min(CLINICAL_CONNECT_TIMEOUT_S, read), read)
            )
        except ValueError as exc:
            raise ConfigurationError(f"the DICOMweb URL {root!r} cannot be used: {exc}") from None
        self._client.set_http_retry_params(retry=False)
        #: A trail of the client's own (site-wide) every request also goes to; ``okaflow.auditing`` adds the run's.
        self.audit = audit

    def __repr__(self) -> str:
        return f"DICOMwebClient({self.url!r}, credentials={self._credentials})"

    def close(self) -> None:
        """Close the HTTP session (not an injected one)."""
        if self._owns_session:
            self._session.close()

    # -- QIDO-RS ----------------------------------------------------------------------------------
    def search_studies(
        self,
        *,
        patient_id: str | None = None,
        accession_number: str | None = None,
        study_uid: str | None = None,
        modality: str | None = None,
    ) -> list[Study]:
        """Studies matching every given key, exactly (every result page is read).

        Values are matched literally: a ``*`` or ``?`` (QIDO wildcards) is refused, and results whose
        PatientID, AccessionNumber or StudyInstanceUID differ from the asked value (a server's fuzzy or
        case-insensitive matching) are dropped, so no other patient's study comes back.
        """
        asked = exact_study_keys(patient_id=patient_id, accession_number=accession_number, study_uid=study_uid)
        filters: dict[str, Any] = dict(asked)
        if modality:
            filters["ModalitiesInStudy"] = modality
        url = f"{self.url}/studies"
        with self._errors(url, "search", query=filters):
            found = self._client.search_for_studies(
                search_filters=filters, fields=list(STUDY_FIELDS), get_remaining=True
            )
        studies = [study_from(dataset_from_json(item, url), url, system="DICOMweb") for item in found]
        return [s for s in studies if study_matches(s, asked)]

    def search_series(self, study_uid: str) -> list[Series]:
        """The series of one study."""
        url = f"{self.url}/studies/{study_uid}/series"
        with self._errors(url, "search"):
            found = self._client.search_for_series(
                study_uid, fields=["SeriesDescription", "NumberOfSeriesRelatedInstances"], get_remaining=True
            )
        return [series_from(dataset_from_json(item, url), url, study_uid, system="DICOMweb") for item in found]

    def search_instances(self, study_uid: str, series_uid: str | None = None) -> list[Instance]:
        """The instances of one study, or of one of its series."""
        url = f"{self.url}/studies/{study_uid}" + (f"/series/{series_uid}" if series_uid else "") + "/instances"
        with self._errors(url, "search"):
            found = self._client.search_for_instances(study_uid, series_uid, get_remaining=True)
        return [
            instance_from(dataset_from_json(item, url), url, study_uid, series_uid, system="DICOMweb") for item in found
        ]

    # -- WADO-RS ----------------------------------------------------------------------------------
    def retrieve_instance(self, instance: Instance) -> pydicom.Dataset:
        """One instance as a pydicom data set, in the transfer syntax the server stores."""
        url = self._instance_url(instance)
        with self._errors(url, "retrieve"):
            ds: pydicom.Dataset = self._client.retrieve_instance(
                instance.study_uid, instance.series_uid, instance.sop_instance_uid
            )
        if str(ds.get("SOPInstanceUID", "")) != instance.sop_instance_uid:
            raise ClinicalResponseError(
                f"{url} answered instance {ds.get('SOPInstanceUID')!r}", system="DICOMweb", url=url
            )
        return ds

    def retrieve_frames(
        self,
        instance: Instance,
        frames: Sequence[int],
        *,
        media_type: tuple[str, str] = EXPLICIT_VR_LITTLE_ENDIAN_FRAMES,
    ) -> list[bytes]:
        """Frames (1-based) of an instance, as bytes in ``media_type`` (a media type and transfer syntax UID).

        The media type is always sent explicitly: servers such as Orthanc refuse the client's default.
        """
        url = f"{self._instance_url(instance)}/frames/{','.join(map(str, frames))}"
        with self._errors(url, "retrieve"):
            found: list[bytes] = self._client.retrieve_instance_frames(
                instance.study_uid,
                instance.series_uid,
                instance.sop_instance_uid,
                list(frames),
                media_types=(media_type,),
            )
        if len(found) != len(frames):
            raise ClinicalResponseError(
                f"{url} answered {len(found)} frames for {len(frames)} asked", system="DICOMweb", url=url
            )
        return found

    def download_instances(self, instances: Sequence[Instance], folder: str | Path) -> list[Path]:
        """Retrieve instances into ``folder/<series UID>/<SOP instance UID>.dcm``; the files, in order."""
        import pydicom

        paths = []
        for instance in instances:
            ds = self.retrieve_instance(instance)
            path = instance_file(Path(folder), instance.series_uid, instance.sop_instance_uid)
            path.parent.mkdir(parents=True, exist_ok=True)
            pydicom.dcmwrite(path, ds, enforce_file_format=True)
            paths.append(path)
        return paths

    # -- STOW-RS ----------------------------------------------------------------------------------
    def store_instances(self, datasets: Sequence[pydicom.Dataset]) -> list[str]:
        """Store instances in one STOW-RS request; their SOP Instance UIDs, in the order given.

        Storing an instance the server already holds (same SOP Instance UID) stores nothing new, so
        sending the same objects again is safe. Audited as action ``store``.

        Args:
            datasets: Complete instances (with file meta information), e.g. from highdicom.

        Raises:
            ClinicalRejectedError: The server refused some or all instances (a 409, a 202 whose Failed SOP
                Sequence names instances, a 400); the message names each refused SOP Instance UID and why.
            ClinicalResponseError: The answer does not account for an instance that was sent.
            ClinicalSystemError: Any other failure (connection, timeout, 401/403, 5xx).
        """
        import requests

        url = f"{self.url}/studies"
        # Not checked here: an instance the server cannot take is the server's to refuse, by name.
        sent = [str(ds.get("SOPInstanceUID", "")) for ds in datasets]
        if not sent:
            return []
        with self._errors(url, "store") as note:
            try:
                answer = self._client.store_instances(list(datasets))
            except requests.HTTPError as exc:
                response = exc.response
                failed = failed_in_body(response.text) if response is not None else {}
                if response is not None and failed:
                    raise rejected(
                        failed, url=url, status_code=response.status_code, response=response, body=response.text[:4000]
                    ) from exc
                raise
            # dicomweb-client hides the status: failures in a success answer mean 202 (stored in part).
            stored = raise_for_failures(answer, sent, url=url, status_code=202, response=answer)
            note["detail"] = f"stored {len(stored)} instance(s): {', '.join(stored)}"[:2000]
        return stored

    # -- internals --------------------------------------------------------------------------------
    def _instance_url(self, i: Instance) -> str:
        return f"{self.url}/studies/{i.study_uid}/series/{i.series_uid}/instances/{i.sop_instance_uid}"

    @contextlib.contextmanager
    def _errors(
        self, url: str, action: AuditAction, query: Mapping[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """requests' and dicomweb-client's failures as typed clinical-system errors; the audit entry.

        The query goes to the audit trail only: it names patients, and errors end up in logs. The block
        may set ``detail`` (and ``status``) in the dict it is given, for the audit entry.
        """
        resource = url[len(self.url) :].lstrip("/") + (f"?{urlencode(query)}" if query else "")
        endpoint = without_credentials(self.url)
        with (
            watched(self.audit, action, system="DICOMweb", endpoint=endpoint, resource=resource) as note,
            self._typed_errors(url),
        ):
            yield note

    @contextlib.contextmanager
    def _typed_errors(self, url: str) -> Iterator[None]:
        import requests

        try:
            yield
        except requests.HTTPError as exc:
            response = exc.response
            if response is None:
                raise connection_error(system="DICOMweb", url=url, exc=exc, attempts=1, timeout=False) from exc
            raise status_error(
                system="DICOMweb",
                method=response.request.method or "GET",
                url=response.url or url,  # status_error drops the query (QIDO queries name patients)
                status_code=response.status_code,
                reason=response.reason or "",
                body=response.text[:4000],
                response=response,
                credentials=self._credentials,
            ) from exc
        except requests.Timeout as exc:
            raise connection_error(system="DICOMweb", url=url, exc=exc, attempts=1, timeout=True) from exc
        except requests.ConnectionError as exc:
            raise connection_error(system="DICOMweb", url=url, exc=_root_cause(exc), attempts=1, timeout=False) from exc
        except (ValueError, KeyError, TypeError) as exc:
            # dicomweb-client's parsers: a body that is not the JSON or multipart message asked for.
            raise ClinicalResponseError(
                f"{url} answered something that is not DICOMweb ({type(exc).__name__}: {exc})",
                system="DICOMweb",
                url=url,
                hint="is url the server's DICOMweb root (e.g. .../dicom-web)?",
            ) from exc


def _retry(max_retries: int) -> Any:
    from urllib3.util.retry import Retry

    return Retry(
        total=max_retries,
        connect=max_retries,
        read=max_retries,
        status=max_retries,
        other=0,
        allowed_methods=frozenset({"GET", "HEAD"}),
        status_forcelist=(408, 429, 500, 502, 503, 504),
        backoff_factor=HTTP_BACKOFF_BASE_S,
        backoff_max=HTTP_BACKOFF_CAP_S,
        backoff_jitter=HTTP_BACKOFF_BASE_S,
        respect_retry_after_header=True,
        raise_on_status=False,  # the last answer reaches dicomweb-client, which raises it as an HTTPError
    )


def _root_cause(exc: BaseException) -> BaseException:
    """urllib3 wraps the refused connection in MaxRetryError; the innermost reason reads best."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return reason if isinstance(reason, BaseException) else exc
