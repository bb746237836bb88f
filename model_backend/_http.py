"""The one HTTP layer under the OpenAI-compatible backends: bounded timeouts, retries, typed errors.

Retries live here and nowhere else (not in the agent graph): exponential backoff with full jitter,
``Retry-After`` honoured up to a cap, retrying 408/409/429/5xx and connection, read and timeout
failures; any other 4xx would fail again and is raised at once as a typed
:class:`~okaflow.BackendStatusError` subclass.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from okaflow._constants import (
    ENV_API_KEY,
    HTTP_BACKOFF_BASE_S,
    HTTP_BACKOFF_CAP_S,
    HTTP_CONNECT_TIMEOUT_S,
    HTTP_POOL_TIMEOUT_S,
    HTTP_READ_TIMEOUT_S,
    HTTP_RETRY_AFTER_CAP_S,
    HTTP_WRITE_TIMEOUT_S,
)
from okaflow._errors import (
    BackendAuthenticationError,
    BackendBadRequestError,
    BackendConnectionError,
    BackendError,
    BackendNotFoundError,
    BackendPermissionDeniedError,
    BackendRateLimitedError,
    BackendServerError,
    BackendStatusError,
    BackendTimeoutError,
)

__all__ = [
    "HttpCall",
    "RetryPolicy",
    "asend_with_retries",
    "default_timeout",
    "retry_after_seconds",
    "send_with_retries",
]

# Transport failures worth another attempt; others (bad URL scheme, proxy misconfiguration) would fail again.
_RETRYABLE_TRANSPORT = (
    httpx.TimeoutException,
    httpx.ConnectError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)
_MAX_BODY_IN_MESSAGE = 500


def default_timeout() -> httpx.Timeout:
    """The bounded default: connect 5 s, read 120 s (a whole generation), write 30 s, pool 10 s."""
    return httpx.Timeout(
        connect=HTTP_CONNECT_TIMEOUT_S, read=HTTP_READ_TIMEOUT_S, write=HTTP_WRITE_TIMEOUT_S, pool=HTTP_POOL_TIMEOUT_S
    )


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait between attempts.

    Attributes:
        max_retries: Attempts after the first one (``0`` disables retries).
        base_s: Backoff before the first retry is drawn from ``[0, base_s]``; it doubles each retry.
        cap_s: Upper bound of the backoff window.
        retry_after_cap_s: Upper bound on a server's ``Retry-After``.
    """

    max_retries: int
    base_s: float = HTTP_BACKOFF_BASE_S
    cap_s: float = HTTP_BACKOFF_CAP_S
    retry_after_cap_s: float = HTTP_RETRY_AFTER_CAP_S

    def delay(self, attempt: int, response: httpx.Response | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based): Retry-After, else full jitter."""
        if response is not None:
            after = retry_after_seconds(response, cap_s=self.retry_after_cap_s)
            if after is not None:
                return after
        return rng.uniform(0.0, min(self.cap_s, self.base_s * 2.0**attempt))


def retry_after_seconds(response: httpx.Response, *, cap_s: float = HTTP_RETRY_AFTER_CAP_S) -> float | None:
    """The response's ``Retry-After`` (delta-seconds or an HTTP date) in seconds, capped; None if absent or bad."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), cap_s)


def _retryable_status(code: int) -> bool:
    return code in (408, 409, 429) or code >= 500


