"""A FHIR REST client: one patient's record in (R4, R4B and R5 servers, paging, conditional reads), a
transaction Bundle out; bearer or SMART auth.

Every request goes through okaflow's one retry layer (``model_backend._http``: bounded timeouts,
backoff with jitter, ``Retry-After``, retries of 408/409/429/5xx and connection failures only) and fails
with a :class:`~okaflow.ClinicalSystemError` naming the URL. Paging follows ``next`` links only while
they stay on the server the client was pointed at: a link elsewhere would carry the credentials there.

Writes are not safe to repeat blindly (a lost answer to a POST that was stored would store it twice), so
a write is retried only where the server cannot have acted on it: a connection that never opened, 429
and 503. Make the Bundle idempotent too (``ifNoneExist`` on every entry, as
:func:`okaflow.tools.ehr.build_writeback` does) so a re-sent push finds what the first one stored.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import format_datetime
from typing import Any, overload
from urllib.parse import urlsplit

import httpx

from okaflow._audit import AuditAction, AuditTrail, watched
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
    TokenRequestError,
)
from okaflow._urls import without_credentials, without_query
from okaflow.model_backend._http import HttpCall, RetryPolicy, send_with_retries
from okaflow.tools.ehr._answers import ConditionalRead, check_transaction_response, patient_not_found
from okaflow.tools.ehr._auth import BearerToken, FHIRAuth
from okaflow.tools.fhir import FHIRVersion, dumps_fhir_json

__all__ = ["ConditionalRead", "FHIRClient", "JSONObject"]

JSONObject = dict[str, Any]
_FHIR_JSON = "application/fhir+json"
# A write is re-sent only on answers saying the server did not act on it (rate limit, unavailable).
_WRITE_RETRY_STATUSES = frozenset({429, 503})
# A conditional read's "not modified" is an answer, not an error.
_NOT_MODIFIED = frozenset({304})
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
        #: A trail of the client's own (site-wide) every request also goes to; ``okaflow.auditing`` adds the run's.
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
    @overload
    def read(self, resource_type: str, resource_id: str) -> JSONObject: ...

    @overload
    def read(
        self,
        resource_type: str,
        resource_id: str,
        *,
        if_none_match: str,
        if_modified_since: datetime | str | None = None,
    ) -> ConditionalRead: ...

    @overload
    def read(
        self,
        resource_type: str,
        resource_id: str,
        *,
        if_none_match: None = None,
        if_modified_since: datetime | str,
    ) -> ConditionalRead: ...

    def read(
        self,
        resource_type: str,
        resource_id: str,
        *,
        if_none_match: str | None = None,
        if_modified_since: datetime | str | None = None,
    ) -> JSONObject | ConditionalRead:
        """``GET [base]/{type}/{id}``: the resource, or, asked conditionally, whether it changed.

        Args:
            resource_type: ``"Patient"``, ``"DiagnosticReport"`` …
            resource_id: The server's id.
            if_none_match: An ETag from an earlier read (``W/"2"``): the server answers 304 if it is current.
            if_modified_since: A time (aware ``datetime`` or an HTTP date): 304 if not changed since.

        Returns:
            The resource (a plain read), or a :class:`ConditionalRead` when either condition is given.
            A server that ignores the condition (many ignore ``If-Modified-Since``) sends the resource.

        Raises:
            PatientNotFoundError: ``resource_type`` is Patient and the server has no such patient.
            ClinicalNotFoundError: another resource type and no such resource.
        """
        path = f"{resource_type}/{resource_id}"
        conditions: dict[str, str] = {}
        if if_none_match is not None:
            conditions["If-None-Match"] = if_none_match
        if isinstance(if_modified_since, datetime):
            if if_modified_since.tzinfo is None:
                raise ConfigurationError(
                    "if_modified_since is a naive datetime: its time zone is unknown",
                    hint="pass an aware datetime (e.g. datetime.now(UTC)) or an HTTP date string",
                )
            conditions["If-Modified-Since"] = format_datetime(if_modified_since.astimezone(UTC), usegmt=True)
        elif if_modified_since is not None:
            conditions["If-Modified-Since"] = if_modified_since
        try:
            response = self._send(f"{self.base_url}/{path}", headers=conditions, not_modified_ok=bool(conditions))
        except ClinicalNotFoundError as exc:
            # Only the FHIR server's own 404 says the patient is missing (not a token endpoint's, say).
            if resource_type == "Patient" and exc.system == "FHIR":
                raise patient_not_found(exc, resource_id) from None
            raise
        etag, modified = response.headers.get("etag"), response.headers.get("last-modified")
        if response.status_code == 304:
            return ConditionalRead(None, True, etag or if_none_match, modified)
        resource = self._json(response, f"{self.base_url}/{path}")
        if resource.get("resourceType") != resource_type:
            raise ClinicalResponseError(
                f"{self.base_url}/{path} answered a {resource.get('resourceType')!r}",
                system="FHIR",
                url=f"{self.base_url}/{path}",
            )
        return ConditionalRead(resource, False, etag, modified) if conditions else resource

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
            if exc.system != "FHIR":
                raise
            raise patient_not_found(exc, patient_id) from None

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
        return self._json(self._send(full), full)

    # -- writes -----------------------------------------------------------------------------------
    def transaction(self, bundle: JSONObject) -> JSONObject:
        """POST a ``transaction`` Bundle to the base: all of it is stored, or (the server rolls back) none.

        The request is re-sent only where the server cannot have acted on it (no connection, 429, 503);
        give entries ``request.ifNoneExist`` so that even a re-sent push cannot store twice.

        Args:
            bundle: A Bundle of ``type`` ``transaction`` (entries with ``request``; ``urn:uuid`` fullUrls
                may be referenced between entries).

        Returns:
            The server's ``transaction-response`` Bundle: one entry per request, in order, each with
            ``response.status`` (``201 Created``, or ``200 OK`` where ``ifNoneExist`` matched) and ``location``.

        Raises:
            ConfigurationError: ``bundle`` is not a transaction Bundle.
            ClinicalRejectedError: the server refused it (400/409/412/422); nothing of it was stored.
            ClinicalResponseError: the answer is not a transaction-response with one 2xx entry per request.
            ClinicalSystemError: connection, auth and other failures, naming the URL.
        """
        entries = bundle.get("entry") or []
        if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction" or not entries:
            raise ConfigurationError("transaction() takes a Bundle of type 'transaction' with at least one entry")
        written = Counter(str((e.get("resource") or {}).get("resourceType", "?")) for e in entries)
        names = ", ".join(f"{t}×{n}" if n > 1 else t for t, n in written.items())
        response = self._send(
            self.base_url,
            method="POST",
            body=dumps_fhir_json(bundle, indent=None).encode(),
            action="transaction",
            resource=f"Bundle(transaction): {names}",
        )
        answer = self._json(response, self.base_url)
        check_transaction_response(answer, len(entries), self.base_url)
        return answer

    def create(self, resource: JSONObject, *, if_none_exist: str | None = None) -> JSONObject:
        """``POST [base]/{type}``: one resource; with ``if_none_exist`` (a search query) a conditional create.

        Returns:
            The stored resource as the server answered it (the existing one where ``if_none_exist`` matched).

        Raises:
            ClinicalRejectedError: the server refused it (400/409/412/422, e.g. the query matched several).
        """
        rtype = str(resource.get("resourceType") or "")
        if not rtype:
            raise ConfigurationError("create() takes a FHIR resource (it has no resourceType)")
        url = f"{self.base_url}/{rtype}"
        headers = {"If-None-Exist": if_none_exist} if if_none_exist else {}
        response = self._send(
            url,
            method="POST",
            body=dumps_fhir_json(resource, indent=None).encode(),
            headers=headers,
            action="create",
            resource=rtype,
        )
        if not response.content.strip():  # Prefer: return=minimal servers answer with a Location only
            return {"resourceType": rtype, "location": response.headers.get("location")}
        return self._json(response, url)

    # -- HTTP -------------------------------------------------------------------------------------
    def _json(self, response: httpx.Response, url: str) -> JSONObject:
        shown = without_query(url)  # a search's query names the patient: errors never carry it
        try:
            data = json.loads(response.text, parse_float=Decimal)
        except ValueError:
            raise ClinicalResponseError(
                f"{response.request.method} {shown} answered "
                f"{response.headers.get('content-type') or 'no content type'}, not JSON "
                f"(starts {response.text[:60]!r})",
                system="FHIR",
                url=shown,
                hint="is base_url a FHIR server's base? (a login page or proxy error answers HTML)",
            ) from None
        if not isinstance(data, dict):
            raise ClinicalResponseError(
                f"{response.request.method} {shown} answered a JSON {type(data).__name__}", system="FHIR", url=shown
            )
        return data

    def _send(
        self,
        url: str,
        *,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        not_modified_ok: bool = False,
        action: AuditAction | None = None,
        resource: str | None = None,
    ) -> httpx.Response:
        if resource is None:
            resource = url[len(self.base_url) :].lstrip("/") if url.startswith(self.base_url) else url
        if action is None:
            action = "search" if "?" in resource or "/" not in resource.split("?")[0] else "read"
        endpoint = without_credentials(self.base_url)
        with watched(self.audit, action, system="FHIR", endpoint=endpoint, resource=resource) as entry:
            response = self._send_once(url, method, body, headers or {}, not_modified_ok)
            entry["status"] = response.status_code
            if method == "POST" and response.headers.get("location"):
                entry["detail"] = f"location {response.headers['location']}"
        return response

    def _send_once(
        self, url: str, method: str, body: bytes | None, extra: Mapping[str, str], not_modified_ok: bool
    ) -> httpx.Response:
        write = method != "GET"
        for attempt in range(2):
            headers = {"Accept": _FHIR_JSON, **extra}
            if body is not None:
                headers["Content-Type"] = _FHIR_JSON
            if self.auth is not None:
                headers["Authorization"] = self.auth.authorization(self._http, self.base_url)
            call = HttpCall(
                method=method,
                url=url,
                json=None,
                content=body,
                headers=headers,
                timeout=self.timeout,
                policy=self.policy,
                base_url=self.base_url,
                backend="FHIR",
                errors=HttpxClinicalErrors("FHIR", credentials=self.auth is not None),
                retry_statuses=_WRITE_RETRY_STATUSES if write else None,
                retry_unsent_only=write,
                answers=_NOT_MODIFIED if not_modified_ok else frozenset(),
            )
            try:
                response = send_with_retries(self._http, call)
            except TokenRequestError:
                raise  # the token endpoint itself refused: asking again would be refused again
            except ClinicalAuthenticationError:
                # A cached SMART token may have been revoked or expired early: ask for a new one, once.
                # (A 401 means the server did not act on the request, so this is safe for a write too.)
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
            # Errors name the page without its query: a next link carries the search's identifiers.
            where = without_query(url if "://" in url else f"{self.base_url}/{url}")
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
                f"{where} links its next page to {without_query(nxt)}, outside {self.base_url}; "
                "not followed (it would carry "
                "the credentials elsewhere)",
                system="FHIR",
                url=where,
                hint="the server's configured base URL differs from base_url: use the one it links to",
            )
        if nxt in seen:
            raise ClinicalResponseError(
                f"{where} links back to a page already read", system="FHIR", url=without_query(nxt)
            )
        seen.add(nxt)
        return nxt
