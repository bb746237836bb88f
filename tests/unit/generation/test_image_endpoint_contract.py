"""Contract tests of the image-endpoint generators against ``httpx.MockTransport``.

No vllm-omni server (BAGEL / UniMedVL generation) can run on these machines, so these tests pin the wire
format as vllm-omni documents it: ``/v1/images/generations`` (JSON in, ``data[].b64_json`` out),
``/v1/images/edits`` (multipart in), and chat completions with ``"modalities": ["image"]`` answering with
``image_url`` data URLs; BAGEL's knobs in the body's top level. The HTTP behaviour (retries, errors) is the
understanding client's own layer, checked here through the generators.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import email
import io
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from okaflow import (
    BackendBadRequestError,
    BackendConnectionError,
    BackendOutputError,
    BackendTimeoutError,
    ConfigurationError,
    GenerationSizeError,
    GenerationTaskError,
)
from okaflow._case import resolve_image_path
from okaflow._constants import SYNTHETIC_LABEL
from okaflow.tools.generation import (
    AsyncImageEndpointGenerator,
    BagelKnobs,
    Counterfactual,
    GenerationLimits,
    GenerationRequest,
    ImageEndpointGenerator,
    SuperResolution,
    TextToImage,
)
from okaflow.tools.imaging import MedicalImage, load_image

BASE = "http://gpu-host:8000/v1"
MODEL = "unimedvl"
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(scope="module")
def images() -> dict[str, MedicalImage]:
    mr = load_image(resolve_image_path("pydicom:MR_small.dcm", Path.cwd()))
    return {mr.id: mr}


def png_b64(size: tuple[int, int] = (64, 64), colour: int = 90) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (colour, colour, colour)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def images_reply(size: tuple[int, int] = (64, 64), **extra: Any) -> httpx.Response:
    """vllm-omni's ImageGenerationResponse."""
    body = {
        "created": 1,
        "data": [{"b64_json": png_b64(size)}],
        "output_format": "png",
        "size": "x".join(map(str, size)),
    }
    return httpx.Response(200, json={**body, **extra})


def generator(handler: Handler, sleeps: list[float] | None = None, **kwargs: Any) -> ImageEndpointGenerator:
    record = sleeps if sleeps is not None else []
    options = {"base_url": BASE, "model": MODEL, **kwargs}
    return ImageEndpointGenerator(
        http_client=httpx.Client(transport=httpx.MockTransport(handler)), sleep=record.append, **options
    )


def form_fields(request: httpx.Request) -> dict[str, Any]:
    """A multipart request's fields: text values, and (filename, bytes) for files."""
    message = email.message_from_bytes(
        b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + request.read()
    )
    fields: dict[str, Any] = {}
    for part in message.get_payload():  # type: ignore[union-attr]
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        filename = part.get_filename()
        fields[name] = (filename, payload) if filename else payload.decode()
    return fields


def mr_id(images: dict[str, MedicalImage]) -> str:
    return next(iter(images))


def test_text_to_image_posts_json_to_images_generations_with_bagel_defaults(images: dict[str, MedicalImage]) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return images_reply((512, 512))

    gen = generator(handler, api_key="k-123")
    result = gen.generate(
        TextToImage(prompt="right lower lobe consolidation", modality="CXR", width=512, height=512, seed=9), images
    )
    (request,) = seen
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/images/generations")
    assert request.headers["authorization"] == "Bearer k-123"
    assert json.loads(request.content) == {
        "model": MODEL,
        "prompt": "chest X-ray: right lower lobe consolidation",
        "n": 1,
        "response_format": "b64_json",
        "size": "512x512",
        "seed": 9,
        "num_inference_steps": 50,
        "cfg_text_scale": 4.0,
        "cfg_interval": [0.4, 1.0],
        "cfg_renorm_type": "global",
        "timestep_shift": 3.0,
    }
    assert (result.backend, result.model_id, result.seed, result.ai_generated) == ("image-endpoint", MODEL, 9, True)
    assert result.label == SYNTHETIC_LABEL and result.images[0].size == (512, 512)  # the band overlays 512 px
    assert result.params_used["cfg_text_scale"] == 4.0 and result.params_used["returned_sizes"] == [[512, 512]]
    assert "seed 9" in result.captions[0] and MODEL in result.captions[0]


