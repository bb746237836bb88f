"""Contract tests of SMART backend services against a token endpoint served by the test itself.

No identity provider can run here, so the token endpoint is the test's own (an ``httpx.MockTransport``
that checks each request as the SMART spec asks an authorization server to). What the real
sekmet-fhir token endpoint accepts is tested in tests/integration/servers; here: the exact assertion,
caching and renewal against an injected clock, retries with a fresh assertion, and refusals.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import okaflow
from okaflow.tools.ehr import FHIRClient, SMARTBackendAuth

BASE = "https://ehr.test/fhir"
TOKEN_URL = "https://auth.ehr.test/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class Clock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))  # whole seconds, as JWT times are

    def __call__(self) -> float:
        return self.now


class TokenServer:
    """A token endpoint that verifies assertions with the client's registered JWKS, and a FHIR server
    that accepts only the tokens it issued."""

    def __init__(self, jwks: dict[str, Any], clock: Clock, *, lifetime: int = 300, fail_first: int = 0) -> None:
        self.clock = clock
        self.keys = {k["kid"]: jwt.PyJWK(k) for k in jwks["keys"]}
        self.lifetime = lifetime
        self.fail_first = fail_first
        self.assertions: list[dict[str, Any]] = []
        self.headers: list[dict[str, Any]] = []
        self.issued: list[str] = []
        self.discoveries = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/smart-configuration"):
            self.discoveries += 1
            return httpx.Response(200, json={"token_endpoint": TOKEN_URL})
        if str(request.url) == TOKEN_URL:
            return self.token(request)
        auth = request.headers.get("authorization", "")
        if auth.removeprefix("Bearer ") not in self.issued:
            return httpx.Response(401, json={"resourceType": "OperationOutcome", "issue": [{"diagnostics": "bad"}]})
        return httpx.Response(200, json={"resourceType": "Patient", "id": "p1"})

    def token(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        assert form["grant_type"] == "client_credentials"
        assert form["client_assertion_type"] == ASSERTION_TYPE
        header = jwt.get_unverified_header(form["client_assertion"])
        key = self.keys[header["kid"]]
        claims = jwt.decode(
            form["client_assertion"],
            key,
            algorithms=[header["alg"]],
            audience=TOKEN_URL,
            # Times are judged by the test's clock (below), not the machine's.
            options={"require": ["iss", "sub", "aud", "exp", "jti"], "verify_exp": False, "verify_iat": False},
        )
        assert self.clock.now < claims["exp"] <= self.clock.now + 300, "expired, or more than 5 minutes ahead"
        self.assertions.append({**claims, "scope": form["scope"]})
        self.headers.append(header)
        if self.fail_first:
            self.fail_first -= 1
            return httpx.Response(503, headers={"Retry-After": "0"})
        token = f"token-{len(self.issued)}"
        self.issued.append(token)
        return httpx.Response(200, json={"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime})


CLOCK = Clock()


def smart(key: Any, clock: Clock | None = None, **kwargs: Any) -> SMARTBackendAuth:
    return SMARTBackendAuth(client_id="okaflow", private_key=key, clock=clock or CLOCK, **kwargs)


def fhir(server: TokenServer, auth: SMARTBackendAuth) -> FHIRClient:
    return FHIRClient(BASE, auth=auth, http_client=httpx.Client(transport=httpx.MockTransport(server)))


@pytest.mark.parametrize(
    ("key", "alg"),
    [(ec.generate_private_key(ec.SECP384R1()), "ES384"), (rsa.generate_private_key(65537, 2048), "RS384")],
)
def test_the_assertion_is_what_smart_asks_for(key: Any, alg: str) -> None:
    clock = Clock()
    auth = smart(key, clock, scope="system/Patient.rs")
    server = TokenServer(auth.public_jwks(), clock)
    with fhir(server, auth) as client:
        client.read("Patient", "p1")
    (claims,), (header,) = server.assertions, server.headers
    assert header == {"alg": alg, "kid": auth.key_id, "typ": "JWT"}
    assert claims["iss"] == claims["sub"] == "okaflow"
    assert claims["aud"] == TOKEN_URL  # discovered from .well-known/smart-configuration
    assert claims["exp"] - clock.now == 300  # the spec's five-minute limit
    assert claims["scope"] == "system/Patient.rs"
    assert auth.public_jwks()["keys"][0]["alg"] == alg


def test_a_token_is_reused_until_shortly_before_it_expires() -> None:
    clock = Clock()
    auth = smart(ec.generate_private_key(ec.SECP384R1()), clock, refresh_margin_s=60)
    server = TokenServer(auth.public_jwks(), clock, lifetime=300)
    with fhir(server, auth) as client:
        for _ in range(5):
            client.read("Patient", "p1")
        assert len(server.issued) == 1
        clock.now += 239  # 61 s left: still used
        client.read("Patient", "p1")
        assert len(server.issued) == 1
        clock.now += 2  # 59 s left: renewed before the request
        client.read("Patient", "p1")
    assert len(server.issued) == 2
    assert server.discoveries == 1
    jtis = [a["jti"] for a in server.assertions]
    assert len(set(jtis)) == len(jtis)


def test_a_short_lived_token_is_renewed_at_half_its_lifetime() -> None:
    clock = Clock()
    auth = smart(ec.generate_private_key(ec.SECP384R1()), clock, refresh_margin_s=60)
    server = TokenServer(auth.public_jwks(), clock, lifetime=30)
    with fhir(server, auth) as client:
        client.read("Patient", "p1")
        clock.now += 14
        client.read("Patient", "p1")
        assert len(server.issued) == 1
        clock.now += 2
        client.read("Patient", "p1")
    assert len(server.issued) == 2


def test_a_failed_token_request_is_retried_with_a_new_assertion() -> None:
    auth = smart(ec.generate_private_key(ec.SECP384R1()), token_url=TOKEN_URL)
    server = TokenServer(auth.public_jwks(), CLOCK, fail_first=2)
    with fhir(server, auth) as client:
        client.read("Patient", "p1")
    assert len(server.assertions) == 3
    assert len({a["jti"] for a in server.assertions}) == 3, "a retried assertion would be refused as a replay"
    assert server.discoveries == 0  # token_url= given


def test_an_oauth_refusal_is_a_token_request_error_with_what_to_do() -> None:
    auth = smart(ec.generate_private_key(ec.SECP384R1()), token_url=TOKEN_URL)

    asked: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(401, json={"error": "invalid_scope", "error_description": "no system/*.write here"})

    client = FHIRClient(BASE, auth=auth, http_client=httpx.Client(transport=httpx.MockTransport(refuse)))
    with client, pytest.raises(okaflow.TokenRequestError) as info:
        client.read("Patient", "p1")
    assert info.value.error == "invalid_scope"
    assert info.value.status_code == 401
    assert "no system/*.write here" in str(info.value)
    assert "scopes this client is registered for" in str(info.value)
    assert asked == [TOKEN_URL], "a refused token request was sent again"


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"token_type": "bearer", "expires_in": 300}, "no access_token"),
        ({"access_token": "t", "token_type": "mac", "expires_in": 300}, "not bearer"),
        ({"access_token": "t", "token_type": "bearer", "expires_in": -5}, "expires_in"),
    ],
)
def test_a_malformed_token_response_is_named(body: dict[str, Any], said: str) -> None:
    auth = smart(ec.generate_private_key(ec.SECP384R1()), token_url=TOKEN_URL)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=json.dumps(body)))
    client = FHIRClient(BASE, auth=auth, http_client=httpx.Client(transport=transport))
    with client, pytest.raises(okaflow.ClinicalResponseError, match=said):
        client.read("Patient", "p1")


def test_keys_that_cannot_sign_rs384_or_es384_are_refused() -> None:
    with pytest.raises(okaflow.ConfigurationError, match="cannot sign"):
        smart(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(okaflow.ConfigurationError, match="at least 2048"):
        smart(rsa.generate_private_key(65537, 1024))
    with pytest.raises(okaflow.ConfigurationError, match="does not fit"):
        smart(ec.generate_private_key(ec.SECP384R1()), algorithm="RS384")
    with pytest.raises(okaflow.ConfigurationError, match="not an unencrypted PEM"):
        smart(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")


def test_a_pem_file_key_and_its_thumbprint_kid(tmp_path: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "k.pem").write_bytes(pem)
    from_file, from_object = smart(tmp_path / "k.pem"), smart(key)
    assert from_file.key_id == from_object.key_id  # RFC 7638: the same key, the same kid
    assert from_file.public_jwks() == from_object.public_jwks()
    assert "PRIVATE" not in repr(from_file) and "d" not in from_file.public_jwks()["keys"][0]


def test_a_token_endpoint_that_is_missing_or_down_is_not_called_a_refusal() -> None:
    auth = smart(ec.generate_private_key(ec.SECP384R1()), token_url=TOKEN_URL)

    def missing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="no such endpoint")

    client = FHIRClient(BASE, auth=auth, http_client=httpx.Client(transport=httpx.MockTransport(missing)))
    with client:
        for read in (lambda: client.read("Patient", "p1"), lambda: client.everything("p1")):
            with pytest.raises(okaflow.ClinicalNotFoundError) as info:
                read()
            # Not a refusal of the client, and not a missing patient: the token URL is wrong.
            assert not isinstance(info.value, okaflow.TokenRequestError | okaflow.PatientNotFoundError)
            assert info.value.url == TOKEN_URL and "token_url=" in str(info.value.hint)
