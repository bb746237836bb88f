"""Understanding backends for any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, SGLang, …).

:class:`OpenAIBackend` (sync) and :class:`AsyncOpenAIBackend` take the same keyword-only arguments.
Images travel as PNG data URLs on the last user message; a request's JSON schema becomes a strict
``response_format``. Transport, retries and error mapping live in :mod:`okaflow.model_backend._http`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from okaflow._closing import AsyncClosing, Closing
from okaflow._constants import ENV_API_KEY, ENV_MODEL, ENV_MODEL_URL, HTTP_MAX_RETRIES
from okaflow._errors import (
    BackendConnectionError,
    BackendError,
    BackendImageLimitError,
    BackendOutputError,
    ConfigurationError,
)
from okaflow._types import Provenance
from okaflow.model_backend._answer import parse_json_answer, split_reasoning
from okaflow.model_backend._http import (
    HttpCall,
    RetryPolicy,
    asend_with_retries,
    astream_with_retries,
    default_timeout,
    send_with_retries,
    stream_with_retries,
)
from okaflow.model_backend._protocol import UnderstandRequest, UnderstandResult, prompt_hash

__all__ = ["UNIMEDVL_CHAT_TEMPLATE", "AsyncOpenAIBackend", "OpenAIBackend", "StreamDelta"]

# UniMedVL (like BAGEL) was trained on role-less segments: "<|im_start|>TEXT<|im_end|>", no
# system/user/assistant names. Send it per request (chat_template=) or pin it on the server
# (vLLM --chat-template FILE). Content is rendered as a string, so vLLM inserts its own image
# placeholders; the generation prompt opens a segment for the answer.
UNIMEDVL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>' }}{% endif %}"
)

_NAME = "openai"
_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


@dataclass(frozen=True)
class StreamDelta:
    """One piece of a streamed chat completion (:meth:`OpenAIBackend.stream`, :meth:`AsyncOpenAIBackend.astream`).

    Attributes:
        text: The content added by this chunk (``""`` if none); the deltas joined are the whole answer.
        reasoning: The reasoning added by this chunk, from the delta's ``reasoning_content`` or ``reasoning``.
        finish_reason: Why generation stopped (``"stop"``, ``"length"``, …), on the chunk that ends it.
        usage: Token counts, only on the last delta and only when the server sends them.
    """

    text: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: dict[str, int] | None = None


class _SSEState:
    """Splits a byte stream into server-sent-event lines and those into :class:`StreamDelta` s."""

    def __init__(self, backend: str, url: str) -> None:
        self.backend = backend
        self.url = url
        self.done = False
        self.finished = False
        self._buffer = b""

    def feed(self, chunk: bytes) -> Iterator[StreamDelta]:
        """The deltas completed by ``chunk``, one line at a time; stops (sets ``done``) at ``data: [DONE]``."""
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            delta = self._line(raw.decode("utf-8", errors="replace").rstrip("\r"))
            if self.done:
                return
            if delta is not None:
                yield delta

    def end(self) -> Iterator[StreamDelta]:
        """At the end of the body: the last unterminated line; a body cut before its end is an error."""
        if not self.done and self._buffer:
            yield from self.feed(b"\n")
        if not self.done and not self.finished:
            raise BackendConnectionError(
                f"the stream from {self.url} ended before data: [DONE]",
                backend=self.backend,
                hint="the server closed the connection mid-answer: check its logs",
            )

    def broken(self, exc: Exception) -> BackendConnectionError:
        """The typed error for a transport failure after the stream started (never retried)."""
        return BackendConnectionError(
            f"the stream from {self.url} broke mid-answer ({type(exc).__name__}: {exc or 'no detail'})",
            backend=self.backend,
            hint="not retried, as part of the answer was already delivered: call again for a whole answer",
        )

    def _line(self, line: str) -> StreamDelta | None:
        if not line.startswith("data:"):
            return None  # blank lines end events; ":" comments, event:, id: and retry: carry no data
        payload = line[5:].strip()
        if payload == "[DONE]":
            self.done = True
            return None
        try:
            data = json.loads(payload)
        except ValueError as exc:
            raise BackendOutputError(
                f"a streamed line is not JSON ({exc})",
                backend=self.backend,
                raw=line,
                hint="is base_url an OpenAI-compatible /v1 endpoint?",
            ) from None
        if not isinstance(data, dict):
            raise BackendOutputError("a streamed line is not a JSON object", backend=self.backend, raw=line)
        if "error" in data and not data.get("choices"):
            error = data["error"]
            said = error.get("message") if isinstance(error, dict) else error
            raise BackendOutputError(f"the server reported an error mid-stream: {said}", backend=self.backend, raw=line)
        choices = data.get("choices") or []
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        delta_in = choice.get("delta")
        delta: dict[str, Any] = delta_in if isinstance(delta_in, dict) else {}
        text = delta.get("content")
        reasoning = next(
            (r for r in (delta.get("reasoning_content"), delta.get("reasoning")) if isinstance(r, str) and r), ""
        )
        finish = choice.get("finish_reason")
        usage_in = data.get("usage")
        usage = (
            {k: v for k, v in usage_in.items() if k in _USAGE_KEYS and isinstance(v, int)}
            if isinstance(usage_in, dict)
            else None
        )
        out = StreamDelta(
            text=text if isinstance(text, str) else "",
            reasoning=reasoning,
            finish_reason=finish if isinstance(finish, str) else None,
            usage=usage or None,
        )
        if out.finish_reason is not None:
            self.finished = True
        return None if out == StreamDelta() else out


class _OpenAICommon:
    """Configuration, request bodies and reply parsing shared by the sync and async clients."""

    name = _NAME
    is_model = True

    def __init__(
        self,
        *,
        base_url: str | None,
        model: str | None,
        api_key: str | None,
        timeout: httpx.Timeout | float | None,
        max_retries: int,
        chat_template: str | None,
        extra_body: dict[str, Any] | None,
        max_images_per_request: int | None,
    ) -> None:
        url = base_url or os.environ.get(ENV_MODEL_URL)
        if not url:
            raise ConfigurationError(
                "no model server URL: pass base_url= or set $" + ENV_MODEL_URL,
                hint="e.g. http://gpu-host:8000/v1",
            )
        chosen = model or os.environ.get(ENV_MODEL)
        if not chosen:
            raise ConfigurationError(
                "no model name: pass model= or set $" + ENV_MODEL,
                hint=f"list what the server serves with GET {url.rstrip('/')}/models",
            )
        if max_retries < 0:
            raise ConfigurationError(f"max_retries must be 0 or more, not {max_retries}")
        self.base_url = url.rstrip("/")
        self.model = chosen
        self._api_key = api_key or os.environ.get(ENV_API_KEY) or None
        if timeout is None:
            self.timeout = default_timeout()
        elif isinstance(timeout, httpx.Timeout):
            self.timeout = timeout
        else:
            self.timeout = httpx.Timeout(timeout)
        self.max_retries = max_retries
        if max_images_per_request is not None and max_images_per_request < 1:
            raise ConfigurationError(f"max_images_per_request must be 1 or more, not {max_images_per_request}")
        self.chat_template = chat_template
        self.extra_body = dict(extra_body or {})
        self.max_images_per_request = max_images_per_request
        self._policy = RetryPolicy(max_retries=max_retries)

    @property
    def model_id(self) -> str:
        """The configured model name (provenance records the name the server reports)."""
        return self.model

    @property
    def root_url(self) -> str:
        """The server root: ``base_url`` without a trailing ``/v1``."""
        return self.base_url.removesuffix("/v1")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r})"

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _call(self, method: str, url: str, body: dict[str, Any] | None = None) -> HttpCall:
        return HttpCall(
            method=method,
            url=url,
            json=body,
            headers=self._headers(),
            timeout=self.timeout,
            policy=self._policy,
            base_url=self.base_url,
            backend=self.name,
        )

    def _stream_call(self, request: UnderstandRequest) -> HttpCall:
        body = self.build_body(request)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        call = self._call("POST", f"{self.base_url}/chat/completions", body)
        call.headers["Accept"] = "text/event-stream"
        return call

    def build_body(self, request: UnderstandRequest) -> dict[str, Any]:
        """The ``/chat/completions`` JSON body for ``request``.

        Raises:
            BackendImageLimitError: More images than ``max_images_per_request``.
            BackendError: The request has images but no user message to attach them to.
        """
        limit = self.max_images_per_request
        if limit is not None and len(request.images) > limit:
            raise BackendImageLimitError(
                f"the request carries {len(request.images)} images; {self.model} at {self.base_url} "
                f"takes at most {limit} per prompt",
                count=len(request.images),
                limit=limit,
                backend=self.name,
            )
        messages: list[dict[str, Any]] = [{"role": m.role, "content": m.content} for m in request.messages]
        if request.images:
            last_user = next((i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "user"), None)
            if last_user is None:
                raise BackendError(
                    f"the request carries {len(request.images)} image(s) but no user message to attach them to",
                    backend=self.name,
                    hint="add a user message to the request",
                )
            parts: list[dict[str, Any]] = [{"type": "text", "text": messages[last_user]["content"]}]
            parts += [{"type": "image_url", "image_url": {"url": image.data_url()}} for image in request.images]
            messages[last_user] = {"role": "user", "content": parts}
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stop:
            body["stop"] = list(request.stop)
        if request.response_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.schema_name or "response",
                    "schema": request.response_schema,
                    "strict": True,
                },
            }
        if self.chat_template is not None:
            body["chat_template"] = self.chat_template
        body.update(self.extra_body)
        return body

    def parse_reply(self, request: UnderstandRequest, response: httpx.Response, latency_s: float) -> UnderstandResult:
        """Turn a 2xx ``/chat/completions`` response into an :class:`UnderstandResult`.

        Raises:
            BackendOutputError: The reply is not a chat completion, was cut at ``max_tokens`` while a
                schema was asked for, or is not a JSON object when a schema was asked for.
        """
        try:
            data = response.json()
            choice = data["choices"][0]
            message = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise BackendOutputError(
                f"{response.request.url} answered {response.status_code} but not with a chat completion",
                backend=self.name,
                raw=response.text,
                hint="is base_url an OpenAI-compatible /v1 endpoint?",
            ) from None
        text = message.get("content") or ""
        reasoning_parts = [
            r for r in (message.get("reasoning_content"), message.get("reasoning")) if isinstance(r, str) and r
        ]
        text, think = split_reasoning(text)
        if think:
            reasoning_parts.append(think)
        parsed = parse_json_answer(text, request, truncated=choice.get("finish_reason") == "length", backend=self.name)
        usage = data.get("usage") or {}
        return UnderstandResult(
            text=text,
            parsed=parsed,
            reasoning="\n".join(p for p in reasoning_parts if p) or None,
            provenance=Provenance(
                backend=self.name,
                model_id=str(data.get("model") or self.model),
                prompt_hash=prompt_hash(request),
                seed=request.seed,
                latency_s=round(latency_s, 3),
                usage={
                    k: int(v)
                    for k, v in usage.items()
                    if k in ("prompt_tokens", "completion_tokens", "total_tokens") and isinstance(v, int)
                },
            ),
        )

    def _served_models(self, response: httpx.Response) -> list[str]:
        try:
            ids = [str(m["id"]) for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise BackendOutputError(
                f"{response.request.url} did not answer with a model list",
                backend=self.name,
                raw=response.text,
                hint="is base_url an OpenAI-compatible /v1 endpoint?",
            ) from None
        if self.model not in ids:
            raise ConfigurationError(
                f"the server at {self.base_url} does not serve model {self.model!r}; it serves {ids}",
                hint=f"pass model= or set ${ENV_MODEL} to one of those",
            )
        return ids


class OpenAIBackend(_OpenAICommon, Closing):
    """A synchronous client for an OpenAI-compatible chat-completions server (vLLM, SGLang, …).

    Args:
        base_url: The API root including ``/v1``, e.g. ``http://gpu-host:8000/v1``; default ``$OKAFLOW_MODEL_URL``.
        model: The served model name; default ``$OKAFLOW_MODEL``.
        api_key: Sent as ``Authorization: Bearer``; default ``$OKAFLOW_API_KEY`` (nothing sent when unset).
        timeout: Per-request timeout, also applied on an injected client; ``None`` means the bounded default
            (connect 5 s, read 120 s, write 30 s, pool 10 s), never "no timeout".
        max_retries: Retries after the first attempt on 408/409/429/5xx, connection errors and timeouts.
        http_client: An ``httpx.Client`` to use (transports, proxies, TLS); it is not closed by this backend.
            Without one, the backend creates and owns a client; close it with :meth:`close` or ``with``.
        chat_template: A request-level chat template (vLLM accepts one; role-less models such as UniMedVL need
            it: :data:`UNIMEDVL_CHAT_TEMPLATE`). The alternative is to pin it on the server (``--chat-template``).
        extra_body: Extra top-level fields merged into every request body last (they override okaflow's).
        max_images_per_request: The server's per-prompt image limit (vLLM ``--limit-mm-per-prompt``): a request
            over it raises :class:`~okaflow.BackendImageLimitError` before sending, and the OKA agent splits
            a step's images into batches of this size. ``None``: no limit known.
        sleep: How to wait between retries (tests pass a recorder); default :func:`time.sleep`.

    Raises:
        ConfigurationError: ``base_url`` or ``model`` is neither passed nor set in the environment.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: httpx.Timeout | float | None = None,
        max_retries: int = HTTP_MAX_RETRIES,
        http_client: httpx.Client | None = None,
        chat_template: str | None = None,
        extra_body: dict[str, Any] | None = None,
        max_images_per_request: int | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            model=model,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            chat_template=chat_template,
            extra_body=extra_body,
            max_images_per_request=max_images_per_request,
        )
        self._owns_client = http_client is None
        self._client = http_client if http_client is not None else httpx.Client(timeout=self.timeout)
        self._sleep = sleep or time.sleep

    def understand(self, request: UnderstandRequest) -> UnderstandResult:
        """POST the request to ``{base_url}/chat/completions`` and parse the reply.

        Provenance ``latency_s`` is the wall time of the whole call, retries included.

        Raises:
            BackendStatusError: A subclass per status (400, 401, 403, 404, 429, 5xx) after any retries.
            BackendConnectionError: The server cannot be reached. BackendTimeoutError: it did not answer in time.
            BackendOutputError: The reply is not what the request asked for.
        """
        body = self.build_body(request)
        started = time.perf_counter()
        response = send_with_retries(
            self._client, self._call("POST", f"{self.base_url}/chat/completions", body), sleep=self._sleep
        )
        return self.parse_reply(request, response, time.perf_counter() - started)

    def stream(self, request: UnderstandRequest) -> Iterator[StreamDelta]:
        """POST the request with ``"stream": true`` and yield the answer as it is generated.

        The body is :meth:`build_body`'s plus ``stream`` and ``stream_options.include_usage``. Retries (as
        in :meth:`understand`) happen only before the first byte of the answer; the response is closed
        when the iterator is exhausted or closed.

        Raises:
            BackendStatusError: A subclass per status, as for :meth:`understand`, after any retries.
            BackendConnectionError: The server cannot be reached, or the stream broke after it started
                (not retried). BackendTimeoutError: it did not start answering in time.
            BackendOutputError: A streamed line is not JSON (``raw`` holds it).
        """
        call = self._stream_call(request)
        state = _SSEState(self.name, call.url)
        with stream_with_retries(self._client, call, sleep=self._sleep) as chunks:
            while True:
                try:
                    chunk = next(chunks, None)
                except httpx.TransportError as exc:
                    raise state.broken(exc) from exc
                if chunk is None:
                    yield from state.end()
                    return
                yield from state.feed(chunk)
                if state.done:
                    return

    async def aunderstand(self, request: UnderstandRequest) -> UnderstandResult:
        """Run :meth:`understand` in a worker thread (use :class:`AsyncOpenAIBackend` for native async)."""
        return await asyncio.to_thread(self.understand, request)

    def check_ready(self) -> list[str]:
        """Check ``{root}/health`` and that ``{base_url}/models`` lists the configured model.

        ``/health`` is vLLM's liveness route; a server without one answers 404 (:class:`BackendNotFoundError`).

        Returns:
            The model ids the server serves.

        Raises:
            ConfigurationError: The configured model is not served (the message lists what is).
            BackendError: The server cannot be reached or answers with an error status.
        """
        send_with_retries(self._client, self._call("GET", f"{self.root_url}/health"), sleep=self._sleep)
        models = send_with_retries(self._client, self._call("GET", f"{self.base_url}/models"), sleep=self._sleep)
        return self._served_models(models)

    def close(self) -> None:
        """Close the HTTP client if this backend created it; an injected client is left open."""
        if self._owns_client:
            self._client.close()


