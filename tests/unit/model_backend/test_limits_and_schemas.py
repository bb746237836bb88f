"""Image limits, typed 400s, strict schemas from pydantic models, and the step-narrowed analysis schema.

Wire behaviour is pinned with ``httpx.MockTransport`` (contract tests of the OpenAI format); the
same paths run against the real vLLM engine in ``tests/integration/models``.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
import pytest
from pydantic import BaseModel, Field

from okaflow import BackendContextLengthError, BackendImageLimitError, BackendSchemaError, ConfigurationError
from okaflow._types import Provenance
from okaflow.model_backend import (
    UNIMEDVL_CHAT_TEMPLATE,
    BackendBadRequestError,
    ChatMessage,
    ModelAnalysis,
    ModelImage,
    OpenAIBackend,
    UnderstandRequest,
    UnderstandResult,
    analysis_json_schema,
    json_schema_for,
)

from .conftest import BASE, backend


def ask(images: int = 0) -> UnderstandRequest:
    return UnderstandRequest(
        purpose="test",
        messages=[ChatMessage(role="user", content="look")],
        images=[ModelImage(evidence_id=f"Image/{i}", png=b"\x89PNG", width=8, height=8) for i in range(images)],
    )


def refusing(message: str) -> OpenAIBackend:
    """A backend whose server answers every request 400 with ``message`` (vLLM's error body)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": message, "type": "BadRequestError", "code": 400}})

    return backend(handler)


def test_image_limit_is_checked_before_anything_is_sent() -> None:
    sent: list[httpx.Request] = []
    client = httpx.Client(transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(500)))
    limited = OpenAIBackend(base_url=BASE, model="m", http_client=client, max_images_per_request=2, max_retries=0)
    with pytest.raises(BackendImageLimitError, match=r"carries 3 images.*at most 2") as info:
        limited.understand(ask(images=3))
    assert (info.value.count, info.value.limit) == (3, 2)
    assert "batches" in (info.value.hint or "")
    assert sent == []
    with pytest.raises(ConfigurationError, match="max_images_per_request"):
        OpenAIBackend(base_url=BASE, model="m", max_images_per_request=0)


@pytest.mark.parametrize(
    ("message", "cls", "hint"),
    [
        (
            "This model's maximum context length is 1024 tokens. However, your prompt contains at least 1025 input "
            "tokens",
            BackendContextLengthError,
            "context",
        ),
        ("At most 1 image(s) may be provided in one prompt.", BackendBadRequestError, "max_images_per_request"),
        (
            "Chat template is passed with request, but --trust-request-chat-template is not set.",
            BackendBadRequestError,
            "--chat-template",
        ),
    ],
)
def test_vllm_400s_become_errors_that_say_what_to_do(message: str, cls: type[Exception], hint: str) -> None:
    with refusing(message) as backend, pytest.raises(cls) as info:
        backend.understand(ask())
    assert type(info.value) is cls
    assert message[:30] in str(info.value)
    assert hint in (getattr(info.value, "hint", "") or "")


def test_chat_template_travels_with_the_request_and_is_role_less() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        reply = {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}], "model": "m"}
        return httpx.Response(200, json=reply)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    with OpenAIBackend(base_url=BASE, model="m", http_client=client, chat_template=UNIMEDVL_CHAT_TEMPLATE) as b:
        b.understand(ask())
        b.understand(ask().model_copy(update={"stop": ["</answer>"]}))
    assert bodies[0]["chat_template"] == UNIMEDVL_CHAT_TEMPLATE
    assert "stop" not in bodies[0]
    assert bodies[1]["stop"] == ["</answer>"]
    assert "role" not in UNIMEDVL_CHAT_TEMPLATE  # no system/user/assistant names are rendered
    assert "<|im_start|>" in UNIMEDVL_CHAT_TEMPLATE
    assert "<|im_end|>" in UNIMEDVL_CHAT_TEMPLATE


class Measurement(BaseModel):
    name: str
    value_mm: float
    method: Literal["caliper", "auto"] = "auto"


class Answer(BaseModel):
    verdict: Literal["normal", "abnormal"]
    measurements: list[Measurement] = Field(default_factory=list)
    comment: str | None = None


def result(text: str) -> UnderstandResult:
    return UnderstandResult(text=text, provenance=Provenance(backend="openai", model_id="m", prompt_hash="0" * 64))


