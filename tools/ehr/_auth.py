"""Who the FHIR client says it is: a static bearer token, or SMART on FHIR backend services.

SMART backend services (the client-credentials grant with a signed JWT assertion, as in the SMART App
Launch "Backend Services" chapter): the client signs a short-lived assertion (``iss`` = ``sub`` = client
id, ``aud`` = the token endpoint, ``exp`` at most five minutes ahead, a fresh ``jti``) with its private
key (RS384 or ES384), posts it to the token endpoint, and sends the access token it gets back as a
bearer token until shortly before it expires. The server knows the client by the public key registered
for its client id: :meth:`SMARTBackendAuth.public_jwks` gives the JWK Set to register.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlencode

import httpx

from okaflow._clinical import HttpxClinicalErrors
from okaflow._constants import HTTP_MAX_RETRIES, SMART_ASSERTION_LIFETIME_S, SMART_REFRESH_MARGIN_S
from okaflow._errors import (
    ClinicalResponseError,
    ClinicalStatusError,
    ConfigurationError,
    MissingExtraError,
    TokenRequestError,
)
from okaflow._server_text import server_said
from okaflow.model_backend._http import HttpCall, RetryPolicy, retry_loop, send_with_retries

__all__ = ["BearerToken", "FHIRAuth", "SMARTBackendAuth"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SMARTAlgorithm = Literal["RS384", "ES384"]
_OAUTH_HINTS = {
    "invalid_client": "the server does not accept this client's assertion: register public_jwks() under this "
    "client_id (with the same kid), and check the algorithm and the machine's clock",
    "invalid_scope": "ask only for scopes this client is registered for (scope=...)",
    "unauthorized_client": "this client may not use the client-credentials grant on this server",
    "unsupported_grant_type": "the server does not offer SMART backend services (client_credentials)",
    "invalid_request": "the token request was malformed; check token_url and the server's SMART configuration",
}


@runtime_checkable
class FHIRAuth(Protocol):
    """What :class:`~okaflow.tools.ehr.FHIRClient` asks of an authorization scheme."""

    def authorization(self, http: httpx.Client, fhir_base_url: str) -> str:
        """The ``Authorization`` header value for the next request to ``fhir_base_url``."""
        ...

    def invalidate(self) -> None:
        """Forget any cached credential (the server answered 401 to it)."""
        ...


@dataclass(frozen=True)
class BearerToken:
    """A static bearer token (an API gateway key, a token obtained elsewhere).

    Attributes:
        token: The token, sent as ``Authorization: Bearer <token>``; never shown in ``repr``.
    """

    token: str

    def __post_init__(self) -> None:
        if not self.token or self.token != self.token.strip():
            raise ConfigurationError("a bearer token must be non-empty, without surrounding spaces")

    def __repr__(self) -> str:
        return "BearerToken(token=***)"

    def authorization(self, http: httpx.Client, fhir_base_url: str) -> str:
        """``Bearer <token>``."""
        return f"Bearer {self.token}"

    def invalidate(self) -> None:
        """Nothing to forget: a static token stays what it is."""


def _jwt() -> Any:
    try:
        import jwt
        from cryptography.hazmat.primitives import serialization  # noqa: F401  (PyJWT signs RS/ES with it)
    except ImportError as exc:
        raise MissingExtraError(
            "pacs", feature="SMART backend-services auth", missing=exc.name or "pyjwt[crypto]"
        ) from None
    return jwt


class SMARTBackendAuth:
    """SMART on FHIR backend-services authorization: a signed JWT assertion exchanged for access tokens.

    Tokens are cached and renewed ``refresh_margin_s`` before they expire (at most half their lifetime),
    so a long pull never sends an expired token; a 401 from the FHIR server drops the cached token and
    the client asks for a new one once. Thread-safe.

    Args:
        client_id: The client id the server registered (``iss`` and ``sub`` of the assertion).
        private_key: The client's private key: PEM text or bytes, a path to a PEM file, or a
            ``cryptography`` private key. RSA (2048 bits or more) signs RS384, EC P-384 signs ES384.
        algorithm: ``"RS384"`` or ``"ES384"``; by default the one the key's type implies.
        key_id: The ``kid`` the server registered the public key under; default its RFC 7638 thumbprint
            (what :meth:`public_jwks` publishes).
        scope: The scopes to ask for, e.g. ``"system/Patient.rs system/Observation.rs"``.
        token_url: The token endpoint; default discovered from ``<FHIR base>/.well-known/smart-configuration``.
        refresh_margin_s: Renew a token this many seconds before it expires.
        timeout: Bound on each token request (seconds or an ``httpx.Timeout``).
        max_retries: Retries of a token request on connection failures and 408/429/5xx (each with a new
            assertion, since a server may have seen the last one's ``jti``).
        clock: Seconds since the epoch (injected by tests).

    Raises:
        MissingExtraError: PyJWT or cryptography is not installed (``pip install 'okaflow[pacs]'``).
        ConfigurationError: the key cannot be read or does not fit the algorithm.
    """

    def __init__(
        self,
        *,
        client_id: str,
        private_key: str | bytes | Path | Any,
        algorithm: SMARTAlgorithm | None = None,
        key_id: str | None = None,
        scope: str = "system/*.read",
        token_url: str | None = None,
        refresh_margin_s: float = SMART_REFRESH_MARGIN_S,
        timeout: float | httpx.Timeout = 30.0,
        max_retries: int = HTTP_MAX_RETRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._jwt = _jwt()
        if not client_id:
            raise ConfigurationError("SMART backend services need a client_id", hint="the id the server registered")
        self.client_id = client_id
        self._key = _load_private_key(private_key)
        self.algorithm = _check_algorithm(self._key, algorithm)
        self._public_jwk = self._make_public_jwk()
        self.key_id = key_id or self._public_jwk["kid"]
        self._public_jwk["kid"] = self.key_id
        self.scope = scope
        self.token_url = token_url
        self.refresh_margin_s = refresh_margin_s
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.policy = RetryPolicy(max_retries=max_retries)
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        #: How many access tokens this object has obtained (for logs and tests).
        self.tokens_issued = 0

    def __repr__(self) -> str:
        return f"SMARTBackendAuth(client_id={self.client_id!r}, algorithm={self.algorithm!r}, kid={self.key_id!r})"

    # -- what the server needs to know ------------------------------------------------------------
    def public_jwks(self) -> dict[str, Any]:
        """The JWK Set holding this client's public key, to register with the authorization server."""
        return {"keys": [dict(self._public_jwk)]}

    def _make_public_jwk(self) -> dict[str, Any]:
        algorithms = self._jwt.algorithms
        cls = algorithms.RSAAlgorithm if self.algorithm == "RS384" else algorithms.ECAlgorithm
        jwk: dict[str, Any] = json.loads(cls.to_jwk(self._key.public_key()))
        required = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
        canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
        thumbprint = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
        jwk.update({"alg": self.algorithm, "use": "sig", "key_ops": ["verify"], "kid": thumbprint})
        return jwk

    # -- FHIRAuth ---------------------------------------------------------------------------------
    def authorization(self, http: httpx.Client, fhir_base_url: str) -> str:
        """``Bearer <access token>``, from the cache or a new token request."""
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                self._fetch_token(http, fhir_base_url)
            assert self._token is not None
            return f"Bearer {self._token}"

    def invalidate(self) -> None:
        """Drop the cached token; the next request asks for a new one."""
        with self._lock:
            self._token = None

    # -- the token request ------------------------------------------------------------------------
    def assertion(self, token_url: str) -> str:
        """A new signed client assertion for ``token_url`` (a fresh ``jti`` each time)."""
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "iat": now,
            "exp": now + SMART_ASSERTION_LIFETIME_S,
            "jti": uuid.uuid4().hex,
        }
        token: str = self._jwt.encode(
            claims, self._key, algorithm=self.algorithm, headers={"kid": self.key_id, "typ": "JWT"}
        )
        return token

    def discover_token_url(self, http: httpx.Client, fhir_base_url: str) -> str:
        """The token endpoint: ``token_url=`` if given, else from the server's SMART configuration."""
        if self.token_url:
            return self.token_url
        url = fhir_base_url.rstrip("/") + "/.well-known/smart-configuration"
        call = _call("GET", url, self.timeout, self.policy, {"Accept": "application/json"}, system="SMART")
        response = send_with_retries(http, call)
        try:
            endpoint = response.json().get("token_endpoint")
        except (ValueError, AttributeError):
            endpoint = None
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise ClinicalResponseError(
                f"{url} names no token_endpoint",
                system="SMART",
                url=url,
                hint="pass token_url= (the server's OAuth token endpoint)",
            )
        self.token_url = endpoint
        return endpoint

    def _fetch_token(self, http: httpx.Client, fhir_base_url: str) -> None:
        token_url = self.discover_token_url(http, fhir_base_url)
        call = _call(
            "POST",
            token_url,
            self.timeout,
            self.policy,
            {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"},
            system="SMART",
        )

        def attempt() -> httpx.Response:
            form = {
                "grant_type": "client_credentials",
                "scope": self.scope,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.assertion(token_url),
            }
            return http.post(token_url, content=urlencode(form).encode(), headers=call.headers, timeout=self.timeout)

        started = self._clock()
        try:
            response = retry_loop(call, attempt, sleep=time.sleep, rng=None)
        except ClinicalStatusError as exc:
            # OAuth answers a refused client with 400 or 401; a 404 (wrong token URL) or a 5xx (down, after
            # retries) is not a refusal and keeps its own type and hint.
            if exc.status_code in (400, 401):
                raise _token_error(exc) from None
            raise
        token, lifetime = _parse_token_response(response, token_url)
        margin = min(self.refresh_margin_s, lifetime / 2)
        self._token = token
        self._renew_at = started + lifetime - margin
        self.tokens_issued += 1


def _call(
    method: str, url: str, timeout: httpx.Timeout, policy: RetryPolicy, headers: dict[str, str], *, system: str
) -> HttpCall:
    return HttpCall(
        method=method,
        url=url,
        json=None,
        headers=headers,
        timeout=timeout,
        policy=policy,
        base_url=url,
        backend=system,
        errors=HttpxClinicalErrors(system),
    )


def _token_error(exc: ClinicalStatusError) -> TokenRequestError:
    """A refused token request, with the OAuth error code and what to do about it."""
    try:
        data = json.loads(exc.body)
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) and isinstance(data.get("error"), str) else None
    said = server_said(exc.body)
    return TokenRequestError(
        f"the token endpoint {exc.url} refused the client ({exc.status_code}): {said}",
        url=exc.url,
        status_code=exc.status_code,
        response=exc.response,
        body=exc.body,
        error=error,
        hint=_OAUTH_HINTS.get(
            error or "",
            "check client_id, and that the authorization server holds this client's public key (auth.public_jwks())",
        ),
    )