def test_image_tasks_post_the_source_as_multipart_to_images_edits(images: dict[str, MedicalImage]) -> None:
    bodies: list[bytes] = []
    fields: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == f"{BASE}/images/edits"
        assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
        bodies.append(request.read())
        fields.append(form_fields(request))
        if len(bodies) == 1:
            return httpx.Response(503, headers={"Retry-After": "2"}, json={"error": {"message": "busy"}})
        return images_reply(cot_output="<think>remove the consolidation</think>")

    sleeps: list[float] = []
    gen = generator(handler, sleeps)
    edit = Counterfactual(sources=[mr_id(images)], edit="this image without the lesion", seed=4, image_guidance=1.5)
    result = gen.generate(edit, images)
    assert sleeps == [2.0] and fields[0] == fields[1], "a retried multipart request sends the same form"
    sent = fields[-1]
    filename, png = sent.pop("image")
    assert filename == "source.png" and Image.open(io.BytesIO(png)).size == (64, 64)
    assert sent == {
        "model": MODEL,
        "prompt": "this image without the lesion",
        "n": "1",
        "response_format": "b64_json",
        "size": "64x64",
        "seed": "4",
        "num_inference_steps": "50",
        "cfg_text_scale": "4.0",
        "cfg_img_scale": "1.5",
        "cfg_interval": "[0.0, 1.0]",
        "cfg_renorm_type": "text_channel",
        "timestep_shift": "3.0",
    }
    assert result.text == "<think>remove the consolidation</think>"
    assert result.derived_from == [mr_id(images)] and result.params_used["source_sizes"] == [[64, 64]]


def test_chat_api_sends_a_role_less_prompt_and_reads_images_and_the_explanation(
    images: dict[str, MedicalImage],
) -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == f"{BASE}/chat/completions"
        seen.append(json.loads(request.content))
        return httpx.Response(
            200,
            json={
                "model": "unimedvl-14b",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "The lesion was removed; edges kept."}},
                    {
                        "index": 1,
                        "message": {
                            "role": "assistant",
                            "content": [
                                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + png_b64()}}
                            ],
                        },
                    },
                ],
            },
        )

    gen = generator(handler, api="chat", extra_body={"bot_task": "cot"})
    edit = Counterfactual(
        sources=[mr_id(images)], edit="without the lesion", seed=1, bagel=BagelKnobs(timestep_shift=2.5)
    )
    result = gen.generate(edit, images)
    (body,) = seen
    text, picture = body["messages"][0]["content"]
    assert body["messages"][0]["role"] == "user" and text == {
        "type": "text",
        "text": "<|im_start|>without the lesion<|im_end|>",
    }
    assert picture["type"] == "image_url" and picture["image_url"]["url"].startswith("data:image/png;base64,")
    assert body["modalities"] == ["image"] and (body["width"], body["height"]) == (64, 64)
    assert (body["timestep_shift"], body["cfg_img_scale"], body["seed"], body["bot_task"]) == (2.5, 2.0, 1, "cot")
    assert result.text == "The lesion was removed; edges kept."
    assert result.model_id == "unimedvl-14b", "provenance names the model the server reports"


def test_each_output_image_is_its_own_seeded_request(images: dict[str, MedicalImage]) -> None:
    seeds: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seeds.append(json.loads(request.content)["seed"])
        return images_reply()

    result = generator(handler).generate(TextToImage(prompt="fundus", modality="CFP", seed=20, num_images=3), images)
    assert seeds == [20, 21, 22] and result.params_used["seeds"] == [20, 21, 22] and len(result.images) == 3


def test_requests_that_cannot_be_honoured_fail_before_anything_is_sent(images: dict[str, MedicalImage]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    gen = generator(handler)
    with pytest.raises(GenerationSizeError, match="1000×1000 cannot be generated"):
        gen.generate(TextToImage(prompt="x", modality="CT", width=1000, height=1000), images)
    small = generator(handler, limits=GenerationLimits(max_side=256))
    with pytest.raises(
        GenerationSizeError, match=r"8× super-resolution of a 64×64 image would be 512×512, over the 256"
    ):
        small.generate(SuperResolution(sources=[mr_id(images)], scale=8), images)
    with pytest.raises(GenerationTaskError, match="does not do 'window'"):
        gen.generate(GenerationRequest(task="window", sources=[mr_id(images)]), images)
    with pytest.raises(ConfigurationError, match="no img2img strength"):
        gen.generate(Counterfactual(sources=[mr_id(images)], edit="x", strength=0.5), images)
    with pytest.raises(ConfigurationError, match="need sampling='bagel'"):
        generator(handler, sampling="generic").generate(
            TextToImage(prompt="x", modality="CT", bagel=BagelKnobs(timestep_shift=3)), images
        )


def test_http_failures_are_the_understanding_clients_typed_errors(images: dict[str, MedicalImage]) -> None:
    calls: list[int] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(400, json={"error": {"message": "size must be a multiple of 16"}})

    with pytest.raises(BackendBadRequestError, match="multiple of 16"):
        generator(refuse).generate(TextToImage(prompt="x", modality="CT"), images)
    assert calls == [1], "a 400 is not retried"

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    sleeps: list[float] = []
    with pytest.raises(BackendConnectionError, match="after 2 attempts"):
        generator(down, sleeps, max_retries=1).generate(TextToImage(prompt="x", modality="CT"), images)
    assert len(sleeps) == 1

    def no_image(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"created": 1, "data": []})

    with pytest.raises(BackendOutputError, match="without an image"):
        generator(no_image).generate(TextToImage(prompt="x", modality="CT"), images)

    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"b64_json": base64.b64encode(b"not a png").decode()}]})

    with pytest.raises(BackendOutputError, match="does not decode"):
        generator(garbage).generate(TextToImage(prompt="x", modality="CT"), images)

    def oversized(request: httpx.Request) -> httpx.Response:
        return images_reply((1040, 64))

    # The server's answer is wrong, not the request: an output error naming the size, not a size refusal.
    with pytest.raises(BackendOutputError, match="returned a 1040×64 image") as info:
        generator(oversized).generate(TextToImage(prompt="x", modality="CT"), images)
    assert not isinstance(info.value, GenerationSizeError)

    timeouts: list[int] = []

    def slow(request: httpx.Request) -> httpx.Response:
        timeouts.append(1)
        raise httpx.ReadTimeout("still generating", request=request)

    with pytest.raises(BackendTimeoutError):
        generator(slow, [], max_retries=2).generate(TextToImage(prompt="x", modality="CT"), images)
    assert timeouts == [1], "a generation the server may still be running is not sent again"
    with pytest.raises(ConfigurationError, match="width and its height, or neither"):
        generator(slow).generate(TextToImage(prompt="x", modality="CT", width=512), images)
    assert timeouts == [1], "refused before sending"


