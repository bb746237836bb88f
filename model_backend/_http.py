"""The one HTTP layer under the OpenAI-compatible backends: bounded timeouts, retries, typed errors.

Retries live here and nowhere else (not in the agent graph): exponential backoff with full jitter,
``Retry-After`` honoured up to a cap, retrying 408/409/429/5xx and connection, read and timeout
failures; any other 4xx would fail again and is raised at once as a typed
:class:`~okaflow.BackendStatusError` subclass. Streamed calls go through the same loop, retried only
until the first byte of the body has arrived.

Other HTTP clients of okaflow (the FHIR client in :mod:`okaflow.tools.ehr`) reuse this loop with their
own error classes: an :class:`HttpCall` may carry an :class:`ErrorMapper`, and :func:`retry_loop` runs
any one-attempt callable (a token request signs a new assertion on every attempt).
"""

from __future__ import annotations

import contextlib
import email.utils
import itertools
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

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
    BackendContextLengthError,
    BackendError,
    BackendNotFoundError,
    BackendPermissionDeniedError,
    BackendRateLimitedError,
    BackendServerError,
    BackendStatusError,
    BackendTimeoutError,
    OkaflowError,
)
from okaflow._server_text import server_said

__all__ = [
    "ErrorMapper",
    "HttpCall",
    "RetryPolicy",
    "aretry_loop",
    "asend_with_retries",
    "astream_with_retries",
    "default_timeout",
    "retry_after_seconds",
    "retry_loop",
    "send_with_retries",
    "stream_with_retries",
]

# Transport failures worth another attempt; others (bad URL scheme, proxy misconfiguration) would fail again.
_RETRYABLE_TRANSPORT = (
    httpx.TimeoutException,
    httpx.ConnectError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)
# Failures that happen before a request can have reached the server: repeating such a request is always safe.
_UNSENT_TRANSPORT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_MAX_BODY_IN_MESSAGE = 500
# Jitter for retry delays, seeded once: a generator per call cost a read of the OS's entropy per request.
_JITTER = random.Random()
# vLLM: "At most 1 image(s) may be provided in one prompt."
_IMAGE_LIMIT = re.compile(r"at most \d+ image", re.IGNORECASE)


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


def _status_error(response: httpx.Response, *, attempts: int, base_url: str, backend: str) -> BackendStatusError:
    request = response.request
    code = response.status_code
    body = response.text
    said = server_said(body, _MAX_BODY_IN_MESSAGE)
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
            cls = BackendContextLengthError
            hint = "the prompt and max_tokens exceed the model's context: send fewer or smaller images or fewer tokens"
        elif "chat template" in lowered and "trust" in lowered:
            hint = (
                "this server refuses request-level chat templates: pin the template on the server "
                "(vLLM --chat-template FILE; VLLMServer(chat_template=...)) and drop chat_template= from the "
                "backend, or start vLLM with --trust-request-chat-template "
                "(VLLMServer(trust_request_chat_template=True))"
            )
        elif _IMAGE_LIMIT.search(said):
            hint = (
                "the server takes fewer images per prompt: pass max_images_per_request= to the backend "
                "(the agent then splits images into batches), or raise the server's --limit-mm-per-prompt"
            )
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


class ErrorMapper(Protocol):
    """Turns a final failure into a typed error; the default maps to the model-backend errors."""

    def status_error(self, response: httpx.Response, *, attempts: int) -> OkaflowError:
        """The error for a non-2xx ``response`` that is not (or no longer) retried."""
        ...

    def transport_error(self, exc: httpx.TransportError, *, url: str, attempts: int) -> OkaflowError:
        """The error for a transport failure (connect, read, timeout) that is not (or no longer) retried."""
        ...


