"""okaflow's OpenAI-compatible clients against the real vLLM engine (CPU build, tiny seeded models).

The models are random, so the tests check the wire and the contract — schema-valid JSON, image
input, streaming, seeds, typed errors, concurrency, provenance — never what the text says.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import pytest
from PIL import Image
from pydantic import BaseModel, Field

from okaflow import (
    BackendBadRequestError,
    BackendConnectionError,
    BackendContextLengthError,
    BackendImageLimitError,
    BackendNotFoundError,
    ConfigurationError,
)
from okaflow.model_backend import (
    UNIMEDVL_CHAT_TEMPLATE,
    AsyncOpenAIBackend,
    ChatMessage,
    ModelImage,
    OpenAIBackend,
    UnderstandRequest,
    VLLMServer,
    json_schema_for,
    prompt_hash,
)

from .conftest import MAX_MODEL_LEN, TEXT_MODEL, VISION_MODEL, Servers, make_server

pytestmark = pytest.mark.integration
T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a fresh loop in its own thread (pytest's main thread may hold a loop)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


class Finding(BaseModel):
    """A small answer schema with closed fields (guided decoding fills them validly every time)."""

    status: Literal["stable", "progressed", "regressed"]
    urgent: bool
    note: str = Field(max_length=24)
    size_mm: int = Field(ge=0, le=300)


def ask(content: str = "Summarise the chest CT.", **fields: Any) -> UnderstandRequest:
    return UnderstandRequest(purpose="test", messages=[ChatMessage(role="user", content=content)], **fields)


def png_image(evidence_id: str, size: int = 378, colour: tuple[int, int, int] = (90, 40, 20)) -> ModelImage:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "PNG")
    return ModelImage(evidence_id=evidence_id, png=buf.getvalue(), width=size, height=size)


def test_readiness_lists_the_served_model(vllm_servers: Servers) -> None:
    with OpenAIBackend(base_url=vllm_servers.text.base_url, model=TEXT_MODEL) as backend:
        assert backend.check_ready() == [TEXT_MODEL]
    with (
        OpenAIBackend(base_url=vllm_servers.text.base_url, model="unimedvl") as wrong,
        pytest.raises(ConfigurationError, match=r"does not serve model 'unimedvl'.*tiny-qwen2"),
    ):
        wrong.check_ready()


def test_wrong_model_name_is_a_typed_not_found_error(vllm_servers: Servers) -> None:
    with (
        OpenAIBackend(base_url=vllm_servers.text.base_url, model="no-such-model") as backend,
        pytest.raises(BackendNotFoundError) as info,
    ):
        backend.understand(ask(max_tokens=4))
    assert info.value.status_code == 404
    assert "no-such-model" in str(info.value)
    assert "/models" in (info.value.hint or "")


def test_structured_output_round_trips_into_a_pydantic_model(vllm_servers: Servers) -> None:
    request = ask(response_schema=json_schema_for(Finding), schema_name="Finding", max_tokens=200)
    with OpenAIBackend(base_url=vllm_servers.text.base_url, model=TEXT_MODEL) as backend:
        result = backend.understand(request)
    finding = result.as_model(Finding)
    assert finding.status in ("stable", "progressed", "regressed")
    assert len(finding.note) <= 24
    assert result.parsed == finding.model_dump()
    prov = result.provenance
    assert prov.backend == "openai"
    assert prov.model_id == TEXT_MODEL  # as the server reports it
    assert prov.prompt_hash == prompt_hash(request)
    assert prov.seed == 0
    assert prov.latency_s > 0
    assert prov.usage["prompt_tokens"] > 0
    assert prov.usage["completion_tokens"] > 0


def test_async_client_returns_the_same_answer_as_the_sync_client(vllm_servers: Servers) -> None:
    request = ask(response_schema=json_schema_for(Finding), schema_name="Finding", max_tokens=200, seed=3)
    with OpenAIBackend(base_url=vllm_servers.text.base_url, model=TEXT_MODEL) as sync_backend:
        expected = sync_backend.understand(request).parsed

    async def go() -> dict[str, Any] | None:
        async with AsyncOpenAIBackend(base_url=vllm_servers.text.base_url, model=TEXT_MODEL) as backend:
            return (await backend.aunderstand(request)).parsed

    assert run_async(go()) == expected


def test_image_input_reaches_the_vision_model(vllm_servers: Servers) -> None:
    with OpenAIBackend(base_url=vllm_servers.vision.base_url, model=VISION_MODEL) as backend:
        without = backend.understand(ask("Describe.", max_tokens=8))
        with_image = backend.understand(ask("Describe.", images=[png_image("ImagingStudy/ct")], max_tokens=8))
    # BLIP-2 puts its 4 query tokens in front of the prompt for the image.
    assert with_image.provenance.usage["prompt_tokens"] == without.provenance.usage["prompt_tokens"] + 4
    assert with_image.provenance.prompt_hash != without.provenance.prompt_hash


def test_per_prompt_image_limit_is_a_typed_error_before_and_at_the_server(vllm_servers: Servers) -> None:
    two = ask("Compare.", images=[png_image("a"), png_image("b", colour=(0, 0, 0))], max_tokens=4)
    with (
        OpenAIBackend(base_url=vllm_servers.vision.base_url, model=VISION_MODEL, max_images_per_request=1) as b,
        pytest.raises(BackendImageLimitError) as before,
    ):
        b.understand(two)
    assert (before.value.count, before.value.limit) == (2, 1)
    # Without the limit configured, the server refuses and the hint says how to configure it.
    with (
        OpenAIBackend(base_url=vllm_servers.vision.base_url, model=VISION_MODEL) as b,
        pytest.raises(BackendBadRequestError, match="At most 1 image") as server,
    ):
        b.understand(two)
    assert "max_images_per_request" in (server.value.hint or "")


def test_streaming_joins_to_the_same_text_as_one_answer(vllm_servers: Servers) -> None:
    request = ask("Stream this.", max_tokens=24, seed=5)
    with OpenAIBackend(base_url=vllm_servers.text.base_url, model=TEXT_MODEL) as backend:
        whole = backend.understand(request)
        deltas = list(backend.stream(request))
    assert len(deltas) > 1
    assert "".join(d.text for d in deltas) == whole.text
    assert deltas[-1].usage == whole.provenance.usage
    assert any(d.finish_reason == "length" for d in deltas)

    async def go() -> str:
        async with AsyncOpenAIBackend(base_url=vllm_servers.text.base_url, model=TEXT_MODEL) as backend:
            return "".join([d.text async for d in backend.astream(request)])

    assert run_async(go()) == whole.text


def test_seed_makes_sampling_reproducible(vllm_servers: Servers) -> None:
    with OpenAIBackend(base_url=vllm_servers.text.base_url, model=TEXT_MODEL) as backend:

        def sample(seed: int) -> str:
            return backend.understand(ask("Say anything.", temperature=1.0, seed=seed, max_tokens=24)).text

        first = sample(11)
        assert sample(11) == first
        others = {sample(seed) for seed in (12, 13, 14)}
    assert others - {first}, "different seeds never changed a sampled answer: is the seed sent?"


def test_context_length_overflow_is_a_typed_error(vllm_servers: Servers) -> None:
    long_prompt = "lesion " * MAX_MODEL_LEN
    with (
        OpenAIBackend(base_url=vllm_servers.text.base_url, model=TEXT_MODEL) as backend,
        pytest.raises(BackendContextLengthError) as info,
    ):
        backend.understand(ask(long_prompt, max_tokens=16))
    assert info.value.status_code == 400
    assert "context" in str(info.value).lower()
    assert "max_tokens" in (info.value.hint or "")


def test_role_less_chat_template_is_applied_by_the_server(vllm_servers: Servers) -> None:
    request = ask("Describe the image.", max_tokens=2)
    url = vllm_servers.text.base_url
    with OpenAIBackend(base_url=url, model=TEXT_MODEL) as chatml:
        default_tokens = chatml.understand(request).provenance.usage["prompt_tokens"]
    with OpenAIBackend(base_url=url, model=TEXT_MODEL, chat_template=UNIMEDVL_CHAT_TEMPLATE) as roleless:
        roleless_tokens = roleless.understand(request).provenance.usage["prompt_tokens"]
    # The same text without the "user\n" and "assistant\n" role names: fewer prompt tokens.
    assert 0 < roleless_tokens < default_tokens
    with httpx.Client() as client:
        rendered = client.post(
            url.removesuffix("/v1") + "/tokenize",
            json={
                "model": TEXT_MODEL,
                "messages": [{"role": "user", "content": "Describe the image."}],
                "chat_template": UNIMEDVL_CHAT_TEMPLATE,
                "add_generation_prompt": True,
            },
        ).json()
    assert rendered["count"] == roleless_tokens


def test_request_chat_template_refused_by_an_untrusting_server_says_what_to_do(vllm_servers: Servers) -> None:
    # The vision server runs without --trust-request-chat-template (vLLM's default).
    with (
        OpenAIBackend(
            base_url=vllm_servers.vision.base_url, model=VISION_MODEL, chat_template=UNIMEDVL_CHAT_TEMPLATE
        ) as b,
        pytest.raises(BackendBadRequestError, match="chat template") as info,
    ):
        b.understand(ask(max_tokens=2))
    assert "--chat-template" in (info.value.hint or "")
    assert "trust_request_chat_template" in (info.value.hint or "")


def test_concurrent_async_requests_all_succeed(vllm_servers: Servers) -> None:
    requests = [ask(f"Case {i}.", max_tokens=8, seed=i) for i in range(32)]

    async def go() -> list[str]:
        async with AsyncOpenAIBackend(base_url=vllm_servers.text.base_url, model=TEXT_MODEL) as backend:
            results = await asyncio.gather(*(backend.aunderstand(r) for r in requests))
        return [r.provenance.prompt_hash for r in results]

    hashes = run_async(go())
    assert hashes == [prompt_hash(r) for r in requests]


def test_server_stopped_mid_session_retries_then_raises_a_typed_error(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    server: VLLMServer = make_server(tiny_models["qwen2-text"], "doomed", tmp_path / "cache")
    slept: list[float] = []
    with server:
        backend = OpenAIBackend(base_url=server.base_url, model="doomed", max_retries=2, sleep=slept.append)
        assert backend.understand(ask(max_tokens=4)).provenance.model_id == "doomed"
        server.stop()
        assert not server.running
        with pytest.raises(BackendConnectionError) as info:
            backend.understand(ask(max_tokens=4))
        backend.close()
    assert len(slept) == 2, "two retries, each after a backoff"
    assert "after 3 attempts" in str(info.value)
    assert server.base_url.removesuffix("/v1") in str(info.value)


def stop_inside(text: str) -> str:
    """A stop sequence that first occurs well inside ``text`` (two characters from its middle)."""
    for start in range(len(text) // 2, len(text) - 1):
        candidate = text[start : start + 2]
        if text.find(candidate) >= 1:
            return candidate
    raise AssertionError(f"no usable stop sequence in {text!r}")


def test_stop_sequences_end_the_answer_before_them(vllm_servers: Servers) -> None:
    with OpenAIBackend(base_url=vllm_servers.text.base_url, model=TEXT_MODEL) as backend:
        whole = backend.understand(ask("Write on.", max_tokens=24, temperature=1.0, seed=9)).text
        stop = stop_inside(whole)
        cut = backend.understand(ask("Write on.", max_tokens=24, temperature=1.0, seed=9, stop=[stop]))
    assert cut.text == whole[: whole.find(stop)]
    assert cut.provenance.usage["completion_tokens"] < 24