def test_json_schema_for_requires_every_field_and_forbids_others_at_every_level() -> None:
    schema = json_schema_for(Answer)
    assert schema["required"] == ["verdict", "measurements", "comment"]
    assert schema["additionalProperties"] is False
    nested = schema["$defs"]["Measurement"]
    assert nested["required"] == ["name", "value_mm", "method"]
    assert nested["additionalProperties"] is False
    assert Answer.model_json_schema()["required"] == ["verdict"]  # the model itself is untouched


def test_as_model_validates_or_raises_a_schema_error_with_the_raw_text() -> None:
    good = result(
        '{"verdict": "abnormal", "measurements": [{"name": "BPD", "value_mm": 48.2, "method": "caliper"}], '
        '"comment": null}'
    )
    assert good.as_model(Answer).measurements[0].value_mm == 48.2
    bad = result('{"verdict": "maybe", "measurements": [], "comment": null}')
    with pytest.raises(BackendSchemaError, match=r"does not match Answer.*verdict") as info:
        bad.as_model(Answer)
    assert info.value.raw == bad.text
    assert info.value.errors[0]["loc"] == ("verdict",)
    with pytest.raises(BackendSchemaError, match=r"top level|Invalid JSON"):
        result("not json").as_model(Answer)


TOOLS = {
    "measure_image": {
        "type": "object",
        "properties": {"image_id": {"type": "string"}, "roi": {"type": "array", "items": {"type": "integer"}}},
        "required": ["image_id"],
    }
}


def narrowed(**overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "evidence_ids": ["Observation/crp-1", "ImagingStudy/ct"],
        "sections": ["findings", "impression"],
        "tools": TOOLS,
        "visual_tasks": ["window"],
        "image_ids": ["ImagingStudy/ct"],
    }
    return analysis_json_schema(**{**options, **overrides})


def test_narrowed_schema_allows_only_existing_evidence_sections_tools_and_images() -> None:
    schema = narrowed()
    props = schema["properties"]
    claim = props["claims"]["items"]["properties"]
    assert claim["cites"]["items"]["enum"] == ["ImagingStudy/ct", "Observation/crp-1"]
    assert claim["section"]["enum"] == ["findings", "impression"]
    assert claim["text"]["maxLength"] > 0
    variant = props["tool_calls"]["items"]["anyOf"][0]["properties"]
    assert variant["tool"] == {"const": "measure_image"}
    # Open strings and lists in a tool's own schema get bounds; the tool's schema itself is not changed.
    assert variant["arguments"]["properties"]["image_id"]["maxLength"] > 0
    assert variant["arguments"]["properties"]["roi"]["maxItems"] > 0
    assert "maxLength" not in TOOLS["measure_image"]["properties"]["image_id"]  # type: ignore[index]
    visual = props["visual_requests"]["items"]["properties"]
    assert visual["task"]["enum"] == ["window"]
    assert visual["image_ids"]["items"]["enum"] == ["ImagingStudy/ct"]
    assert schema["required"] == ["claims", "tool_calls", "visual_requests", "done"]


def test_final_step_schema_offers_no_tools_and_no_visuals() -> None:
    schema = narrowed(tools={}, visual_tasks=[])
    assert schema["properties"]["tool_calls"] == {"type": "array", "maxItems": 0}
    assert schema["properties"]["visual_requests"] == {"type": "array", "maxItems": 0}


def test_answers_valid_under_the_narrowed_schema_are_model_analyses() -> None:
    answer = {
        "claims": [
            {"section": "findings", "kind": "fact", "text": "CRP fell.", "cites": ["Observation/crp-1"]},
        ],
        "tool_calls": [{"tool": "measure_image", "arguments": {"image_id": "ImagingStudy/ct"}}],
        "visual_requests": [{"task": "window", "image_ids": ["ImagingStudy/ct"], "params": {}, "reason": "lung"}],
        "done": False,
    }
    schema = narrowed()
    assert set(answer) == set(schema["required"])
    parsed = ModelAnalysis.model_validate(answer)
    assert parsed.tool_calls[0].tool == "measure_image"
    # The default schema is ModelAnalysis's own fields, each one required.
    assert set(analysis_json_schema()["properties"]) == set(ModelAnalysis.model_fields)
