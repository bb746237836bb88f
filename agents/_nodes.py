"""The OKA agent's nodes. Each is ``state -> partial state``; its docstring names what it reads and writes.

Nodes are built by :func:`build_nodes` from an :class:`AgentConfig` (backend, tools, workflow...),
and get the per-run :class:`~okaflow.agents.RunContext` from LangGraph's runtime.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph.runtime import get_runtime
from langgraph.types import interrupt

from okaflow._constants import (
    ANALYSIS_MAX_CLAIM_CHARS,
    ANALYSIS_MAX_CLAIMS,
    ANALYSIS_MAX_TOKENS,
    APPROVAL_FILE,
    DEFAULT_MAX_STEPS,
)
from okaflow._errors import ConfigurationError, OkaflowError
from okaflow._types import Evidence, Provenance, utc_now
from okaflow.agents._prompts import analysis_messages
from okaflow.agents._state import OKAState, RunContext
from okaflow.agents._verify import verify_claim
from okaflow.model_backend import (
    ChatMessage,
    Claim,
    ModelAnalysis,
    ModelImage,
    ToolCall,
    UnderstandingBackend,
    UnderstandRequest,
    UnderstandResult,
    VisualRequest,
    analysis_json_schema,
)
from okaflow.tools.analysis import AnalysisTool, ToolContext
from okaflow.tools.generation import GENERATION_TASKS, GenerationRequest, GenerationTool
from okaflow.tools.imaging import fit_to_policy, render_for_model, render_montage
from okaflow.tools.knowledge import BM25Retriever, CombinedRetriever, KnowledgeRetriever
from okaflow.tools.publish import ReportSink
from okaflow.tools.reporting import ArtifactRef
from okaflow.workflows import Workflow

__all__ = ["AgentConfig", "backend_of", "build_nodes"]


@dataclass
class AgentConfig:
    backend: UnderstandingBackend
    generator: GenerationTool | None
    tools: Mapping[str, AnalysisTool]
    workflow: Workflow
    knowledge: KnowledgeRetriever | None = None
    max_steps: int = DEFAULT_MAX_STEPS
    seed: int | None = 0
    sinks: tuple[ReportSink, ...] = ()
    require_approval: bool = True
    max_tokens: int = ANALYSIS_MAX_TOKENS
    max_claims: int = ANALYSIS_MAX_CLAIMS
    max_claim_chars: int = ANALYSIS_MAX_CLAIM_CHARS


def _ctx() -> RunContext:
    runtime = get_runtime(RunContext)
    if runtime.context is None:
        raise ConfigurationError(
            "the OKA agent was invoked without a RunContext",
            hint="pass context=RunContext(...) or use okaflow.run()",
        )
    return runtime.context


def _emit(node: str, summary: str, **data: Any) -> None:
    get_runtime(RunContext).stream_writer({"node": node, "summary": summary, **data})


def _evidence(state: OKAState) -> list[Evidence]:
    return [Evidence.model_validate(row) for row in state.get("evidence", [])]


def _portable(ctx: RunContext, rows: list[Evidence]) -> list[Evidence]:
    """Rows with sources named as on any machine (a record must not depend on where files lived)."""
    return [r.model_copy(update={"source": ctx.case.portable_source(r.source)}) for r in rows]


def _retriever(config: AgentConfig, ctx: RunContext) -> KnowledgeRetriever:
    """The configured retriever, else one over the patient's history and the case's documents, built once."""
    if config.knowledge is not None:
        return config.knowledge
    if ctx.retriever is None:
        sources: list[KnowledgeRetriever] = [BM25Retriever.from_patient(ctx.case.patient)]
        if ctx.case.knowledge_dir is not None:
            sources.append(BM25Retriever.from_directory(ctx.case.knowledge_dir))
        ctx.retriever = CombinedRetriever(sources)
    return ctx.retriever


def backend_of(config: AgentConfig, ctx: RunContext) -> UnderstandingBackend:
    """The backend this run calls: the run's own (a recorder, under okaflow.run), else the graph's."""
    return ctx.backend if ctx.backend is not None else config.backend


def _generator_of(config: AgentConfig, ctx: RunContext) -> GenerationTool | None:
    return ctx.generator if ctx.generator is not None else config.generator


def build_nodes(config: AgentConfig) -> dict[str, Any]:
    """The node callables (sync; ``analyze`` also has an async twin) keyed by node name."""
    wf = config.workflow

    def observe(state: OKAState) -> dict[str, Any]:
        """Ingest the case into the evidence table and render what the model will see (one key image per series).

        Reads: ``task``. Writes: ``evidence``, ``model_images``, ``warnings``, ``task``, ``step``.
        """
        ctx = _ctx()
        case = ctx.case
        wf.check(case)
        images = []
        for img in case.key_images:
            if wf.frames == "montage" and img.frames > 1:
                pic = fit_to_policy(render_montage(img))
            else:
                pic = render_for_model(img)
            ref = ctx.artifacts.put_image(pic)
            images.append(
                {
                    "evidence_id": img.id,
                    "role": case.roles.get(img.id, "current"),
                    "series_size": case.series_size(img.id),
                    "artifact": ref.model_dump(),
                }
            )
        evidence = [e.model_dump(mode="json") for e in case.evidence()]
        _emit("observe", f"{len(evidence)} evidence rows, {len(images)} images")
        return {
            "evidence": evidence,
            "model_images": images,
            "warnings": list(case.warnings),
            "task": state.get("task") or case.task or wf.default_task,
            "step": 0,
        }

    def knowledge(state: OKAState) -> dict[str, Any]:
        """Retrieve knowledge passages (patient history, supplied documents) for the task.

        Reads: ``task``. Writes: ``evidence`` (kind ``knowledge``).
        """
        ctx = _ctx()
        query = wf.knowledge_query or state.get("task") or wf.default_task
        hits = _portable(ctx, _retriever(config, ctx).search(query, k=5))
        _emit("knowledge", f"{len(hits)} passages for {query!r}")
        return {"evidence": [h.model_dump(mode="json") for h in hits]}

    def _requests(state: OKAState) -> tuple[list[UnderstandRequest], int, bool]:
        """This step's request(s): one, or one per batch of images when the backend limits images per prompt."""
        ctx = _ctx()
        step = state.get("step", 0) + 1
        final = step >= config.max_steps
        offered = {} if final else {n: config.tools[n] for n in wf.tools if n in config.tools}
        evidence = _evidence(state)
        model_images = [
            ModelImage(
                evidence_id=m["evidence_id"],
                png=ctx.artifacts.open(_ref(m["artifact"])),
                width=m["artifact"]["width"],
                height=m["artifact"]["height"],
            )
            for m in state.get("model_images", [])
        ]
        errors = [f"{t['tool']}: {t['error']}" for t in state.get("tool_log", []) if t.get("error")]
        case = ctx.case
        image_ids = [i.id for i in case.images]
        visual_tasks = _visual_tasks(_generator_of(config, ctx)) if not final else []
        schema = analysis_json_schema(
            evidence_ids=[e.id for e in evidence],
            sections=wf.sections,
            tools={n: t.parameters for n, t in offered.items()},
            visual_tasks=visual_tasks,
            image_ids=image_ids,
            max_claims=config.max_claims,
            max_claim_chars=config.max_claim_chars,
        )
        limit = getattr(backend_of(config, ctx), "max_images_per_request", None)
        batches = _batches(model_images, limit)
        requests = []
        for index, batch in enumerate(batches):
            messages = analysis_messages(
                wf,
                state["task"],
                evidence,
                offered,
                [m.evidence_id for m in batch],
                errors,
                final=final,
                visual_tasks=visual_tasks,
            )
            if len(batches) > 1:
                note = (
                    f"This request carries image batch {index + 1} of {len(batches)} (the server accepts at most "
                    f"{limit} image(s) per prompt); the other images are analysed in separate requests."
                )
                messages = [*messages[:-1], ChatMessage(role="user", content=messages[-1].content + "\n\n" + note)]
            requests.append(
                UnderstandRequest(
                    purpose="analysis",
                    messages=messages,
                    images=batch,
                    evidence=evidence,
                    response_schema=schema,
                    schema_name="ModelAnalysis",
                    task=state["task"],
                    workflow=wf.name,
                    seed=config.seed,
                    max_tokens=config.max_tokens,
                    context={
                        "step": step,
                        "available_tools": sorted(offered),
                        "sections": list(wf.sections),
                        "image_ids": [i.id for i in case.current_images],
                        "prior_image_ids": [i.id for i in case.prior_images],
                        "suggested_visuals": wf.visuals(case),
                        "question": state["task"],
                        "tool_history": [
                            {"tool": t["tool"], "arguments": t["arguments"]} for t in state.get("tool_log", [])
                        ],
                        "batch": index,
                    },
                )
            )
        return requests, step, final

    def _absorb(results: list[UnderstandResult], step: int, final: bool) -> dict[str, Any]:
        parts = [result.as_model(ModelAnalysis) for result in results]
        analysis, claim_batches = _merge_analyses(parts)
        update: dict[str, Any] = {
            "step": step,
            "analyses": [
                {
                    "step": step,
                    "provenance": results[0].provenance.model_dump(mode="json"),
                    "batch_provenance": [r.provenance.model_dump(mode="json") for r in results],
                    "claim_batches": claim_batches,
                    "analysis": analysis.model_dump(mode="json"),
                    "reasoning": "\n\n".join(r.reasoning for r in results if r.reasoning) or None,
                }
            ],
            "pending_tool_calls": [] if final else [c.model_dump(mode="json") for c in analysis.tool_calls],
            "visual_requests": [v.model_dump(mode="json") for v in analysis.visual_requests],
        }
        if final and analysis.tool_calls:
            update["warnings"] = [
                f"step cap {config.max_steps} reached: {len(analysis.tool_calls)} tool call(s) not run"
            ]
        _emit("analyze", f"step {step}: {len(analysis.claims)} claims, {len(analysis.tool_calls)} tool calls")
        return update

    def analyze(state: OKAState) -> dict[str, Any]:
        """Ask the backend for claims (or tool calls) over the evidence and images.

        One request per step, or one per batch of images when the backend takes fewer images per
        prompt than the case has (``backend.max_images_per_request``); the answers are merged.

        Reads: ``evidence``, ``model_images``, ``task``, ``step``, ``tool_log``.
        Writes: ``step``, ``analyses``, ``pending_tool_calls``, ``visual_requests``, ``warnings``.
        """
        requests, step, final = _requests(state)
        backend = backend_of(config, _ctx())
        return _absorb([backend.understand(r) for r in requests], step, final)

    async def aanalyze(state: OKAState) -> dict[str, Any]:
        from okaflow.agents._assemble import prepare_report_ahead

        requests, step, final = _requests(state)
        ctx = _ctx()
        backend = backend_of(config, ctx)
        async with ctx.away_from_cpu():
            prepare_report_ahead(ctx)
            results = await asyncio.gather(*(backend.aunderstand(r) for r in requests))
        return _absorb(list(results), step, final)

    def tools(state: OKAState) -> dict[str, Any]:
        """Run the tool calls the last analysis asked for; results become evidence.

        Reads: ``pending_tool_calls``, ``evidence``. Writes: ``evidence``, ``tool_log``, ``pending_tool_calls``.
        """
        ctx = _ctx()
        tctx = ToolContext(
            case=ctx.case, knowledge=_retriever(config, ctx), evidence={e.id: e for e in _evidence(state)}
        )
        new: list[dict[str, Any]] = []
        log: list[dict[str, Any]] = []
        for call in state.get("pending_tool_calls", []):
            name, args = call["tool"], call.get("arguments", {})
            tool = config.tools.get(name) if name in wf.tools else None
            entry: dict[str, Any] = {"tool": name, "arguments": args, "step": state.get("step", 0)}
            if tool is None:
                entry["error"] = f"no tool named {name!r}; offered: {sorted(wf.tools)}"
            else:
                try:
                    rows = _portable(ctx, tool.run(args, tctx))
                except OkaflowError as exc:
                    entry["error"] = str(exc)
                else:
                    entry["evidence_ids"] = [r.id for r in rows]
                    new += [r.model_dump(mode="json") for r in rows]
            log.append(entry)
        _emit("tools", f"{len(log)} tool calls, {len(new)} new evidence rows")
        return {"evidence": new, "tool_log": log, "pending_tool_calls": []}

    def generate(state: OKAState) -> dict[str, Any]:
        """Produce the visual outputs the analysis asked for, each labelled and linked to its sources.

        Reads: ``visual_requests``. Writes: ``generated``, ``evidence`` (kind ``generated_image``), ``warnings``.
        """
        ctx = _ctx()
        generator = _generator_of(config, ctx)
        assert generator is not None  # the graph only routes here when one is configured
        images = {i.id: i for i in ctx.case.images}
        produced, rows, warnings = [], [], []
        for req in state.get("visual_requests", []):
            params = dict(req.get("params", {}))
            # A prompt is the envelope's own field; the model's schema carries it among the params.
            prompt = params.pop("prompt", None)
            request = GenerationRequest(
                task=req["task"], sources=req["image_ids"], params=params, prompt=prompt, seed=config.seed
            )
            if not generator.supports(request.task):
                warnings.append(f"generator {generator.name!r} cannot do {request.task!r}; skipped")
                continue
            try:
                result = generator.generate(request, images)
            except ConfigurationError as exc:
                warnings.append(f"visual request {request.task!r} refused: {exc}")
                continue
            if result.unavailable:
                warnings.append(f"{request.task}: {result.unavailable}")
            provenance = Provenance(
                backend=result.backend,
                model_id=result.model_id,
                seed=result.seed,
                latency_s=result.elapsed_s,
                is_model=result.ai_generated,
                created=ctx.started_at,
            )
            metrics = result.params_used.get("metrics") or [None] * len(result.images)
            for pic, caption, score in zip(result.images, result.captions, metrics, strict=True):
                if result.text:
                    caption = f"{caption}. The model's explanation: {result.text}"
                ref = ctx.artifacts.put_image(pic)
                evidence_id = f"Generated/{ref.sha256[:16]}"
                produced.append(
                    {
                        "evidence_id": evidence_id,
                        "artifact": ref.model_dump(),
                        "caption": caption,
                        "label": result.label,
                        "task": result.task,
                        "derived_from": result.derived_from,
                        "params": result.params_used,
                        "ai_generated": result.ai_generated,
                        "provenance": provenance.model_dump(mode="json"),
                    }
                )
                rows.append(
                    Evidence(
                        id=evidence_id,
                        kind="generated_image",
                        summary=f"{result.label}: {caption}",
                        data={
                            "task": result.task,
                            "derived_from": result.derived_from,
                            "sha256": ref.sha256,
                            **({"metrics": score} if score else {}),
                        },
                    ).model_dump(mode="json")
                )
        _emit("generate", f"{len(produced)} images")
        return {"generated": produced, "evidence": rows, "warnings": warnings}

    def verify(state: OKAState) -> dict[str, Any]:
        """Check every claim of the final analysis against the evidence it cites.

        Reads: ``analyses``, ``evidence``. Writes: ``claims`` (each with its flags and provenance).
        """
        sees_images = backend_of(config, _ctx()).is_model
        last = state["analyses"][-1]
        analysis = ModelAnalysis.model_validate(last["analysis"])
        table = {e.id: e for e in _evidence(state)}
        claims = []
        batches = last.get("batch_provenance") or [last["provenance"]]
        claim_batches = last.get("claim_batches") or [0] * len(analysis.claims)
        for claim, batch in zip(analysis.claims, claim_batches, strict=True):
            flags = verify_claim(claim, table, backend_sees_images=sees_images)
            claims.append(
                {
                    **claim.model_dump(mode="json"),
                    "flags": [f.model_dump(mode="json") for f in flags],
                    "provenance": batches[batch],
                }
            )
        flagged = sum(1 for c in claims if c["flags"])
        _emit("verify", f"{len(claims)} claims, {flagged} flagged")
        return {"claims": claims}

    def report(state: OKAState) -> dict[str, Any]:
        """Assemble the interleaved report and write it into the run directory.

        Reads: everything above. Writes: ``report_paths``.
        """
        from okaflow.agents._assemble import assemble_report
        from okaflow.tools.reporting import write_report

        ctx = _ctx()
        built = assemble_report(state, ctx, config)
        paths = write_report(built, ctx.run_dir, base_dir=ctx.run_dir)
        (ctx.run_dir / "evidence.json").write_text(
            json.dumps(state.get("evidence", []), indent=1, sort_keys=True), encoding="utf-8"
        )
        _emit("report", f"{len(built.blocks)} blocks → {paths.get('html', '')}")
        return {"report_paths": {k: str(v) for k, v in paths.items()}}

    def approve(state: OKAState) -> dict[str, Any]:
        """Ask a human before anything leaves the run directory (LangGraph ``interrupt``).

        Reads: ``report_paths``. Writes: ``approval``. Resume with ``True``/``False`` or
        ``{"approved": bool, "by": "name", "note": "..."}``.
        """
        ctx = _ctx()
        if not config.require_approval:
            approval = {"approved": True, "by": "unattended (require_approval=False)", "at": utc_now()}
            _record_approval(ctx.run_dir, approval)
            return {"approval": approval}
        answer = interrupt(
            {
                "action": "publish",
                "report": state.get("report_paths", {}).get("html"),
                "sinks": [s.describe() for s in config.sinks],
            }
        )
        decision = answer if isinstance(answer, dict) else {"approved": bool(answer)}
        _emit("approve", "approved" if decision.get("approved") else "rejected")
        approval = {
            "approved": bool(decision.get("approved")),
            "by": decision.get("by"),
            "note": decision.get("note"),
            "at": utc_now(),
        }
        if approval["approved"]:
            # Here, once per decision (the node is checkpointed), not in publish, which a resume after a
            # failed sink runs again.
            _record_approval(ctx.run_dir, approval)
        return {"approval": approval}

    def publish(state: OKAState) -> dict[str, Any]:
        """Send the report to each configured sink, only when approved.

        Reads: ``approval``, ``report_paths``. Writes: ``published``.
        """
        if not state.get("approval", {}).get("approved"):
            _emit("publish", "not approved: nothing published")
            return {}
        ctx = _ctx()
        # A sink that fails stops the run here; resume calls every sink again, so sinks are idempotent.
        done = [s.publish(ctx.run_dir, state["report_paths"]) for s in config.sinks]
        _emit("publish", f"published to {len(done)} sink(s)")
        return {"published": done}

    return {
        "observe": observe,
        "knowledge": knowledge,
        "analyze": (analyze, aanalyze),
        "tools": tools,
        "generate": generate,
        "verify": verify,
        "report": report,
        "approve": approve,
        "publish": publish,
    }


def _record_approval(run_dir: Path, approval: dict[str, Any]) -> None:
    """The decision that lets the run write to other systems, beside the run (``approval.json``) and at the
    head of what the sinks add to its audit trail: who allowed the writes that follow."""
    from okaflow._audit import AUDIT_LOG, AuditTrail

    (run_dir / APPROVAL_FILE).write_text(json.dumps(approval, indent=2, sort_keys=True), encoding="utf-8")
    AuditTrail(run_dir / AUDIT_LOG).record(
        "approve",
        system="okaflow",
        endpoint=run_dir.name,
        resource="report",
        detail=f"approved by {approval.get('by') or 'an unnamed approver'}",
    )


def _ref(data: dict[str, Any]) -> ArtifactRef:
    return ArtifactRef.model_validate(data)


def _visual_tasks(generator: GenerationTool | None) -> list[str]:
    """The generation tasks a visual request may name: those the configured generator can do."""
    if generator is None:
        return []
    return [task for task in GENERATION_TASKS if generator.supports(task)]


def _batches(images: list[ModelImage], limit: int | None) -> list[list[ModelImage]]:
    """``images`` in groups of at most ``limit`` (one group, possibly empty, without a limit)."""
    if not limit or len(images) <= limit:
        return [images]
    return [images[i : i + limit] for i in range(0, len(images), limit)]


def _merge_analyses(parts: list[ModelAnalysis]) -> tuple[ModelAnalysis, list[int]]:
    """One analysis from per-batch answers, and each claim's batch.

    Claims keep batch order; a claim that two batches both made (the same facts are in every batch's
    prompt) is kept once, from the first. Tool calls and visual requests are merged without repeats.
    """
    if len(parts) == 1:
        return parts[0], [0] * len(parts[0].claims)
    claims: list[Claim] = []
    batches: list[int] = []
    calls: list[ToolCall] = []
    visuals: list[VisualRequest] = []
    for index, part in enumerate(parts):
        for claim in part.claims:
            if claim not in claims:
                claims.append(claim)
                batches.append(index)
        calls += [c for c in part.tool_calls if c not in calls]
        visuals += [v for v in part.visual_requests if v not in visuals]
    merged = ModelAnalysis(
        claims=claims, tool_calls=calls, visual_requests=visuals, done=all(part.done for part in parts)
    )
    return merged, batches
