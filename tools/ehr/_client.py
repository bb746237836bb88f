"""A FHIR REST client for pulling one patient's record: R4, R4B and R5 servers, paging, bearer or SMART auth.

Every request goes through okaflow's one retry layer (``model_backend._http``: bounded timeouts,
backoff with jitter, ``Retry-After``, retries of 408/409/429/5xx and connection failures only) and fails
with a :class:`~okaflow.ClinicalSystemError` naming the URL. Paging follows ``next`` links only while
they stay on the server the client was pointed at: a link elsewhere would carry the credentials there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx

from okaflow._audit import AuditAction, AuditTrail
from okaflow._clinical import HttpxClinicalErrors
from okaflow._closing import Closing
from okaflow._constants import (
    CLINICAL_CONNECT_TIMEOUT_S,
    CLINICAL_READ_TIMEOUT_S,
    ENV_FHIR_TOKEN,
    ENV_FHIR_URL,
    FHIR_MAX_PAGES,
    FHIR_PAGE_SIZE,
    HTTP_MAX_RETRIES,
)
from okaflow._errors import (
    ClinicalAuthenticationError,
    ClinicalNotFoundError,
    ClinicalResponseError,
    ConfigurationError,
    PatientNotFoundError,
    TokenRequestError,
)
from okaflow.model_backend._http import HttpCall, RetryPolicy, send_with_retries
from okaflow.tools.ehr._auth import BearerToken, FHIRAuth
from okaflow.tools.fhir import FHIRVersion

__all__ = ["FHIRClient", "JSONObject"]

JSONObject = dict[str, Any]
_FHIR_JSON = "application/fhir+json"
_VERSIONS: dict[str, FHIRVersion] = {"4.0": "R4", "4.3": "R4B", "5.0": "R5"}


class FHIRClient(Closing):
    """Reads from one FHIR server. Use as a context manager, or call :meth:`close`.

    Args:
        base_url: The server's FHIR base (``https://ehr.example/fhir``); default ``$OKAFLOW_FHIR_URL``.
        auth: A :class:`~okaflow.tools.ehr.BearerToken`, a :class:`~okaflow.tools.ehr.SMARTBackendAuth`, a
            token string, or None (then ``$OKAFLOW_FHIR_TOKEN`` if set, else no credentials).
        timeout: Bound on each request: seconds, or an ``httpx.Timeout`` (default connect 5 s, read 60 s).
        max_retries: Retries on connection failures and 408/409/429/5xx (not on other 4xx).
        page_size: ``_count`` asked for on searches.
        max_pages: The most pages followed in one search before it counts as runaway.
        http_client: An ``httpx.Client`` of your own (transports, proxies, TLS); it is not closed by
            :meth:`close`.
        audit: An :class:`~okaflow.AuditTrail` that records every request (also settable as ``.audit``).

    Raises:
        ConfigurationError: no base URL, or one that is not http(s).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        auth: FHIRAuth | str | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = HTTP_MAX_RETRIES,
        page_size: int = FHIR_PAGE_SIZE,
        max_pages: int = FHIR_MAX_PAGES,
        http_client: httpx.Client | None = None,
        audit: AuditTrail | None = None,
    ) -> None:
        url = base_url or os.environ.get(ENV_FHIR_URL)
        if not url:
            raise ConfigurationError(
                f"no FHIR server URL: pass base_url= or set ${ENV_FHIR_URL}", hint="e.g. https://ehr.example/fhir"
            )
        if urlsplit(url).scheme not in ("http", "https"):
            raise ConfigurationError(f"the FHIR base URL {url!r} is not http(s)")
        if max_retries < 0 or page_size < 1 or max_pages < 1:
            raise ConfigurationError("max_retries must be 0 or more; page_size and max_pages 1 or more")
        self.base_url = url.rstrip("/")
        token = auth if auth is not None else os.environ.get(ENV_FHIR_TOKEN) or None
        self.auth: FHIRAuth | None = BearerToken(token) if isinstance(token, str) else token
        if isinstance(timeout, httpx.Timeout):
            self.timeout = timeout
        else:
            read = CLINICAL_READ_TIMEOUT_S if timeout is None else float(timeout)
            self.timeout = httpx.Timeout(read, connect=min(CLINICAL_CONNECT_TIMEOUT_S, read))
        self.policy = RetryPolicy(max_retries=max_retries)
        self.page_size = page_size
        self.max_pages = max_pages
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(follow_redirects=False)
        self._capabilities: JSONObject | None = None
        #: Requests sent so far (a retried request counts once).
        self.requests = 0
        #: Where each request is recorded (None: nowhere); :func:`okaflow.pull_case` sets it for a pull.
        self.audit = audit

    def __repr__(self) -> str:
        return f"FHIRClient({self.base_url!r}, auth={self.auth!r})"

    def close(self) -> None:
        """Close the HTTP connections (not an injected ``http_client``)."""
        if self._owns_http:
            self._http.close()

    # -- the server -------------------------------------------------------------------------------
    def capabilities(self) -> JSONObject:
        """The server's CapabilityStatement (``GET [base]/metadata``), fetched once."""
        if self._capabilities is None:
            statement = self.get("metadata")
            if statement.get("resourceType") != "CapabilityStatement":
                raise ClinicalResponseError(
                    f"{self.base_url}/metadata answered a {statement.get('resourceType')!r}, not a CapabilityStatement",
                    system="FHIR",
                    url=f"{self.base_url}/metadata",
                    hint="is base_url the FHIR base (it usually ends in /fhir or /R4)?",
                )
            self._capabilities = statement
        return self._capabilities

    @property
    def fhir_version(self) -> FHIRVersion:
        """The release the server speaks (``R4``, ``R4B`` or ``R5``), from its CapabilityStatement."""
        declared = str(self.capabilities().get("fhirVersion") or "")
        version = _VERSIONS.get(".".join(declared.split(".")[:2]))
        if version is None:
            raise ClinicalResponseError(
                f"the server at {self.base_url} speaks FHIR {declared or '(no fhirVersion)'}; okaflow reads "
                "R4, R4B and R5",
                system="FHIR",
                url=f"{self.base_url}/metadata",
                hint="point base_url at the server's R4 or R5 endpoint",
            )
        return version

    def resource_capability(self, resource_type: str) -> JSONObject | None:
        """The CapabilityStatement's ``rest.resource`` entry for ``resource_type``, if the server has one."""
        for rest in self.capabilities().get("rest") or []:
            if isinstance(rest, dict) and rest.get("mode", "server") == "server":
                for resource in rest.get("resource") or []:
                    if isinstance(resource, dict) and resource.get("type") == resource_type:
                        return resource
        return None

    def supports_operation(self, resource_type: str, name: str) -> bool:
        """Whether the server declares operation ``name`` (``"everything"``) on ``resource_type``."""
        resource = self.resource_capability(resource_type) or {}
        wanted = name.lstrip("$")
        return any(isinstance(op, dict) and op.get("name") == wanted for op in resource.get("operation") or [])

    # -- reads ------------------------------------------------------------------------------------
    def read(self, resource_type: str, resource_id: str) -> JSONObject:
        """``GET [base]/{type}/{id}``.

        Raises:
            PatientNotFoundError: ``resource_type`` is Patient and the server has no such patient.
            ClinicalNotFoundError: another resource type and no such resource.
        """
        try:
            resource = self.get(f"{resource_type}/{resource_id}")
        except ClinicalNotFoundError as exc:
            if resource_type == "Patient":
                raise _patient_not_found(exc, resource_id) from None
            raise
        if resource.get("resourceType") != resource_type:
            raise ClinicalResponseError(
                f"{self.base_url}/{resource_type}/{resource_id} answered a {resource.get('resourceType')!r}",
                system="FHIR",
                url=f"{self.base_url}/{resource_type}/{resource_id}",
            )
        return resource

    def search(self, resource_type: str, params: Mapping[str, str | list[str]] | None = None) -> list[JSONObject]:
        """Search ``resource_type`` and follow every ``next`` link; all pages' entries, in order.

        ``_count`` is set to ``page_size`` unless ``params`` sets it. Entries keep their ``search.mode``
        (``match``, ``include``, ``outcome``).
        """
        query: dict[str, str | list[str]] = {"_count": str(self.page_size), **(params or {})}
        return list(self._paged(resource_type, query))

    def everything(self, patient_id: str) -> list[JSONObject]:
        """``Patient/{id}/$everything``, every page. Raises :class:`~okaflow.PatientNotFoundError` on 404."""
        try:
            return list(self._paged(f"Patient/{patient_id}/$everything", {}))
        except ClinicalNotFoundError as exc:
            raise _patient_not_found(exc, patient_id) from None

    def find_patient_ids(self, identifier: str, *, system: str | None = None) -> list[str]:
        """The server's ids of the Patients carrying ``identifier`` (an MRN, say), optionally of one ``system``."""
        token = f"{system}|{identifier}" if system else identifier
        entries = self.search("Patient", {"identifier": token})
        return [
            str(e["resource"]["id"])
            for e in entries
            if isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == "Patient"
        ]

    # -- HTTP -------------------------------------------------------------------------------------
    def get(self, path_or_url: str, params: Mapping[str, str | list[str]] | None = None) -> JSONObject:
        """GET a path under the base (or an absolute URL on the same server); the JSON object it answers.

        FHIR decimals are kept exactly as the server wrote them (``decimal.Decimal``).
        """
        url = path_or_url if "://" in path_or_url else f"{self.base_url}/{path_or_url.lstrip('/')}"
        full = str(httpx.URL(url, params=dict(params)) if params else httpx.URL(url))
        response = self._send(full)
        try:
            data = json.loads(response.text, parse_float=Decimal)
        except ValueError:
            raise ClinicalResponseError(
                f"GET {full} answered {response.headers.get('content-type') or 'no content type'}, not JSON "
                f"(starts {response.text[:60]!r})",
                system="FHIR",
                url=full,
                hint="is base_url a FHIR server's base? (a login page or proxy error answers HTML)",
            ) from None
        if not isinstance(data, dict):
            raise ClinicalResponseError(f"GET {full} answered a JSON {type(data).__name__}", system="FHIR", url=full)
        return data

    def _send(self, url: str) -> httpx.Response:
        if self.audit is None:
            return self._send_once(url)
        resource = url[len(self.base_url) :].lstrip("/") if url.startswith(self.base_url) else url
        action: AuditAction = "search" if "?" in resource or "/" not in resource.split("?")[0] else "read"
        with self.audit.watch(action, system="FHIR", endpoint=self.base_url, resource=resource) as entry:
            response = self._send_once(url)
            entry["status"] = response.status_code
        return response

    def _send_once(self, url: str) -> httpx.Response:
        for attempt in range(2):
            headers = {"Accept": _FHIR_JSON}
            if self.auth is not None:
                headers["Authorization"] = self.auth.authorization(self._http, self.base_url)
            call = HttpCall(
                method="GET",
                url=url,
                json=None,
                headers=headers,
                timeout=self.timeout,
                policy=self.policy,
                base_url=self.base_url,
                backend="FHIR",
                errors=HttpxClinicalErrors("FHIR", credentials=self.auth is not None),
            )
            try:
                response = send_with_retries(self._http, call)
            except TokenRequestError:
                raise  # the token endpoint itself refused: asking again would be refused again
            except ClinicalAuthenticationError:
                # A cached SMART token may have been revoked or expired early: ask for a new one, once.
                if attempt == 0 and self.auth is not None and not isinstance(self.auth, BearerToken):
                    self.auth.invalidate()
                    continue
                raise
            self.requests += 1
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _paged(self, first: str, params: Mapping[str, str | list[str]]) -> Iterator[JSONObject]:
        url: str | None = first
        query: Mapping[str, str | list[str]] | None = params
        seen: set[str] = set()
        for _ in range(self.max_pages):
            if url is None:
                return
            bundle = self.get(url, query)
            where = url if "://" in url else f"{self.base_url}/{url}"
            if bundle.get("resourceType") != "Bundle":
                raise ClinicalResponseError(
                    f"{where} answered a {bundle.get('resourceType')!r}, not a Bundle", system="FHIR", url=where
                )
            entries = bundle.get("entry") or []
            if not isinstance(entries, list):
                raise ClinicalResponseError(
                    f"{where} answered a Bundle whose entry is not a list", system="FHIR", url=where
                )
            yield from (e for e in entries if isinstance(e, dict))
            url, query = self._next_link(bundle, where, seen), None
        if url is not None:
            raise ClinicalResponseError(
                f"a search from {self.base_url}/{first} still had pages after {self.max_pages}",
                system="FHIR",
                url=url,
                hint="raise max_pages= or narrow the search",
            )

    def _next_link(self, bundle: JSONObject, where: str, seen: set[str]) -> str | None:
        links = [link for link in bundle.get("link") or [] if isinstance(link, dict) and link.get("relation") == "next"]
        if not links or not isinstance(links[0].get("url"), str):
            return None
        nxt = str(links[0]["url"])
        base, target = urlsplit(self.base_url), urlsplit(nxt)
        if (target.scheme, target.netloc) != (base.scheme, base.netloc) or not target.path.startswith(base.path):
            raise ClinicalResponseError(
                f"{where} links its next page to {nxt}, outside {self.base_url}; not followed (it would carry "
                "the credentials elsewhere)",
                system="FHIR",
                url=where,
                hint="the server's configured base URL differs from base_url: use the one it links to",
            )
        if nxt in seen:
            raise ClinicalResponseError(f"{where} links back to a page already read: {nxt}", system="FHIR", url=nxt)
        seen.add(nxt)
        return nxt


def _patient_not_found(exc: ClinicalNotFoundError, patient_id: str) -> PatientNotFoundError:
    return PatientNotFoundError(
        f"no Patient/{patient_id} on {exc.url.split('/Patient/')[0]}: {exc.message.split(': ', 1)[-1]}",
        patient_id=patient_id,
        url=exc.url,
        status_code=exc.status_code,
        response=exc.response,
        body=exc.body,
        hint="pass the server's resource id; find it from an MRN with FHIRClient.find_patient_ids(mrn)",
    )
