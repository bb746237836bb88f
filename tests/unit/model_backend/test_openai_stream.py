"""Contract tests of streamed (SSE) chat completions: ``OpenAIBackend.stream`` / ``AsyncOpenAIBackend.astream``.

Against ``httpx.MockTransport`` with streaming bodies; no server runs here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from okaflow.model_backend import (
    AsyncOpenAIBackend,
    BackendConnectionError,
    BackendNotFoundError,
    BackendOutputError,
    BackendServerError,
    ChatMessage,
    StreamDelta,
    UnderstandRequest,
)

from .conftest import BASE, MODEL, Handler, backend, run_async

USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def request() -> UnderstandRequest:
    return UnderstandRequest(
        purpose="analysis",
        messages=[ChatMessage(role="user", content="describe the image")],
        seed=7,
        temperature=0.2,
        max_tokens=64,
    )


def chunk(
    content: str | None = None,
    *,
    reasoning_content: str | None = None,
    reasoning: str | None = None,
    finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
    choices: bool = True,
) -> bytes:
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if reasoning_content is not None:
        delta["reasoning_content"] = reasoning_content
    if reasoning is not None:
        delta["reasoning"] = reasoning
    data: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "served/unimedvl-7b",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}] if choices else [],
        "usage": usage,
    }
    return f"data: {json.dumps(data)}\n\n".encode()


DONE = b"data: [DONE]\n\n"
ANSWER = [
    b": keep-alive comment\n\n",
    chunk("", reasoning_content=None),  # vLLM's role-only first chunk: nothing to yield
    chunk(reasoning_content="look at "),
    chunk(reasoning="the image"),
    chunk("The lesion "),
    chunk("is in the left "),
    chunk("temporal lobe."),
    chunk(finish_reason="stop"),
    chunk(choices=False, usage=USAGE),
    DONE,
]
FULL = "The lesion is in the left temporal lobe."


def sse(parts: list[bytes], *, status: int = 200, split: bool = False) -> httpx.Response:
    """A streamed SSE response; ``split`` cuts the bytes at awkward places (mid-line, mid-UTF-8)."""
    data = b"".join(parts)

    def body() -> Iterator[bytes]:
        step = 7 if split else len(data) or 1
        for i in range(0, len(data), step):
            yield data[i : i + step]

    return httpx.Response(status, headers={"content-type": "text/event-stream"}, content=body())


def asse(parts: list[bytes]) -> httpx.Response:
    data = b"".join(parts)

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 5):
            yield data[i : i + 5]

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


class Recorder:
    """A MockTransport handler answering from a script of response factories (or exceptions)."""

    def __init__(self, *answers: Callable[[], httpx.Response] | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.requests.append(req)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


def async_stream(handler: Handler, sleeps: list[float] | None = None, **kwargs: Any) -> list[StreamDelta]:
    record = sleeps if sleeps is not None else []

    async def sleep(seconds: float) -> None:
        record.append(seconds)

    async def go() -> list[StreamDelta]:
        async with AsyncOpenAIBackend(
            base_url=BASE,
            model=MODEL,
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
            sleep=sleep,
            **kwargs,
        ) as client:
            return [d async for d in client.astream(request())]

    return run_async(go)


# --- the sync client ----------------------------------------------------------------------------


@pytest.mark.parametrize("split", [False, True])
def test_deltas_join_to_the_full_text_with_reasoning_apart_and_usage_last(split: bool) -> None:
    rec = Recorder(lambda: sse(ANSWER, split=split))
    deltas = list(backend(rec).stream(request()))
    assert "".join(d.text for d in deltas) == FULL
    assert "".join(d.reasoning for d in deltas) == "look at the image"
    assert all(d.reasoning == "" for d in deltas if d.text)
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert deltas[-1].usage == USAGE
    assert all(d.usage is None for d in deltas[:-1])
    assert all(d != StreamDelta() for d in deltas)


def test_body_is_the_normal_body_plus_stream_fields() -> None:
    normal = Recorder(lambda: httpx.Response(200, json={"choices": [{"message": {"content": "x"}}]}))
    backend(normal).understand(request())
    streamed = Recorder(lambda: sse(ANSWER))
    list(backend(streamed, api_key="sk-test").stream(request()))
    (sent,) = streamed.requests
    assert sent.method == "POST" and str(sent.url) == f"{BASE}/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.headers["accept"] == "text/event-stream"
    assert streamed.bodies()[0] == {**normal.bodies()[0], "stream": True, "stream_options": {"include_usage": True}}


def test_done_stops_the_stream() -> None:
    rec = Recorder(lambda: sse([chunk("a"), DONE, chunk("never"), b"data: not json\n\n"]))
    assert [d.text for d in backend(rec).stream(request())] == ["a"]


def test_malformed_line_is_an_output_error_with_the_raw_line() -> None:
    rec = Recorder(lambda: sse([chunk("a"), b"data: {not json\n\n", DONE]))
    it = backend(rec).stream(request())
    assert next(it).text == "a"
    with pytest.raises(BackendOutputError) as info:
        next(it)
    assert info.value.raw == "data: {not json"


def test_server_error_object_mid_stream_is_an_output_error() -> None:
    rec = Recorder(lambda: sse([b'data: {"error": {"message": "engine died"}}\n\n']))
    with pytest.raises(BackendOutputError, match="engine died"):
        list(backend(rec).stream(request()))


def test_503_before_the_stream_is_retried_with_injected_sleep() -> None:
    rec = Recorder(lambda: httpx.Response(503), lambda: httpx.Response(503), lambda: sse(ANSWER))
    sleeps: list[float] = []
    deltas = list(backend(rec, sleeps).stream(request()))
    assert "".join(d.text for d in deltas) == FULL
    assert len(rec.requests) == 3 and len(sleeps) == 2
    for attempt, slept in enumerate(sleeps):
        assert 0.0 <= slept <= min(8.0, 0.5 * 2**attempt)


def test_connect_error_before_the_stream_is_retried() -> None:
    rec = Recorder(httpx.ConnectError("refused"), lambda: sse(ANSWER))
    sleeps: list[float] = []
    assert "".join(d.text for d in backend(rec, sleeps).stream(request())) == FULL
    assert len(rec.requests) == 2 and len(sleeps) == 1


def test_404_is_not_retried_and_maps_as_for_understand() -> None:
    rec = Recorder(lambda: httpx.Response(404, json={"message": "model unimedvl does not exist"}))
    sleeps: list[float] = []
    with pytest.raises(BackendNotFoundError, match="does not exist") as info:
        list(backend(rec, sleeps).stream(request()))
    assert len(rec.requests) == 1 and sleeps == []
    assert info.value.status_code == 404


def test_503_exhausted_is_a_server_error() -> None:
    rec = Recorder(lambda: httpx.Response(503, json={"message": "engine dead"}))
    with pytest.raises(BackendServerError, match="after 3 attempts"):
        list(backend(rec, max_retries=2).stream(request()))
    assert len(rec.requests) == 3


def test_a_stream_broken_after_deltas_is_a_connection_error_and_not_retried() -> None:
    def broken() -> Iterator[bytes]:
        yield chunk("The lesion ")
        raise httpx.ReadError("connection reset")

    rec = Recorder(lambda: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=broken()))
    sleeps: list[float] = []
    it = backend(rec, sleeps).stream(request())
    assert next(it).text == "The lesion "
    with pytest.raises(BackendConnectionError, match="broke mid-answer"):
        next(it)
    assert len(rec.requests) == 1 and sleeps == []


def test_a_stream_that_ends_without_done_or_finish_is_a_connection_error() -> None:
    rec = Recorder(lambda: sse([chunk("The lesion ")]))
    with pytest.raises(BackendConnectionError, match=r"ended before data: \[DONE\]"):
        list(backend(rec).stream(request()))
    finished = Recorder(lambda: sse([chunk("all", finish_reason="stop")]))
    assert [d.text for d in backend(finished).stream(request())] == ["all"]


def test_the_response_is_closed_when_the_iterator_is_closed() -> None:
    closed: list[bool] = []

    class Body(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield b"".join(ANSWER)

        def close(self) -> None:
            closed.append(True)

    rec = Recorder(lambda: httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Body()))
    it = backend(rec).stream(request())
    next(it)
    assert closed == []
    it.close()  # type: ignore[attr-defined]
    assert closed == [True]


# --- the async twin -----------------------------------------------------------------------------


def test_async_twin_streams_the_same() -> None:
    sync_rec, async_rec = Recorder(lambda: sse(ANSWER)), Recorder(lambda: asse(ANSWER))
    assert async_stream(async_rec) == list(backend(sync_rec).stream(request()))
    assert sync_rec.bodies() == async_rec.bodies()


def test_async_twin_retries_and_maps_errors_identically() -> None:
    rec = Recorder(lambda: httpx.Response(503), lambda: asse(ANSWER))
    sleeps: list[float] = []
    deltas = async_stream(rec, sleeps)
    assert "".join(d.text for d in deltas) == FULL and deltas[-1].usage == USAGE
    assert len(rec.requests) == 2 and len(sleeps) == 1
    not_found = Recorder(lambda: httpx.Response(404))
    with pytest.raises(BackendNotFoundError):
        async_stream(not_found, sleeps)
    assert len(not_found.requests) == 1 and len(sleeps) == 1


def test_async_twin_done_malformed_and_broken_streams() -> None:
    assert [d.text for d in async_stream(Recorder(lambda: asse([chunk("a"), DONE, b"data: x\n\n"])))] == ["a"]
    with pytest.raises(BackendOutputError) as info:
        async_stream(Recorder(lambda: asse([b"data: {oops\n\n"])))
    assert info.value.raw == "data: {oops"

    async def broken() -> AsyncIterator[bytes]:
        yield chunk("a")
        raise httpx.ReadError("connection reset")

    rec = Recorder(lambda: httpx.Response(200, content=broken()))
    with pytest.raises(BackendConnectionError, match="broke mid-answer"):
        async_stream(rec)
    assert len(rec.requests) == 1