class AsyncOpenAIBackend(_OpenAICommon, AsyncClosing):
    """The async twin of :class:`OpenAIBackend`: the same keyword-only arguments, ``httpx.AsyncClient``.

    Use it with :func:`okaflow.arun`. Its synchronous :meth:`understand` raises
    :class:`~okaflow.ConfigurationError` rather than start a second event loop under the async client
    (whose connections belong to one loop); use :class:`OpenAIBackend` for synchronous runs.

    Args:
        base_url: The API root including ``/v1``; default ``$OKAFLOW_MODEL_URL``.
        model: The served model name; default ``$OKAFLOW_MODEL``.
        api_key: Sent as ``Authorization: Bearer``; default ``$OKAFLOW_API_KEY``.
        timeout: Per-request timeout; ``None`` means the bounded default.
        max_retries: Retries after the first attempt on retryable failures.
        http_client: An ``httpx.AsyncClient`` to use; not closed by this backend.
        chat_template: A request-level chat template sent as ``chat_template``.
        extra_body: Extra top-level fields merged into every request body last.
        max_images_per_request: The server's per-prompt image limit (see :class:`OpenAIBackend`).
        sleep: An async wait between retries; default :func:`asyncio.sleep`.

    Raises:
        ConfigurationError: ``base_url`` or ``model`` is neither passed nor set in the environment.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: httpx.Timeout | float | None = None,
        max_retries: int = HTTP_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
        chat_template: str | None = None,
        extra_body: dict[str, Any] | None = None,
        max_images_per_request: int | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            model=model,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            chat_template=chat_template,
            extra_body=extra_body,
            max_images_per_request=max_images_per_request,
        )
        self._owns_client = http_client is None
        self._client = http_client if http_client is not None else httpx.AsyncClient(timeout=self.timeout)
        self._sleep = sleep or asyncio.sleep

    def understand(self, request: UnderstandRequest) -> UnderstandResult:
        """Not available synchronously.

        Raises:
            ConfigurationError: Always; use :meth:`aunderstand`, :func:`okaflow.arun`, or :class:`OpenAIBackend`.
        """
        raise ConfigurationError(
            "AsyncOpenAIBackend cannot answer synchronously",
            hint="use okaflow.arun(...) with it, or OpenAIBackend for okaflow.run(...)",
        )

    async def aunderstand(self, request: UnderstandRequest) -> UnderstandResult:
        """POST the request to ``{base_url}/chat/completions`` and parse the reply (errors as in the sync twin)."""
        body = self.build_body(request)
        started = time.perf_counter()
        response = await asend_with_retries(
            self._client, self._call("POST", f"{self.base_url}/chat/completions", body), sleep=self._sleep
        )
        return self.parse_reply(request, response, time.perf_counter() - started)

    async def astream(self, request: UnderstandRequest) -> AsyncIterator[StreamDelta]:
        """The async twin of :meth:`OpenAIBackend.stream` (the same body, retries and errors)."""
        call = self._stream_call(request)
        state = _SSEState(self.name, call.url)
        async with astream_with_retries(self._client, call, sleep=self._sleep) as chunks:
            while True:
                try:
                    chunk = await anext(chunks, None)
                except httpx.TransportError as exc:
                    raise state.broken(exc) from exc
                if chunk is None:
                    for delta in state.end():
                        yield delta
                    return
                for delta in state.feed(chunk):
                    yield delta
                if state.done:
                    return

    async def acheck_ready(self) -> list[str]:
        """The async twin of :meth:`OpenAIBackend.check_ready`."""
        await asend_with_retries(self._client, self._call("GET", f"{self.root_url}/health"), sleep=self._sleep)
        models = await asend_with_retries(self._client, self._call("GET", f"{self.base_url}/models"), sleep=self._sleep)
        return self._served_models(models)

    async def aclose(self) -> None:
        """Close the HTTP client if this backend created it; an injected client is left open."""
        if self._owns_client:
            await self._client.aclose()

    async def close(self) -> None:
        """The same as :meth:`aclose` (the name the sync twin uses)."""
        await self.aclose()