def _parse_token_response(response: httpx.Response, token_url: str) -> tuple[str, float]:
    """The access token and its lifetime in seconds, from an OAuth token response."""

    def bad(what: str) -> ClinicalResponseError:
        return ClinicalResponseError(
            f"the token response from {token_url} {what}",
            system="SMART",
            url=token_url,
            hint="is token_url the server's OAuth token endpoint?",
        )

    try:
        data = response.json()
    except ValueError:
        raise bad(f"is not JSON (starts {response.text[:80]!r})") from None
    if not isinstance(data, dict) or not isinstance(data.get("access_token"), str) or not data["access_token"]:
        raise bad("has no access_token")
    token_type = data.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise bad(f"has token_type {token_type!r}, not bearer")
    lifetime = data.get("expires_in", SMART_ASSERTION_LIFETIME_S)
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
        raise bad(f"has expires_in {lifetime!r}, not a positive number of seconds")
    return str(data["access_token"]), float(lifetime)


def _load_private_key(source: str | bytes | Path | Any) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(source, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return source
    where = "private_key"
    if isinstance(source, Path) or (isinstance(source, str) and "-----BEGIN" not in source):
        path = Path(source)
        where = str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the SMART private key {path}: {exc.strerror}") from None
    elif isinstance(source, str | bytes):
        data = source.encode() if isinstance(source, str) else source
    else:
        raise ConfigurationError(
            f"private_key must be PEM text, a path or a cryptography key, not {type(source).__name__}"
        )
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"{where} is not an unencrypted PEM private key ({exc})",
            hint="export it as PKCS#8 PEM without a passphrase, or pass a cryptography key object",
        ) from None


def _check_algorithm(key: Any, algorithm: SMARTAlgorithm | None) -> SMARTAlgorithm:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPrivateKey):
        implied: SMARTAlgorithm = "RS384"
        if key.key_size < 2048:
            raise ConfigurationError(f"the RSA key has {key.key_size} bits; SMART asks for at least 2048")
    elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        implied = "ES384"
    else:
        name = getattr(getattr(key, "curve", None), "name", type(key).__name__)
        raise ConfigurationError(
            f"a {name} key cannot sign RS384 or ES384", hint="use an RSA key (RS384) or an EC P-384 key (ES384)"
        )
    if algorithm is not None and algorithm != implied:
        raise ConfigurationError(f"algorithm {algorithm!r} does not fit the key, which signs {implied}")
    return implied