@dataclass(frozen=True)
class HttpCall:
    """One logical request, sent as many times as the policy allows.

    The body is ``json``, raw ``content`` bytes, or a multipart form of ``data`` fields and ``files``
    (``(field, (filename, bytes, media type))``; bytes, not streams, so every attempt sends the same body);
    ``errors`` maps failures to typed errors (default: the model-backend classes, naming ``backend`` and
    ``base_url``).

    A request that is not safe to repeat (a FHIR transaction POST) narrows what is retried:
    ``retry_statuses`` replaces the default 408/409/429/5xx, and ``retry_unsent_only`` retries only
    transport failures that happen before the request can have reached the server (refused connection,
    connect timeout, no pooled connection), never a read timeout or a dropped response.
    ``answers`` are statuses besides 2xx that are an answer, not a failure (a 304 to a conditional read).
    """

    method: str
    url: str
    json: dict[str, Any] | None
    headers: dict[str, str]
    timeout: httpx.Timeout
    policy: RetryPolicy
    base_url: str
    backend: str
    content: bytes | None = None
    data: dict[str, str] | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    errors: ErrorMapper | None = None
    retry_statuses: frozenset[int] | None = None
    retry_unsent_only: bool = False
    answers: frozenset[int] = frozenset()

    def answered(self, response: httpx.Response) -> bool:
        """Whether ``response`` is the answer to return (2xx, or one of ``answers``)."""
        return response.is_success or response.status_code in self.answers

    def retries_status(self, code: int) -> bool:
        """Whether a response with status ``code`` is worth another attempt."""
        return _retryable_status(code) if self.retry_statuses is None else code in self.retry_statuses

    def retries_transport(self, exc: httpx.TransportError) -> bool:
        """Whether a transport failure is worth another attempt."""
        return isinstance(exc, _UNSENT_TRANSPORT if self.retry_unsent_only else _RETRYABLE_TRANSPORT)

    def send_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``client.request`` / ``client.stream`` for this call."""
        body: dict[str, Any] = {}
        if self.content is not None:
            body["content"] = self.content
        elif self.files is not None or self.data is not None:
            body.update({k: v for k, v in (("data", self.data), ("files", self.files)) if v is not None})
        else:
            body["json"] = self.json
        return {"headers": self.headers, "timeout": self.timeout, **body}

    def status_error(self, response: httpx.Response, *, attempts: int) -> OkaflowError:
        if self.errors is not None:
            return self.errors.status_error(response, attempts=attempts)
        return _status_error(response, attempts=attempts, base_url=self.base_url, backend=self.backend)

    def transport_error(self, exc: httpx.TransportError, *, attempts: int) -> OkaflowError:
        if self.errors is not None:
            return self.errors.transport_error(exc, url=self.url, attempts=attempts)
        return _transport_error(exc, url=self.url, attempts=attempts, backend=self.backend)


def retry_loop(
    call: HttpCall,
    attempt: Callable[[], httpx.Response],
    *,
    sleep: Callable[[float], None],
    rng: random.Random | None,
) -> httpx.Response:
    """Run ``attempt`` as often as ``call``'s policy allows; a 2xx response or a typed error.

    ``attempt`` sends once and returns the response, whose body must be readable (``.text``) when its
    status is not 2xx; a retryable transport failure it raises is retried like a retryable status.
    """
    rng = rng or _JITTER
    for number in range(call.policy.max_retries + 1):
        last = number == call.policy.max_retries
        try:
            response = attempt()
        except httpx.TransportError as exc:
            if last or not call.retries_transport(exc):
                raise call.transport_error(exc, attempts=number + 1) from exc
            sleep(call.policy.delay(number, None, rng))
            continue
        if call.answered(response):
            return response
        if last or not call.retries_status(response.status_code):
            raise call.status_error(response, attempts=number + 1)
        sleep(call.policy.delay(number, response, rng))
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover


async def aretry_loop(
    call: HttpCall,
    attempt: Callable[[], Awaitable[httpx.Response]],
    *,
    sleep: Callable[[float], Awaitable[None]],
    rng: random.Random | None,
) -> httpx.Response:
    """The async twin of :func:`retry_loop`."""
    rng = rng or _JITTER
    for number in range(call.policy.max_retries + 1):
        last = number == call.policy.max_retries
        try:
            response = await attempt()
        except httpx.TransportError as exc:
            if last or not call.retries_transport(exc):
                raise call.transport_error(exc, attempts=number + 1) from exc
            await sleep(call.policy.delay(number, None, rng))
            continue
        if call.answered(response):
            return response
        if last or not call.retries_status(response.status_code):
            raise call.status_error(response, attempts=number + 1)
        await sleep(call.policy.delay(number, response, rng))
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover


def send_with_retries(
    client: httpx.Client,
    call: HttpCall,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> httpx.Response:
    """Send ``call`` with ``client``, retrying per its policy; a 2xx response or a typed error."""

    def attempt() -> httpx.Response:
        return client.request(call.method, call.url, **call.send_kwargs())

    return retry_loop(call, attempt, sleep=sleep, rng=rng)


async def asend_with_retries(
    client: httpx.AsyncClient,
    call: HttpCall,
    *,
    sleep: Callable[[float], Awaitable[None]],
    rng: random.Random | None = None,
) -> httpx.Response:
    """The async twin of :func:`send_with_retries`."""

    async def attempt() -> httpx.Response:
        return await client.request(call.method, call.url, **call.send_kwargs())

    return await aretry_loop(call, attempt, sleep=sleep, rng=rng)


@contextlib.contextmanager
def stream_with_retries(
    client: httpx.Client,
    call: HttpCall,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> Iterator[Iterator[bytes]]:
    """Open ``call`` as a streamed response, retrying per its policy until the body's first byte arrives.

    Yields the body's chunks (the first one already received); the response is closed when the
    ``with`` block ends. A failed connect, a retryable status, or a transport failure before the first
    byte is retried exactly as in :func:`send_with_retries`; a failure while the caller reads the rest
    is the caller's to handle (it is not retried: the caller may have used part of the body).
    """
    with contextlib.ExitStack() as stack:
        chunks: list[Iterator[bytes]] = []

        def attempt() -> httpx.Response:
            with contextlib.ExitStack() as this_try:
                response = this_try.enter_context(client.stream(call.method, call.url, **call.send_kwargs()))
                if not response.is_success:
                    response.read()  # the status error quotes the body
                    return response
                body = response.iter_bytes()
                first = next(body, b"")
                chunks[:] = [itertools.chain((first,), body)]
                stack.enter_context(this_try.pop_all())  # keep it open until the caller's block ends
                return response

        retry_loop(call, attempt, sleep=sleep, rng=rng)
        yield chunks[0]


@contextlib.asynccontextmanager
async def astream_with_retries(
    client: httpx.AsyncClient,
    call: HttpCall,
    *,
    sleep: Callable[[float], Awaitable[None]],
    rng: random.Random | None = None,
) -> AsyncIterator[AsyncIterator[bytes]]:
    """The async twin of :func:`stream_with_retries`."""
    async with contextlib.AsyncExitStack() as stack:
        chunks: list[AsyncIterator[bytes]] = []

        async def attempt() -> httpx.Response:
            async with contextlib.AsyncExitStack() as this_try:
                response = await this_try.enter_async_context(
                    client.stream(call.method, call.url, **call.send_kwargs())
                )
                if not response.is_success:
                    await response.aread()
                    return response
                body = response.aiter_bytes()
                first = await anext(body, b"")
                chunks[:] = [_prepend(first, body)]
                await stack.enter_async_context(this_try.pop_all())
                return response

        await aretry_loop(call, attempt, sleep=sleep, rng=rng)
        yield chunks[0]


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk
