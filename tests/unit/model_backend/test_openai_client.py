"""Contract tests of the OpenAI chat-completions wire format, against ``httpx.MockTransport``.

These pin what :class:`OpenAIBackend` / :class:`AsyncOpenAIBackend` send and how they read replies,
retry and fail. No server runs here: tests against a real vLLM engine are a later, integration-tier step.
"""

from __future__ import annotations

import email.utils
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import okaflow
from okaflow import BackendError, BackendOutputError, ConfigurationError
from okaflow.model_backend import (
    AsyncOpenAIBackend,
    BackendAuthenticationError,
    BackendBadRequestError,
    BackendConnectionError,
    BackendNotFoundError,
    BackendPermissionDeniedError,
    BackendRateLimitedError,
    BackendServerError,
    BackendStatusError,
    BackendTimeoutError,
    ChatMessage,
    ModelImage,
    OpenAIBackend,
    UnderstandingBackend,
    UnderstandRequest,
    UnderstandResult,
    prompt_hash,
)

from .conftest import BASE, MODEL, Handler, backend, run_async

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def completion(
    content: str | None,
    *,
    model: str = "served/unimedvl-7b",
    finish_reason: str = "stop",
    **message: Any,
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def request(*, schema: bool = True, images: int = 0, seed: int | None = 7) -> UnderstandRequest:
    return UnderstandRequest(
        purpose="analysis",
        messages=[
            ChatMessage(role="system", content="You are careful."),
            ChatMessage(role="user", content="first question"),
            ChatMessage(role="assistant", content="noted"),
            ChatMessage(role="user", content="describe the images"),
        ],
        images=[
            ModelImage(evidence_id=f"Image/{i}", png=b"\x89PNG" + bytes([i]), width=8, height=8) for i in range(images)
        ],
        response_schema=SCHEMA if schema else None,
        schema_name="Answer" if schema else None,
        seed=seed,
        temperature=0.2,
        max_tokens=64,
    )


class Recorder:
    """A MockTransport handler answering from a script of responses (or exceptions), recording requests."""

    def __init__(self, *answers: httpx.Response | Exception | dict[str, Any]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.requests.append(req)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, dict):
            return httpx.Response(200, json=answer)
        return answer

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


def async_backend(handler: Handler, sleeps: list[float] | None = None, **kwargs: Any) -> AsyncOpenAIBackend:
    record = sleeps if sleeps is not None else []

    async def sleep(seconds: float) -> None:
        record.append(seconds)

    return AsyncOpenAIBackend(
        base_url=BASE,
        model=MODEL,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        sleep=sleep,
        **kwargs,
    )


def async_understand(handler: Handler, req: UnderstandRequest, sleeps: list[float] | None = None) -> UnderstandResult:
    async def go() -> UnderstandResult:
        async with async_backend(handler, sleeps) as client:
            return await client.aunderstand(req)

    return run_async(go)


# --- request body -------------------------------------------------------------------------------


def test_request_body_is_exact() -> None:
    rec = Recorder(completion('{"answer": "ok"}'))
    backend(rec, api_key="sk-test").understand(request(images=2))
    (sent,) = rec.requests
    assert sent.method == "POST"
    assert str(sent.url) == f"{BASE}/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    urls = [ModelImage(evidence_id="x", png=b"\x89PNG" + bytes([i]), width=8, height=8).data_url() for i in range(2)]
    assert json.loads(sent.content) == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are careful."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "noted"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "describe the images"},
                    {"type": "image_url", "image_url": {"url": urls[0]}},
                    {"type": "image_url", "image_url": {"url": urls[1]}},
                ],
            },
        ],
        "temperature": 0.2,
        "max_tokens": 64,
        "seed": 7,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "Answer", "schema": SCHEMA, "strict": True},
        },
    }
    assert urls[0].startswith("data:image/png;base64,")


def test_body_without_schema_images_or_seed_and_with_template_and_extra_body() -> None:
    rec = Recorder(completion("plain"))
    client = backend(rec, chat_template="{{ messages }}", extra_body={"top_p": 0.9, "temperature": 0.0})
    client.understand(request(schema=False, seed=None))
    body = rec.bodies()[0]
    assert "response_format" not in body and "seed" not in body
    assert body["messages"][-1] == {"role": "user", "content": "describe the images"}
    assert body["chat_template"] == "{{ messages }}"
    assert body["top_p"] == 0.9 and body["temperature"] == 0.0  # extra_body is merged last
    assert "authorization" not in rec.requests[0].headers


def test_schema_name_defaults_to_response() -> None:
    rec = Recorder(completion("{}"))
    req = request().model_copy(update={"schema_name": None})
    backend(rec).understand(req)
    assert rec.bodies()[0]["response_format"]["json_schema"]["name"] == "response"


def test_images_without_a_user_message_are_refused() -> None:
    req = request(images=1).model_copy(update={"messages": [ChatMessage(role="system", content="s")]})
    with pytest.raises(BackendError, match="no user message"):
        backend(Recorder(completion("{}"))).understand(req)


# --- reply parsing -------------------------------------------------------------------------------


def test_reply_parsed_with_provenance_from_the_response() -> None:
    req = request()
    result = backend(Recorder(completion('{"answer": "ok"}'))).understand(req)
    assert result.parsed == {"answer": "ok"}
    assert result.reasoning is None
    prov = result.provenance
    assert prov.backend == "openai" and prov.is_model
    assert prov.model_id == "served/unimedvl-7b"
    assert prov.prompt_hash == prompt_hash(req) and prov.seed == 7
    assert prov.latency_s is not None and prov.latency_s >= 0
    assert prov.usage == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


@pytest.mark.parametrize(
    ("content", "extra", "reasoning"),
    [
        ('<think>\nlook at the ventricles\n</think>\n{"answer": "ok"}', {}, "look at the ventricles"),
        ('opened by the template</think>{"answer": "ok"}', {}, "opened by the template"),
        ('{"answer": "ok"}', {"reasoning_content": "server-side split"}, "server-side split"),
    ],
)
def test_think_tags_and_reasoning_content(content: str, extra: dict[str, Any], reasoning: str) -> None:
    result = backend(Recorder(completion(content, **extra))).understand(request())
    assert result.text == '{"answer": "ok"}'
    assert result.parsed == {"answer": "ok"}
    assert result.reasoning == reasoning


def test_without_schema_text_is_returned_unparsed() -> None:
    result = backend(Recorder(completion("<think>hm</think>A normal brain."))).understand(request(schema=False))
    assert (result.text, result.parsed, result.reasoning) == ("A normal brain.", None, "hm")


@pytest.mark.parametrize(
    ("content", "match"), [("The brain is normal.", "not valid JSON"), ("[1, 2]", "not an object")]
)
def test_schema_invalid_reply_raises_with_raw(content: str, match: str) -> None:
    with pytest.raises(BackendOutputError, match=match) as info:
        backend(Recorder(completion(content))).understand(request())
    assert info.value.raw == content


def test_finish_reason_length_with_schema_says_cut_at_max_tokens() -> None:
    with pytest.raises(BackendOutputError, match=r"cut at max_tokens=64") as info:
        backend(Recorder(completion('{"answer": "o', finish_reason="length"))).understand(request())
    assert info.value.raw == '{"answer": "o'


def test_non_completion_body_is_an_output_error() -> None:
    with pytest.raises(BackendOutputError, match="not with a chat completion") as info:
        backend(Recorder(httpx.Response(200, text="<html>hi</html>"))).understand(request())
    assert info.value.raw == "<html>hi</html>"


# --- retries ------------------------------------------------------------------------------------


def test_503_is_retried_with_jittered_exponential_backoff_then_succeeds() -> None:
    rec = Recorder(*[httpx.Response(503)] * 3, completion('{"answer": "ok"}'))
    sleeps: list[float] = []
    result = backend(rec, sleeps).understand(request())
    assert result.parsed == {"answer": "ok"}
    assert len(rec.requests) == 4 and len(sleeps) == 3
    for attempt, slept in enumerate(sleeps):
        assert 0.0 <= slept <= min(8.0, 0.5 * 2**attempt)


def test_503_exhausts_retries_into_server_error() -> None:
    rec = Recorder(httpx.Response(503, json={"message": "engine dead"}, headers={"server": "uvicorn"}))
    sleeps: list[float] = []
    with pytest.raises(BackendServerError) as info:
        backend(rec, sleeps, max_retries=2).understand(request())
    assert len(rec.requests) == 3 and len(sleeps) == 2
    err = info.value
    assert err.status_code == 503 and err.response.status_code == 503
    assert str(err.request.url) == f"{BASE}/chat/completions"
    assert "after 3 attempts" in str(err) and "engine dead" in str(err) and "uvicorn" in str(err)
    assert err.hint is not None and "/health" in err.hint


def test_429_honours_retry_after_seconds_and_http_date() -> None:
    date = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    rec = Recorder(
        httpx.Response(429, headers={"retry-after": "2"}),
        httpx.Response(429, headers={"retry-after": date}),
        httpx.Response(429, headers={"retry-after": "3600"}),
        completion('{"answer": "ok"}'),
    )
    sleeps: list[float] = []
    backend(rec, sleeps).understand(request())
    assert sleeps[0] == 2.0
    assert 25.0 <= sleeps[1] <= 30.0
    assert sleeps[2] == 60.0  # capped
    assert len(rec.requests) == 4


def test_429_exhausted_is_rate_limited() -> None:
    with pytest.raises(BackendRateLimitedError):
        backend(Recorder(httpx.Response(429)), max_retries=1).understand(request())


@pytest.mark.parametrize("code", [408, 409, 500, 502])
def test_other_retryable_statuses(code: int) -> None:
    rec = Recorder(httpx.Response(code), completion('{"answer": "ok"}'))
    sleeps: list[float] = []
    backend(rec, sleeps).understand(request())
    assert len(rec.requests) == 2 and len(sleeps) == 1


def test_connection_error_is_retried_then_typed() -> None:
    rec = Recorder(httpx.ConnectError("[Errno 111] Connection refused"))
    sleeps: list[float] = []
    with pytest.raises(BackendConnectionError, match="cannot reach http://gpu-host:8000/v1/chat/completions") as info:
        backend(rec, sleeps).understand(request())
    assert len(rec.requests) == 4 and len(sleeps) == 3
    assert info.value.hint is not None and "OKAFLOW_MODEL_URL" in info.value.hint
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_connection_error_then_success() -> None:
    rec = Recorder(httpx.ConnectError("refused"), completion('{"answer": "ok"}'))
    assert backend(rec).understand(request()).parsed == {"answer": "ok"}
    assert len(rec.requests) == 2


def test_read_timeout_is_retried_then_typed_apart_from_connection_errors() -> None:
    rec = Recorder(httpx.ReadTimeout("timed out"))
    with pytest.raises(BackendTimeoutError, match="did not answer in time") as info:
        backend(rec, max_retries=1).understand(request())
    assert not isinstance(info.value, BackendConnectionError)
    assert len(rec.requests) == 2


def test_max_retries_zero_sends_once() -> None:
    rec = Recorder(httpx.Response(503))
    sleeps: list[float] = []
    with pytest.raises(BackendServerError):
        backend(rec, sleeps, max_retries=0).understand(request())
    assert len(rec.requests) == 1 and sleeps == []


@pytest.mark.parametrize(
    ("code", "body", "cls", "in_message", "in_hint"),
    [
        (
            400,
            {"object": "error", "message": "This model's maximum context length is 4096 tokens", "code": 400},
            BackendBadRequestError,
            "maximum context length is 4096",
            "context",
        ),
        (401, {"error": {"message": "bad key"}}, BackendAuthenticationError, "bad key", "OKAFLOW_API_KEY"),
        (403, {"detail": "forbidden"}, BackendPermissionDeniedError, "forbidden", "not allowed"),
        (
            404,
            {"error": {"message": "The model `unimedvl` does not exist."}},
            BackendNotFoundError,
            "does not exist",
            f"GET {BASE}/models",
        ),
        (422, {"detail": "unprocessable"}, BackendStatusError, "unprocessable", "server"),
    ],
)
def test_non_retryable_4xx_raise_at_once_with_status_and_hint(
    code: int, body: dict[str, Any], cls: type[BackendStatusError], in_message: str, in_hint: str
) -> None:
    rec = Recorder(httpx.Response(code, json=body))
    sleeps: list[float] = []
    with pytest.raises(cls) as info:
        backend(rec, sleeps).understand(request())
    assert len(rec.requests) == 1 and sleeps == []
    err = info.value
    assert err.status_code == code and err.backend == "openai"
    assert f"POST {BASE}/chat/completions answered {code}" in str(err)
    assert in_message in str(err) and json.loads(err.body) == body
    assert err.hint is not None and in_hint in err.hint


# --- configuration, lifecycle, readiness ------------------------------------------------------------


def test_env_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OKAFLOW_MODEL_URL", "http://env-host:9000/v1/")
    monkeypatch.setenv("OKAFLOW_MODEL", "env-model")
    monkeypatch.setenv("OKAFLOW_API_KEY", "env-key")
    rec = Recorder(completion("{}"))
    with OpenAIBackend(http_client=httpx.Client(transport=httpx.MockTransport(rec))) as client:
        assert (client.base_url, client.model_id, client.root_url) == (
            "http://env-host:9000/v1",
            "env-model",
            "http://env-host:9000",
        )
        client.understand(request())
    assert str(rec.requests[0].url) == "http://env-host:9000/v1/chat/completions"
    assert rec.requests[0].headers["authorization"] == "Bearer env-key"
    assert rec.bodies()[0]["model"] == "env-model"


@pytest.mark.parametrize("cls", [OpenAIBackend, AsyncOpenAIBackend])
def test_missing_url_or_model_names_the_env_var(
    monkeypatch: pytest.MonkeyPatch, cls: type[OpenAIBackend] | type[AsyncOpenAIBackend]
) -> None:
    for name in ("OKAFLOW_MODEL_URL", "OKAFLOW_MODEL", "OKAFLOW_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="OKAFLOW_MODEL_URL"):
        cls(model=MODEL)
    with pytest.raises(ConfigurationError, match="OKAFLOW_MODEL"):
        cls(base_url=BASE)


def test_protocol_and_bounded_default_timeout() -> None:
    client = OpenAIBackend(base_url=BASE, model=MODEL)
    with client:
        assert isinstance(client, UnderstandingBackend)
        assert (client.name, client.is_model, client.model_id) == ("openai", True, MODEL)
        assert client.timeout.connect == 5.0 and client.timeout.read == 120.0
    assert client._client.is_closed  # an owned client is closed on exit
    assert isinstance(AsyncOpenAIBackend(base_url=BASE, model=MODEL), UnderstandingBackend)


def test_timeout_is_sent_per_request_even_on_an_injected_client() -> None:
    rec = Recorder(completion("{}"))
    backend(rec, timeout=httpx.Timeout(3.0, read=9.0)).understand(request())
    assert rec.requests[0].extensions["timeout"]["read"] == 9.0
    assert rec.requests[0].extensions["timeout"]["connect"] == 3.0


def test_injected_clients_are_not_closed() -> None:
    http = httpx.Client(transport=httpx.MockTransport(Recorder(completion("{}"))))
    with OpenAIBackend(base_url=BASE, model=MODEL, http_client=http):
        pass
    assert not http.is_closed
    http.close()

    async def go() -> bool:
        ahttp = httpx.AsyncClient(transport=httpx.MockTransport(Recorder(completion("{}"))))
        async with AsyncOpenAIBackend(base_url=BASE, model=MODEL, http_client=ahttp):
            pass
        still_open = not ahttp.is_closed
        await ahttp.aclose()
        return still_open

    assert run_async(go)


def _server(models: list[str], health: int = 200) -> Handler:
    def handle(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/health":
            return httpx.Response(health)
        if req.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": m, "object": "model"} for m in models]})
        return httpx.Response(404)

    return handle


def test_check_ready_lists_models_or_says_what_is_served() -> None:
    assert backend(_server([MODEL, "other"])).check_ready() == [MODEL, "other"]
    with pytest.raises(ConfigurationError, match=r"does not serve model 'unimedvl'; it serves \['other'\]"):
        backend(_server(["other"])).check_ready()
    with pytest.raises(BackendServerError, match="/health answered 503"):
        backend(_server([MODEL], health=503), max_retries=0).check_ready()


def test_check_ready_async() -> None:
    async def go(models: list[str]) -> list[str]:
        async with async_backend(_server(models)) as client:
            return await client.acheck_ready()

    assert run_async(lambda: go([MODEL])) == [MODEL]
    with pytest.raises(ConfigurationError, match="does not serve"):
        run_async(lambda: go(["other"]))


# --- the async twin --------------------------------------------------------------------------------


def test_async_twin_sends_the_same_body_and_parses_the_same() -> None:
    sync_rec, async_rec = (
        Recorder(completion('<think>r</think>{"answer": "ok"}')),
        Recorder(completion('<think>r</think>{"answer": "ok"}')),
    )
    req = request(images=1)
    a = backend(sync_rec).understand(req)
    b = async_understand(async_rec, req)
    assert sync_rec.bodies() == async_rec.bodies()
    assert (a.text, a.parsed, a.reasoning) == (b.text, b.parsed, b.reasoning)
    assert a.provenance.model_dump(exclude={"latency_s", "created"}) == b.provenance.model_dump(
        exclude={"latency_s", "created"}
    )


def test_async_twin_retries_and_maps_errors_identically() -> None:
    rec = Recorder(httpx.Response(503), httpx.Response(429, headers={"retry-after": "1"}), completion("{}"))
    sleeps: list[float] = []
    assert async_understand(rec, request(), sleeps).parsed == {}
    assert len(rec.requests) == 3 and len(sleeps) == 2 and sleeps[1] == 1.0
    with pytest.raises(BackendNotFoundError):
        async_understand(Recorder(httpx.Response(404)), request())
    conn = Recorder(httpx.ConnectError("refused"))
    with pytest.raises(BackendConnectionError):
        async_understand(conn, request())
    assert len(conn.requests) == 4


def test_async_twin_refuses_sync_understand_and_sync_twin_offers_aunderstand() -> None:
    with pytest.raises(ConfigurationError, match=r"okaflow\.arun"):
        async_backend(Recorder(completion("{}"))).understand(request())
    sync_twin = backend(Recorder(completion('{"answer": "ok"}')))
    result = run_async(lambda: sync_twin.aunderstand(request()))
    assert result.parsed == {"answer": "ok"}


# --- end to end through okaflow.run -----------------------------------------------------------------------


def test_run_end_to_end_over_the_wire(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    cited: list[str] = []

    def handle(req: httpx.Request) -> httpx.Response:
        body = json.loads(req.content)
        seen.append(body)
        assert body["response_format"]["json_schema"]["name"] == "ModelAnalysis"
        parts = body["messages"][-1]["content"]
        assert parts[0]["type"] == "text"
        assert all(p["image_url"]["url"].startswith("data:image/png;base64,") for p in parts[1:])
        found = re.search(r"^Images attached, in order: (.+)\.$", parts[0]["text"], re.MULTILINE)
        assert found is not None
        image_id = found.group(1).split(", ")[0]
        assert f"[{image_id}]" in parts[0]["text"]  # it is a row of the evidence table
        cited.append(image_id)
        analysis = {
            "claims": [
                {
                    "section": "findings",
                    "kind": "image_finding",
                    "text": "The attached MR image is available for review.",
                    "cites": [image_id],
                }
            ],
            "tool_calls": [],
            "visual_requests": [],
            "done": True,
        }
        return httpx.Response(200, json=completion(json.dumps(analysis), model="vllm/unimedvl-test"))

    case = okaflow.Case.load("examples/cases/brain-mri")
    with OpenAIBackend(
        base_url=BASE, model=MODEL, http_client=httpx.Client(transport=httpx.MockTransport(handle))
    ) as model:
        result = okaflow.run(case, backend=model, out=tmp_path / "run")
    assert result.status == "completed" and len(seen) >= 1
    assert len(seen[0]["messages"][-1]["content"]) >= 2  # text + at least one image
    model_blocks = [b for b in result.report.blocks if getattr(b, "author", None) == "model"]
    assert model_blocks
    for block in model_blocks:
        prov = getattr(block, "provenance", None)
        assert prov is not None and prov.backend == "openai" and prov.model_id == "vllm/unimedvl-test"
    assert any(getattr(b, "cites", None) == [cited[0]] for b in model_blocks)