def _server_message(body: str) -> str:
    """The error text of an OpenAI-style (``{"error": {"message"}}``) or vLLM-style (``{"message"}``) body."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:_MAX_BODY_IN_MESSAGE]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        for key in ("message", "detail", "error"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return body.strip()[:_MAX_BODY_IN_MESSAGE]


def _status_error(response: httpx.Response, *, attempts: int, base_url: str, backend: str) -> BackendStatusError:
    request = response.request
    code = response.status_code
    body = response.text
    said = _server_message(body)
    server = response.headers.get("server")
    answered = f"{request.method} {request.url} answered {code} {response.reason_phrase}".rstrip()
    if server:
        answered += f" (server: {server})"
    if attempts > 1:
        answered += f" after {attempts} attempts"
    message = f"{answered}: {said}" if said else answered
    cls: type[BackendStatusError] = BackendStatusError
    hint = "see the server's message and logs"
    if code == 400:
        cls = BackendBadRequestError
        lowered = said.lower()
        if ("context" in lowered and ("length" in lowered or "window" in lowered)) or "too long" in lowered:
            hint = "the prompt and max_tokens exceed the model's context: send fewer or smaller images or fewer tokens"
        else:
            hint = "the server refused the request as sent: check max_tokens, image count and response_format support"
    elif code == 401:
        cls = BackendAuthenticationError
        hint = f"set api_key= or ${ENV_API_KEY} to the key the server was started with"
    elif code == 403:
        cls = BackendPermissionDeniedError
        hint = "the API key is not allowed to use this model or endpoint"
    elif code == 404:
        cls = BackendNotFoundError
        hint = f"check the model name against GET {base_url}/models, and that base_url ends in /v1"
    elif code == 429:
        cls = BackendRateLimitedError
        hint = "the server is rate-limiting: lower concurrency or raise max_retries"
    elif code >= 500:
        cls = BackendServerError
        hint = "the model server failed: check its /health and logs (out of GPU memory, engine crash)"
    return cls(message, request=request, response=response, body=body, backend=backend, hint=hint)


def _transport_error(exc: httpx.TransportError, *, url: str, attempts: int, backend: str) -> BackendError:
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    if isinstance(exc, httpx.TimeoutException):
        return BackendTimeoutError(
            f"{url} did not answer in time{tries} ({type(exc).__name__}: {exc or 'no detail'})",
            backend=backend,
            hint="raise timeout= (the read timeout covers a whole generation) or lower max_tokens",
        )
    return BackendConnectionError(
        f"cannot reach {url}{tries} ({type(exc).__name__}: {exc or 'no detail'})",
        backend=backend,
        hint="is the model server running? check base_url / $OKAFLOW_MODEL_URL, host and port",
    )


@dataclass(frozen=True)
class HttpCall:
    """One logical request, sent as many times as the policy allows."""

    method: str
    url: str
    json: dict[str, Any] | None
    headers: dict[str, str]
    timeout: httpx.Timeout
    policy: RetryPolicy
    base_url: str
    backend: str


def send_with_retries(
    client: httpx.Client,
    call: HttpCall,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> httpx.Response:
    """Send ``call`` with ``client``, retrying per its policy; a 2xx response or a typed error."""
    rng = rng or random.Random()
    for attempt in range(call.policy.max_retries + 1):
        last = attempt == call.policy.max_retries
        try:
            response = client.request(call.method, call.url, json=call.json, headers=call.headers, timeout=call.timeout)
        except _RETRYABLE_TRANSPORT as exc:
            if last:
                raise _transport_error(exc, url=call.url, attempts=attempt + 1, backend=call.backend) from exc
            sleep(call.policy.delay(attempt, None, rng))
            continue
        except httpx.TransportError as exc:
            raise _transport_error(exc, url=call.url, attempts=attempt + 1, backend=call.backend) from exc
        if response.is_success:
            return response
        if last or not _retryable_status(response.status_code):
            raise _status_error(response, attempts=attempt + 1, base_url=call.base_url, backend=call.backend)
        sleep(call.policy.delay(attempt, response, rng))
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover


async def asend_with_retries(
    client: httpx.AsyncClient,
    call: HttpCall,
    *,
    sleep: Callable[[float], Awaitable[None]],
    rng: random.Random | None = None,
) -> httpx.Response:
    """The async twin of :func:`send_with_retries`."""
    rng = rng or random.Random()
    for attempt in range(call.policy.max_retries + 1):
        last = attempt == call.policy.max_retries
        try:
            response = await client.request(
                call.method, call.url, json=call.json, headers=call.headers, timeout=call.timeout
            )
        except _RETRYABLE_TRANSPORT as exc:
            if last:
                raise _transport_error(exc, url=call.url, attempts=attempt + 1, backend=call.backend) from exc
            await sleep(call.policy.delay(attempt, None, rng))
            continue
        except httpx.TransportError as exc:
            raise _transport_error(exc, url=call.url, attempts=attempt + 1, backend=call.backend) from exc
        if response.is_success:
            return response
        if last or not _retryable_status(response.status_code):
            raise _status_error(response, attempts=attempt + 1, base_url=call.base_url, backend=call.backend)
        await sleep(call.policy.delay(attempt, response, rng))
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover
