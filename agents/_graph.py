"""The whole OKA loop in one place.

::

    START → observe → knowledge → analyze ─┬─(tool calls, under the step cap)→ tools → analyze
                                           ├─(visual requests, generator set)→ generate → verify
                                           └─────────────────────────────────────────────→ verify
    verify → report ─┬─(sinks configured)→ approve (human interrupt) → publish → END
                     └───────────────────────────────────────────────────────→ END
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import get_runtime
from langgraph.types import Checkpointer

from okaflow._constants import (
    ANALYSIS_MAX_CLAIM_CHARS,
    ANALYSIS_MAX_CLAIMS,
    ANALYSIS_MAX_TOKENS,
    DEFAULT_MAX_STEPS,
    DEFAULT_WORKFLOW,
)
from okaflow._errors import ConfigurationError
from okaflow.agents._nodes import AgentConfig, build_nodes
from okaflow.agents._state import OKAState, RunContext
from okaflow.model_backend import EvidenceOnlyAnalyst, UnderstandingBackend
from okaflow.tools.analysis import AnalysisTool, default_tools
from okaflow.tools.generation import ClassicalGenerator, GenerationTool
from okaflow.tools.knowledge import KnowledgeRetriever
from okaflow.tools.publish import ReportSink
from okaflow.workflows import Workflow, get_workflow

__all__ = ["create_oka_agent"]

# Nodes that wait on other servers (an image generator, the sinks' EHR and PACS): under okaflow.arun they run
# without the run's CPU slot, so a slow server never holds other runs up. analyze does the same around its
# model calls only; knowledge and tools do when a caller's retriever or tools may (see _waits_on_servers).
_WAIT_ON_SERVERS = frozenset({"generate", "publish"})


def create_oka_agent(
    backend: UnderstandingBackend | None = None,
    tools: Iterable[AnalysisTool] | Mapping[str, AnalysisTool] | None = None,
    *,
    workflow: Workflow | str = DEFAULT_WORKFLOW,
    generator: GenerationTool | Literal["default"] | None = "default",
    knowledge: KnowledgeRetriever | None = None,
    checkpointer: Checkpointer = None,
    max_steps: int = DEFAULT_MAX_STEPS,
    seed: int | None = 0,
    sinks: Sequence[ReportSink] = (),
    require_approval: bool = True,
    max_tokens: int = ANALYSIS_MAX_TOKENS,
    max_claims: int = ANALYSIS_MAX_CLAIMS,
    max_claim_chars: int = ANALYSIS_MAX_CLAIM_CHARS,
) -> CompiledStateGraph[OKAState, RunContext, OKAState, OKAState]:
    """Build the compiled OKA graph.

    Args:
        backend: The understanding backend; ``None`` means okaflow's evidence-only analyst.
        tools: Analysis tools offered in the analyze loop (defaults: okaflow's built-ins). The
            workflow's ``tools`` list chooses which of these are offered.
        workflow: A :class:`Workflow` or a registered name.
        generator: The generation tool; ``"default"`` is the classical generator, ``None`` disables.
        knowledge: A retriever; ``None`` indexes the patient's history and the case's documents.
        checkpointer: Injected LangGraph checkpointer (e.g. ``SqliteSaver``); required for approval.
        max_steps: Cap on analyze calls (the analyze ↔ tools loop); the last call gets no tools.
        seed: Passed to the backend and the generator.
        sinks: Destinations outside the run directory, written after approval.
        require_approval: Ask a human (``interrupt``) before writing to any sink.
        max_tokens: The answer budget of each analysis call.
        max_claims: Most claims per analysis answer. max_claim_chars: Longest claim. Both go into the
            ``response_format`` schema, so a server with guided decoding keeps to them.

    The graph takes ``context=RunContext(case=..., run_dir=..., artifacts=...)`` at invoke time.
    """
    if max_steps < 1:
        raise ConfigurationError(f"max_steps must be at least 1, got {max_steps}")
    if sinks and require_approval and checkpointer is None:
        raise ConfigurationError(
            "an approval gate needs a checkpointer to pause and resume the run",
            hint="pass checkpointer=SqliteSaver(...) or require_approval=False for unattended pipelines",
        )
    toolset = (
        dict(tools) if isinstance(tools, Mapping) else default_tools() if tools is None else {t.name: t for t in tools}
    )
    config = AgentConfig(
        backend=backend or EvidenceOnlyAnalyst(),
        generator=ClassicalGenerator() if generator == "default" else generator,
        tools=toolset,
        workflow=get_workflow(workflow),
        knowledge=knowledge,
        max_steps=max_steps,
        seed=seed,
        sinks=tuple(sinks),
        require_approval=require_approval,
        max_tokens=max_tokens,
        max_claims=max_claims,
        max_claim_chars=max_claim_chars,
    )
    nodes = build_nodes(config)
    waiting = _waits_on_servers(config)
    graph = StateGraph(OKAState, context_schema=RunContext)
    for name, fn in nodes.items():
        if name in {"approve", "publish"} and not sinks:
            continue
        if isinstance(fn, tuple):
            sync_fn, async_fn = fn
            graph.add_node(name, RunnableLambda(_weakly(sync_fn), afunc=_aweakly(async_fn), name=name))
        elif name in waiting:
            weak = _weakly(fn)
            graph.add_node(name, RunnableLambda(weak, afunc=_away_from_cpu(weak), name=name))
        else:
            graph.add_node(name, fn)
    graph.add_edge(START, "observe")
    graph.add_edge("observe", "knowledge")
    graph.add_edge("knowledge", "analyze")

    def after_analyze(state: OKAState) -> str:
        if state.get("pending_tool_calls"):
            return "tools"
        if state.get("visual_requests") and config.generator is not None:
            return "generate"
        return "verify"

    graph.add_conditional_edges("analyze", after_analyze, ["tools", "generate", "verify"])
    graph.add_edge("tools", "analyze")
    graph.add_edge("generate", "verify")
    graph.add_edge("verify", "report")
    if sinks:
        graph.add_edge("report", "approve")
        graph.add_edge("approve", "publish")
        graph.add_edge("publish", END)
    else:
        graph.add_edge("report", END)
    compiled: CompiledStateGraph[Any, Any, Any, Any] = graph.compile(checkpointer=checkpointer, name="oka")
    compiled.okaflow_nodes = nodes  # type: ignore[attr-defined]  # keeps the weakly wrapped nodes alive
    return compiled


# langchain_core caches what a RunnableLambda's function reaches (an lru_cache of 256 entries): handed
# our per-run closures, it kept the last ~128 runs' backends, cases and records alive. It gets a
# trampoline holding only a weak reference; the compiled graph holds the nodes themselves.
def _weakly(fn: Callable[[OKAState], dict[str, Any]]) -> Callable[[OKAState], dict[str, Any]]:
    ref = weakref.ref(fn)

    def node(state: OKAState) -> dict[str, Any]:
        target = ref()
        assert target is not None, "the node outlived its graph"
        return target(state)

    return node


def _waits_on_servers(config: AgentConfig) -> frozenset[str]:
    """The nodes that give up the run's CPU slot: those that wait on other servers.

    okaflow's own retrievers and analysis tools compute here (a BM25 index, image measurements), so
    knowledge and tools keep the slot with them; a caller's may wait on a server (a vector store, a
    calculator service), so with one of those the node gives the slot up.
    """
    waits = set(_WAIT_ON_SERVERS)
    if config.knowledge is not None and not _okaflows(config.knowledge):
        waits.add("knowledge")
    if any(not _okaflows(tool) for tool in config.tools.values()):
        waits.add("tools")
    return frozenset(waits)


def _okaflows(obj: object) -> bool:
    return type(obj).__module__.partition(".")[0] == "okaflow"


def _away_from_cpu(node: Callable[[OKAState], dict[str, Any]]) -> Callable[[OKAState], Awaitable[dict[str, Any]]]:
    """The async twin of a node that waits on other servers: in a worker thread, the run's CPU slot
    given up meanwhile (see ``RunContext.away_from_cpu``)."""

    async def twin(state: OKAState) -> dict[str, Any]:
        context = get_runtime(RunContext).context
        async with context.away_from_cpu() if context is not None else contextlib.nullcontext():
            # to_thread copies the context variables, so the node still finds its run's runtime.
            return await asyncio.to_thread(node, state)

    return twin


def _aweakly(
    fn: Callable[[OKAState], Awaitable[dict[str, Any]]],
) -> Callable[[OKAState], Awaitable[dict[str, Any]]]:
    ref = weakref.ref(fn)

    async def node(state: OKAState) -> dict[str, Any]:
        target = ref()
        assert target is not None, "the node outlived its graph"
        return await target(state)

    return node
