"""Shared by the OpenAI-client contract tests (the endpoint, a client over a MockTransport) and by the
async unit tests elsewhere (a fresh loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

from okaflow.model_backend import OpenAIBackend

BASE = "http://gpu-host:8000/v1"
MODEL = "unimedvl"
Handler = Callable[[httpx.Request], httpx.Response]
T = TypeVar("T")


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run`` in a fresh thread, which owns its loop whatever loop another test left on this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def backend(handler: Handler, sleeps: list[float] | None = None, **kwargs: Any) -> OpenAIBackend:
    """An OpenAIBackend whose server is ``handler``; waits between retries are recorded in ``sleeps``."""
    record = sleeps if sleeps is not None else []
    return OpenAIBackend(
        base_url=BASE,
        model=MODEL,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        sleep=record.append,
        **kwargs,
    )
