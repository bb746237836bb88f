"""The sync and async image-endpoint generators (same keyword-only arguments, like the understanding clients).

See :mod:`okaflow.tools.generation._endpoint` for the wire formats. Requests go through the one HTTP layer
of :mod:`okaflow.model_backend._http`: bounded timeouts, retries with backoff on 408/409/429/5xx and
connection failures, ``Retry-After`` honoured, typed errors (:class:`~okaflow.BackendStatusError` …).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import httpx

from okaflow._closing import AsyncClosing, Closing
from okaflow._constants import HTTP_MAX_RETRIES
from okaflow._errors import ConfigurationError
from okaflow.model_backend._http import asend_with_retries, send_with_retries
from okaflow.tools.generation._endpoint import ImageEndpointCommon
from okaflow.tools.generation._limits import UNIMEDVL_LIMITS, GenerationLimits
from okaflow.tools.generation._protocol import GenerationRequest, GenerationResult
from okaflow.tools.generation._tasks import TaskRequest, as_request, parse_task
from okaflow.tools.imaging import MedicalImage

__all__ = ["AsyncImageEndpointGenerator", "ImageEndpointGenerator"]


class ImageEndpointGenerator(ImageEndpointCommon, Closing):
    """A synchronous generator over an OpenAI-style image endpoint (vllm-omni serving BAGEL / UniMedVL).

    Args:
        base_url: The API root including ``/v1``; default ``$OKAFLOW_GENERATION_URL``, then ``$OKAFLOW_MODEL_URL``.
        model: The served model name; default ``$OKAFLOW_GENERATION_MODEL``, then ``$OKAFLOW_MODEL``.
        api_key: Sent as ``Authorization: Bearer``; default ``$OKAFLOW_API_KEY``.
        api: ``"images"`` (``/images/generations`` and ``/images/edits``) or ``"chat"`` (chat completions
            answering with ``image_url`` data URLs, and text such as a counterfactual's explanation).
        sampling: ``"bagel"`` sends BAGEL's knobs with its documented defaults; ``"generic"`` sends only
            ``num_inference_steps`` / ``guidance_scale`` when a request sets them.
        timeout: Per-request timeout; ``None``: connect 5 s, read 600 s (one whole generation), write 30 s.
        max_retries: Retries after the first attempt on retryable failures.
        http_client: An ``httpx.Client`` to use (not closed by this generator).
        limits: Sizes the model generates (UniMedVL's by default); ``None`` checks nothing.
        extra_body: Fields merged into every request body last.
        sleep: How to wait between retries (tests pass a recorder).

    Raises:
        ConfigurationError: No URL or model name, or an unknown ``api`` / ``sampling``.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        api: Literal["images", "chat"] = "images",
        sampling: Literal["bagel", "generic"] = "bagel",
        timeout: httpx.Timeout | float | None = None,
        max_retries: int = HTTP_MAX_RETRIES,
        http_client: httpx.Client | None = None,
        limits: GenerationLimits | None = UNIMEDVL_LIMITS,
        extra_body: dict[str, Any] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            model=model,
            api_key=api_key,
            api=api,
            sampling=sampling,
            timeout=timeout,
            max_retries=max_retries,
            limits=limits,
            extra_body=extra_body,
        )
        self._owns_client = http_client is None
        self._client = http_client if http_client is not None else httpx.Client(timeout=self.timeout)
        self._sleep = sleep or time.sleep

    def generate(
        self, request: GenerationRequest | TaskRequest, images: Mapping[str, MedicalImage]
    ) -> GenerationResult:
        """Send the request (one HTTP call per output image) and label what comes back.

        Raises:
            BackendStatusError: A subclass per HTTP status, after any retries.
            BackendConnectionError / BackendTimeoutError: The endpoint cannot be reached, or is too slow.
            BackendOutputError: The reply holds no decodable image.
            GenerationTaskError / GenerationSizeError / ConfigurationError: The request cannot be sent.
        """
        started = time.perf_counter()
        built = self.build(parse_task(as_request(request)), images)
        replies = [self.parse(send_with_retries(self._client, call, sleep=self._sleep)) for call in built.calls]
        return self.result(built, replies, images, started)

    def close(self) -> None:
        """Close the HTTP client if this generator created it."""
        if self._owns_client:
            self._client.close()


class AsyncImageEndpointGenerator(ImageEndpointCommon, AsyncClosing):
    """The async twin of :class:`ImageEndpointGenerator` (same arguments, an ``httpx.AsyncClient``).

    :meth:`agenerate` sends a request's calls (one per output image) concurrently. Its synchronous
    :meth:`generate` raises :class:`~okaflow.ConfigurationError` rather than start a second event loop
    under the async client; use :class:`ImageEndpointGenerator` where a synchronous call is needed.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        api: Literal["images", "chat"] = "images",
        sampling: Literal["bagel", "generic"] = "bagel",
        timeout: httpx.Timeout | float | None = None,
        max_retries: int = HTTP_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
        limits: GenerationLimits | None = UNIMEDVL_LIMITS,
        extra_body: dict[str, Any] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            model=model,
            api_key=api_key,
            api=api,
            sampling=sampling,
            timeout=timeout,
            max_retries=max_retries,
            limits=limits,
            extra_body=extra_body,
        )
        self._owns_client = http_client is None
        self._client = http_client if http_client is not None else httpx.AsyncClient(timeout=self.timeout)
        self._sleep = sleep or asyncio.sleep

    #: Only :meth:`agenerate` works: the agent refuses this generator up front (``require_synchronous``).
    synchronous = False

    def generate(
        self, request: GenerationRequest | TaskRequest, images: Mapping[str, MedicalImage]
    ) -> GenerationResult:
        """Not available synchronously.

        Raises:
            ConfigurationError: Always; use :meth:`agenerate` or :class:`ImageEndpointGenerator`.
        """
        raise ConfigurationError(
            "AsyncImageEndpointGenerator cannot generate synchronously",
            hint="await agenerate(...), or use ImageEndpointGenerator",
        )

    async def agenerate(
        self, request: GenerationRequest | TaskRequest, images: Mapping[str, MedicalImage]
    ) -> GenerationResult:
        """The async twin of :meth:`ImageEndpointGenerator.generate` (the same body, retries and errors)."""
        started = time.perf_counter()
        built = self.build(parse_task(as_request(request)), images)
        responses = await asyncio.gather(
            *(asend_with_retries(self._client, call, sleep=self._sleep) for call in built.calls)
        )
        return self.result(built, [self.parse(r) for r in responses], images, started)

    async def aclose(self) -> None:
        """Close the HTTP client if this generator created it."""
        if self._owns_client:
            await self._client.aclose()
