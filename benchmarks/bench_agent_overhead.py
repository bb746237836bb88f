"""Agent overhead per node: the OKA graph with a SQLite checkpointer vs the same node bodies in a plain loop.

Run: ``python benchmarks/bench_agent_overhead.py [CASE_DIR] [--reps N]``

The raw baseline calls the very same node functions (backend, tools, generation, report writing
included) in a hand-routed Python loop with no LangGraph and no checkpointer. The difference,
divided by the number of node executions, is what the agent machinery costs per node.
Target: ≤ 5 ms per node beyond the node bodies.
"""

from __future__ import annotations

import argparse
import operator
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

from langgraph.checkpoint.sqlite import SqliteSaver

from okaflow import Case
from okaflow.agents import RunContext, _nodes, create_oka_agent, merge_evidence
from okaflow.agents._nodes import AgentConfig
from okaflow.model_backend import EvidenceOnlyAnalyst
from okaflow.tools.analysis import default_tools
from okaflow.tools.generation import ClassicalGenerator
from okaflow.tools.reporting import ArtifactStore
from okaflow.workflows import get_workflow

ROOT = Path(__file__).resolve().parents[1]
_ADD = {"warnings", "analyses", "tool_log", "generated", "published"}


def _apply(state: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if key == "evidence":
            state[key] = merge_evidence(state.get(key, []), value)
        elif key in _ADD:
            state[key] = operator.add(state.get(key, []), value)
        else:
            state[key] = value


def raw_loop(case: Case, workflow: str, run_dir: Path) -> int:
    """The node bodies, hand-routed exactly as the graph routes them. Returns node executions."""
    config = AgentConfig(EvidenceOnlyAnalyst(), ClassicalGenerator(), default_tools(), get_workflow(workflow))
    nodes = _nodes.build_nodes(config)
    ctx = RunContext(case=case, run_dir=run_dir, artifacts=ArtifactStore(run_dir))
    fake = SimpleNamespace(context=ctx, stream_writer=lambda event: None)
    state: dict[str, Any] = {"case_id": case.id, "workflow": workflow, "task": case.task or ""}
    executed = 0
    with mock.patch.object(_nodes, "get_runtime", return_value=fake):
        order = ["observe", "knowledge", "analyze"]
        while order:
            name = order.pop(0)
            fn = nodes[name][0] if isinstance(nodes[name], tuple) else nodes[name]
            _apply(state, fn(state))
            executed += 1
            if name == "analyze":
                if state.get("pending_tool_calls"):
                    order = ["tools", "analyze"]
                elif state.get("visual_requests"):
                    order = ["generate", "verify", "report"]
                else:
                    order = ["verify", "report"]
    return executed


def graph_run(case: Case, workflow: str, run_dir: Path) -> int:
    """The compiled agent with a SqliteSaver on a file. Returns node executions."""
    conn = sqlite3.connect(run_dir / "checkpoints.sqlite", check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")  # as okaflow.run configures it
    conn.execute("PRAGMA synchronous=NORMAL")
    try:
        graph = create_oka_agent(workflow=workflow, checkpointer=SqliteSaver(conn))
        ctx = RunContext(case=case, run_dir=run_dir, artifacts=ArtifactStore(run_dir))
        config = {"configurable": {"thread_id": "bench"}}
        executed = 0
        for _ in graph.stream(
            {"case_id": case.id, "workflow": workflow, "task": case.task or ""},
            config,
            context=ctx,
            stream_mode="updates",
        ):
            executed += 1
        return executed
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("case", nargs="?", default=str(ROOT / "examples/cases/chest-ct-followup"))
    parser.add_argument("--reps", type=int, default=25)
    args = parser.parse_args()
    case = Case.load(args.case)
    workflow = case.workflow or "radiology-report"
    timings: dict[str, list[float]] = {"raw": [], "graph": []}
    nodes = {"raw": 0, "graph": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps + 2):  # two warm-up rounds, discarded
            for kind, fn in (("raw", raw_loop), ("graph", graph_run)):
                run_dir = Path(tmp) / f"{kind}-{rep}"
                run_dir.mkdir()
                start = time.perf_counter()
                nodes[kind] = fn(case, workflow, run_dir)
                if rep >= 2:
                    timings[kind].append(time.perf_counter() - start)
    # The minimum is the least noisy estimate of a fixed cost on a shared machine; medians are shown too.
    raw, graph = min(timings["raw"]), min(timings["graph"])
    raw_med, graph_med = statistics.median(timings["raw"]), statistics.median(timings["graph"])
    assert nodes["raw"] == nodes["graph"], nodes
    per_node_ms = (graph - raw) / nodes["graph"] * 1000
    print(f"case {case.id} ({workflow}), {nodes['graph']} node executions, best (median) of {args.reps}")
    print(f"  raw node bodies in a loop : {raw * 1000:8.1f} ms ({raw_med * 1000:.1f})")
    print(f"  OKA graph + SqliteSaver   : {graph * 1000:8.1f} ms ({graph_med * 1000:.1f})")
    print(f"  overhead per node         : {per_node_ms:8.2f} ms   (target ≤ 5 ms)")
    print(f"  ratio raw/graph           : {raw / graph:8.3f}")


if __name__ == "__main__":
    main()
