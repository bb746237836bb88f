"""The evidence-only analyst: deterministic, tool-first, never an image finding."""

from __future__ import annotations

from okaflow import Evidence
from okaflow.model_backend import ChatMessage, EvidenceOnlyAnalyst, ModelAnalysis, UnderstandRequest

EVIDENCE = [
    Evidence(id="Image/a", kind="image", summary="CT image 64×64 px"),
    Evidence(
        id="Observation/1",
        kind="observation",
        summary="CRP 12 mg/L H",
        data={"value": 12, "interpretation": "H", "is_abnormal": True, "trend_key": "crp"},
    ),
    Evidence(
        id="Observation/2",
        kind="observation",
        summary="CRP 30 mg/L H",
        data={"value": 30, "interpretation": "H", "is_abnormal": True, "trend_key": "crp"},
    ),
    Evidence(id="Condition/c", kind="condition", summary="Asthma (active)", data={"is_active": True}),
]


def request(evidence: list[Evidence], tools: list[str]) -> UnderstandRequest:
    return UnderstandRequest(
        purpose="analysis",
        messages=[ChatMessage(role="user", content="x")],
        evidence=evidence,
        context={"available_tools": tools, "sections": ["findings", "impression"], "image_ids": ["Image/a"]},
    )


def test_asks_for_tools_first_then_writes_claims() -> None:
    analyst = EvidenceOnlyAnalyst()
    first = ModelAnalysis.model_validate(
        analyst.understand(request(EVIDENCE, ["measure_image", "observation_trend"])).parsed
    )
    assert not first.done
    assert {(c.tool, tuple(c.arguments.items())) for c in first.tool_calls} == {
        ("measure_image", (("image_id", "Image/a"),)),
        ("observation_trend", (("key", "crp"),)),
    }
    done = ModelAnalysis.model_validate(analyst.understand(request(EVIDENCE, [])).parsed)
    assert done.done and not done.tool_calls
    assert all(c.kind != "image_finding" for c in done.claims)
    assert {c.cites[0] for c in done.claims} >= {"Image/a", "Observation/1", "Observation/2", "Condition/c"}


def test_is_deterministic_and_marked_as_no_model() -> None:
    analyst = EvidenceOnlyAnalyst()
    a, b = (analyst.understand(request(EVIDENCE, [])) for _ in range(2))
    assert a.text == b.text and a.provenance.prompt_hash == b.provenance.prompt_hash
    assert a.provenance.is_model is False and analyst.is_model is False
