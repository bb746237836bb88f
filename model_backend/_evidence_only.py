"""The embedded default backend: an evidence-only analyst.

It is what runs when no model is configured. It is deterministic, it never looks at pixels for
meaning, and it writes only what the evidence table already says: FHIR facts, measurable image
properties and tool outputs, each sentence quoting the cited evidence's own summary. It never
writes an image finding. Its provenance says ``is_model=False`` so every block it authors is
marked as such in the report.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import Any

from okaflow._text import content_terms
from okaflow._types import Evidence, Provenance
from okaflow._version import __version__
from okaflow.model_backend._analysis import Claim, ModelAnalysis, Section, ToolCall, VisualRequest
from okaflow.model_backend._protocol import UnderstandRequest, UnderstandResult, prompt_hash

__all__ = ["EvidenceOnlyAnalyst"]


class EvidenceOnlyAnalyst:
    """Deterministic analyst over the evidence table; the honest default when no model is set.

    The analyst reads ``request.context`` for:

    * ``available_tools`` — tool names it may call (``measure_image``, ``observation_trend``,
      ``compare_images``, ``retrieve_knowledge``);
    * ``sections`` — which report sections the workflow wants;
    * ``image_ids`` / ``prior_image_ids`` — the key images (one per series) of current and prior studies;
    * ``suggested_visuals`` — visual outputs the workflow proposes;
    * ``question`` — the clinical question (VQA workflows);
    * ``tool_history`` — tool calls already made (``{tool, arguments}``), never repeated.
    """

    name = "evidence-only"
    is_model = False

    @property
    def model_id(self) -> str:
        return f"okaflow-evidence-only/{__version__}"

    def understand(self, request: UnderstandRequest) -> UnderstandResult:
        started = time.perf_counter()
        analysis = _analyse(request)
        return UnderstandResult(
            text=analysis.model_dump_json(),
            parsed=analysis.model_dump(mode="json"),
            provenance=Provenance(
                backend=self.name,
                model_id=self.model_id,
                prompt_hash=prompt_hash(request),
                seed=None,
                latency_s=round(time.perf_counter() - started, 6),
                is_model=False,
            ),
        )

    async def aunderstand(self, request: UnderstandRequest) -> UnderstandResult:
        return await asyncio.to_thread(self.understand, request)


def _analyse(request: UnderstandRequest) -> ModelAnalysis:
    ctx = request.context
    evidence = list(request.evidence)
    tools = set(ctx.get("available_tools", []))
    pending = _tool_calls_still_needed(evidence, ctx, tools)
    if pending:
        return ModelAnalysis(tool_calls=pending, done=False)

    sections: list[Section] = list(ctx.get("sections", ["findings", "impression"]))
    claims: list[Claim] = []
    if "findings" in sections:
        shown = {*ctx.get("image_ids", []), *ctx.get("prior_image_ids", [])}
        claims += _image_claims([e for e in evidence if e.kind != "image" or e.id in shown], "findings")
        claims += _lab_claims(evidence, "findings")
    if "comparison" in sections:
        claims += _comparison_claims(evidence)
    if "answer" in sections:
        claims += _answer_claims(evidence, str(ctx.get("question") or request.task or ""))
    if "impression" in sections:
        claims += _impression_claims(evidence)
    known_images = {e.id for e in evidence if e.kind == "image"}
    visuals = [
        VisualRequest.model_validate(v)
        for v in ctx.get("suggested_visuals", [])
        if set(v.get("image_ids", [])) <= known_images
    ]
    return ModelAnalysis(claims=claims, visual_requests=visuals, done=True)


def _tool_calls_still_needed(evidence: list[Evidence], ctx: dict[str, Any], tools: set[str]) -> list[ToolCall]:
    ids = {e.id for e in evidence}
    calls: list[ToolCall] = []
    if "measure_image" in tools:
        shown = {*ctx.get("image_ids", []), *ctx.get("prior_image_ids", [])}
        for img in (e for e in evidence if e.kind == "image" and e.id in shown):
            if not any(i.startswith(f"Measurement/{img.id.removeprefix('Image/')}/") for i in ids):
                calls.append(ToolCall(tool="measure_image", arguments={"image_id": img.id}))
    if "observation_trend" in tools:
        trended = {e.data.get("trend_key") for e in evidence if e.kind == "tool_output"}
        for key in _trend_keys(evidence):
            if key not in trended:
                calls.append(ToolCall(tool="observation_trend", arguments={"key": key}))
    current, prior = ctx.get("image_ids", []), ctx.get("prior_image_ids", [])
    if "compare_images" in tools and current and prior:
        compared = {(e.data.get("current"), e.data.get("prior")) for e in evidence if e.kind == "tool_output"}
        for cur, pri in zip(current, prior, strict=False):
            if (cur, pri) not in compared:
                calls.append(ToolCall(tool="compare_images", arguments={"current": cur, "prior": pri}))
    question = ctx.get("question")
    if "retrieve_knowledge" in tools and question and not any(e.kind == "knowledge" for e in evidence):
        calls.append(ToolCall(tool="retrieve_knowledge", arguments={"query": question}))
    # Never repeat a call already made: its result (or its error) is in the evidence or the log.
    made = {_call_key(c["tool"], c.get("arguments", {})) for c in ctx.get("tool_history", [])}
    return [c for c in calls if _call_key(c.tool, c.arguments) not in made]


def _call_key(tool: str, arguments: dict[str, Any]) -> str:
    return tool + json.dumps(arguments, sort_keys=True, default=str)


def _trend_keys(evidence: Iterable[Evidence]) -> list[str]:
    counts: dict[str, int] = {}
    for e in evidence:
        if e.kind == "observation" and e.data.get("value") is not None and e.data.get("trend_key"):
            counts[e.data["trend_key"]] = counts.get(e.data["trend_key"], 0) + 1
    return sorted(k for k, n in counts.items() if n >= 2)


def _sentence(summary: str) -> str:
    return summary if summary.endswith(".") else summary + "."


def _image_claims(evidence: list[Evidence], section: Section) -> list[Claim]:
    claims = []
    for img in (e for e in evidence if e.kind == "image"):
        claims.append(Claim(section=section, kind="measurement", text=_sentence(img.summary), cites=[img.id]))
        prefix = f"Measurement/{img.id.removeprefix('Image/')}/"
        for m in (e for e in evidence if e.kind == "measurement" and e.id.startswith(prefix)):
            claims.append(Claim(section=section, kind="measurement", text=_sentence(m.summary), cites=[m.id]))
    return claims


def _lab_claims(evidence: list[Evidence], section: Section) -> list[Claim]:
    claims = []
    for trend in (e for e in evidence if e.kind == "tool_output" and e.id.startswith("Trend/")):
        claims.append(Claim(section=section, kind="fact", text=_sentence(trend.summary), cites=[trend.id]))
    for obs in (e for e in evidence if e.kind == "observation"):
        if obs.data.get("is_abnormal"):
            claims.append(Claim(section=section, kind="fact", text=_sentence(obs.summary), cites=[obs.id]))
    return claims


def _comparison_claims(evidence: list[Evidence]) -> list[Claim]:
    claims = [
        Claim(section="comparison", kind="measurement", text=_sentence(e.summary), cites=[e.id])
        for e in evidence
        if e.kind == "tool_output" and e.id.startswith("Comparison/")
    ]
    for report in (e for e in evidence if e.kind == "diagnostic_report"):
        claims.append(Claim(section="comparison", kind="fact", text=_sentence(report.summary), cites=[report.id]))
    return claims


def _impression_claims(evidence: list[Evidence]) -> list[Claim]:
    claims = []
    conditions = [e for e in evidence if e.kind == "condition" and e.data.get("is_active", True)]
    if conditions:
        listed = "; ".join(c.summary for c in conditions)
        claims.append(
            Claim(
                section="impression",
                kind="fact",
                text=f"Recorded problems: {listed}.",
                cites=[c.id for c in conditions],
            )
        )
    allergies = [e for e in evidence if e.kind == "allergy"]
    if allergies:
        listed = "; ".join(a.summary for a in allergies)
        claims.append(
            Claim(
                section="impression",
                kind="fact",
                text=f"Allergies: {listed}.",
                cites=[a.id for a in allergies],
            )
        )
    return claims


def _answer_claims(evidence: list[Evidence], question: str) -> list[Claim]:
    """Quote the evidence rows that share the most words with the question; never guess."""
    terms = {t for t in content_terms(question) if len(t) > 3}
    scored = []
    for e in evidence:
        overlap = len(terms & set(content_terms(e.summary)))
        if overlap:
            scored.append((-overlap, e.id, e))
    scored.sort(key=lambda t: (t[0], t[1]))
    return [Claim(section="answer", kind="fact", text=_sentence(e.summary), cites=[e.id]) for _, _, e in scored[:5]]