def test_the_async_twin_sends_the_same_requests_concurrently(images: dict[str, MedicalImage]) -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return images_reply()

    async def go() -> Any:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with AsyncImageEndpointGenerator(base_url=BASE, model=MODEL, http_client=client) as gen:
            with pytest.raises(ConfigurationError, match="cannot generate synchronously"):
                gen.generate(TextToImage(prompt="x", modality="US"), images)
            result = await gen.agenerate(TextToImage(prompt="x", modality="US", seed=5, num_images=2), images)
        await client.aclose()
        return result

    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(lambda: asyncio.run(go())).result()
    sync_bodies: list[dict[str, Any]] = []

    def sync_handler(request: httpx.Request) -> httpx.Response:
        sync_bodies.append(json.loads(request.content))
        return images_reply()

    generator(sync_handler).generate(TextToImage(prompt="x", modality="US", seed=5, num_images=2), images)
    key = lambda b: b["seed"]  # noqa: E731
    assert sorted(bodies, key=key) == sorted(sync_bodies, key=key) and len(result.images) == 2


def test_configuration_comes_from_arguments_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OKAFLOW_GENERATION_URL", "OKAFLOW_GENERATION_MODEL", "OKAFLOW_MODEL_URL", "OKAFLOW_MODEL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="no image endpoint URL"):
        ImageEndpointGenerator(model=MODEL)
    with pytest.raises(ConfigurationError, match="no generation model name"):
        ImageEndpointGenerator(base_url=BASE)
    monkeypatch.setenv("OKAFLOW_GENERATION_URL", BASE + "/")
    monkeypatch.setenv("OKAFLOW_GENERATION_MODEL", "bagel")
    with ImageEndpointGenerator() as gen:
        assert (gen.base_url, gen.model_id, gen.supports("window"), gen.supports("counterfactual")) == (
            BASE,
            "bagel",
            False,
            True,
        )


def _counterfactual_visuals(case: Any) -> list[dict[str, Any]]:
    return [
        {
            "task": "counterfactual",
            "image_ids": [case.current_images[0].id],
            "params": {"edit": "this MRI without the lesion"},
            "reason": "what the slice would look like without the finding",
        }
    ]


def test_the_agent_reports_a_counterfactual_with_its_explanation_and_replays_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import okaflow
    from okaflow.tools.generation import ClassicalGenerator, GeneratorChain
    from okaflow.workflows import RADIOLOGY_REPORT, _workflow

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["messages"][0]["content"][0]["text"] == "<|im_start|>this MRI without the lesion<|im_end|>"
        content = [
            {"type": "text", "text": "Removed the hyperintense focus."},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + png_b64()}},
        ]
        return httpx.Response(200, json={"model": "unimedvl-14b", "choices": [{"message": {"content": content}}]})

    workflow = dataclasses.replace(RADIOLOGY_REPORT, name="mr-counterfactual", visuals=_counterfactual_visuals)
    # Registered for this test only: a replay finds the run's workflow by its recorded name.
    monkeypatch.setitem(_workflow._REGISTRY, workflow.name, workflow)
    chain = GeneratorChain(generator(handler, api="chat"), ClassicalGenerator())
    case = Path(__file__).resolve().parents[3] / "examples" / "cases" / "brain-mri"
    result = okaflow.run(case, workflow=workflow, generator=chain, out=tmp_path / "run")
    (made,) = result.state["generated"]
    assert made["provenance"]["backend"] == "image-endpoint" and made["provenance"]["model_id"] == "unimedvl-14b"
    assert made["caption"].endswith("The model's explanation: Removed the hyperintense focus.")
    replayed = okaflow.replay(result.run_dir, out=tmp_path / "replay")  # no server: answered from the record
    assert replayed.identical, replayed.differing
