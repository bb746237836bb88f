"""The OKA graph: topology snapshot and behaviour with deterministic backends."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from okaflow import BackendOutputError, Case, ConfigurationError, arun, run
from okaflow.agents import RunContext, create_oka_agent
from okaflow.model_backend import UnderstandRequest, prompt_hash
from okaflow.tools.publish import FolderSink
from okaflow.tools.reporting import ArtifactStore, Report

from .conftest import ScriptedBackend

SNAPSHOTS = Path(__file__).parent / "snapshots"


@pytest.mark.parametrize(("name", "sinks"), [("oka_graph", False), ("oka_graph_with_approval", True)])
def test_topology_matches_snapshot(name: str, sinks: bool, tmp_path: Path) -> None:
    with SqliteSaver.from_conn_string(str(tmp_path / "c.sqlite")) as saver:
        graph = create_oka_agent(checkpointer=saver, sinks=[FolderSink(tmp_path / "pub")] if sinks else [])
        mermaid = graph.get_graph().draw_mermaid()
    snapshot = SNAPSHOTS / f"{name}.mmd"
    assert mermaid == snapshot.read_text(encoding="utf-8"), "graph topology changed: update the snapshot if intended"


def test_evidence_only_run_loops_through_tools_and_cites_only_existing_evidence(
    ct_pair_case: Case, tmp_path: Path
) -> None:
    result = run(ct_pair_case, workflow="longitudinal-comparison", out=tmp_path / "run")
    state = result.state
    assert result.status == "completed"
    tools_called = {t["tool"] for t in state["tool_log"]}
    assert {"measure_image", "compare_images", "observation_trend"} <= tools_called
    assert all("error" not in t for t in state["tool_log"])
    assert state["step"] == 2  # one call asking for tools, one writing claims
    ids = {row["id"] for row in state["evidence"]}
    claims = state["claims"]
    assert claims, "the analyst wrote nothing"
    assert all(c["cites"] and set(c["cites"]) <= ids for c in claims)
    assert not result.flagged_claims, [c["flags"] for c in result.flagged_claims]
    assert all(c["kind"] != "image_finding" for c in claims)
    sections = {c["section"] for c in claims}
    assert {"findings", "comparison"} <= sections
    report = result.report
    assert not report.model_configured
    assert report.backend == "evidence-only"
    # Interleaving: the comparison image follows the current image it derives from.
    kinds = [b.type for b in report.blocks]
    first_image = kinds.index("image")
    assert "generated_image" in kinds[first_image:]
    generated = [b for b in report.blocks if b.type == "generated_image"]
    assert {g.task for g in generated} >= {"comparison", "window"}
    assert all(g.label.startswith("DERIVED") and not g.ai_generated for g in generated)
    for name in ("report.json", "report.md", "report.html", "evidence.json", "run.json", "events.jsonl"):
        assert (result.run_dir / name).is_file(), name
    events = [json.loads(line) for line in (result.run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["node"] for e in events][:3] == ["observe", "knowledge", "analyze"]


def test_verify_flags_unsupported_claims_without_dropping_them(ct_pair_case: Case, tmp_path: Path) -> None:
    reply = {
        "claims": [
            {
                "section": "findings",
                "kind": "fact",
                "text": "Creatinine 1.6 mg/dL.",
                "cites": ["Observation/cr-3"],
            },
            {
                "section": "findings",
                "kind": "fact",
                "text": "Creatinine 2.9 mg/dL.",
                "cites": ["Observation/cr-3"],
            },
            {
                "section": "findings",
                "kind": "fact",
                "text": "Haemoglobin is low.",
                "cites": ["Observation/cr-3"],
            },
            {
                "section": "findings",
                "kind": "image_finding",
                "text": "A nodule.",
                "cites": ["Observation/nope"],
            },
            {"section": "impression", "kind": "assessment", "text": "Stable disease.", "cites": []},
        ],
        "done": True,
    }
    backend = ScriptedBackend([reply])
    result = run(ct_pair_case, backend=backend, out=tmp_path / "run", generator=None)
    flags = [[f["code"] for f in c["flags"]] for c in result.state["claims"]]
    assert flags == [[], ["not-supported"], ["not-supported"], ["unknown-citation"], ["no-citation"]]
    report = result.report
    assert report.model_configured
    texts = [b for b in report.blocks if b.type == "text" and b.author == "model"]
    assert len(texts) == 5 and all(t.provenance and t.provenance.model_id == "scripted-1" for t in texts)
    # The model saw both images as PNG data and the schema.
    req = backend.requests[0]
    assert len(req.images) == 2 and req.images[0].png.startswith(b"\x89PNG")
    assert req.response_schema and "claims" in req.response_schema["properties"]


def test_step_cap_stops_a_model_that_only_calls_tools(ct_pair_case: Case, tmp_path: Path) -> None:
    always_tools = {
        "tool_calls": [{"tool": "measure_image", "arguments": {"image_id": "Image/missing"}}],
        "done": False,
    }
    backend = ScriptedBackend([always_tools])
    result = run(ct_pair_case, backend=backend, out=tmp_path / "run", max_steps=3, generator=None)
    assert len(backend.requests) == 3
    assert backend.requests[-1].context["available_tools"] == []
    assert any("step cap 3" in w for w in result.warnings)
    errors = [t["error"] for t in result.state["tool_log"]]
    assert len(errors) == 2 and all("no image 'Image/missing'" in e for e in errors)
    # The model is told about its failed tool call on the next step.
    assert "no image 'Image/missing'" in backend.requests[1].messages[-1].content


def test_unknown_tool_is_reported_back_not_run(ct_pair_case: Case, tmp_path: Path) -> None:
    backend = ScriptedBackend([{"tool_calls": [{"tool": "rm_rf", "arguments": {}}], "done": False}, {"claims": []}])
    result = run(ct_pair_case, backend=backend, out=tmp_path / "run", generator=None)
    assert result.state["tool_log"][0]["error"].startswith("no tool named 'rm_rf'")


def test_reply_that_fails_the_schema_is_a_typed_error_with_the_raw_text(ct_pair_case: Case, tmp_path: Path) -> None:
    backend = ScriptedBackend(['{"claims": [{"section": "nonsense"}]}'])
    with pytest.raises(BackendOutputError) as info:
        run(ct_pair_case, backend=backend, out=tmp_path / "run")
    assert info.value.raw == '{"claims": [{"section": "nonsense"}]}'
    assert "scripted" in str(info.value)


def test_approval_gate_pauses_then_publishes_only_when_approved(ct_pair_case: Case, tmp_path: Path) -> None:
    pub = tmp_path / "published"
    for approved in (False, True):
        with SqliteSaver.from_conn_string(str(tmp_path / f"c{approved}.sqlite")) as saver:
            graph = create_oka_agent(checkpointer=saver, sinks=[FolderSink(pub)], generator=None)
            run_dir = tmp_path / f"run-{approved}"
            ctx = RunContext(case=ct_pair_case, run_dir=run_dir, artifacts=ArtifactStore(run_dir))
            config = {"configurable": {"thread_id": "t"}}
            graph.invoke({"case_id": "x", "workflow": "radiology-report", "task": ""}, config, context=ctx)
            snap = graph.get_state(config)
            assert snap.next == ("approve",)
            assert (run_dir / "report.html").exists() and not (pub / run_dir.name).exists()
            final = graph.invoke(Command(resume={"approved": approved, "by": "dr test"}), config, context=ctx)
            assert final["approval"]["by"] == "dr test"
            assert (pub / run_dir.name / "report.html").exists() is approved
            assert bool(final.get("published")) is approved


def test_approval_without_checkpointer_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="checkpointer"):
        create_oka_agent(sinks=[FolderSink("x")])


def test_async_run_matches_sync_run(ct_pair_case: Case, tmp_path: Path) -> None:
    sync = run(ct_pair_case, out=tmp_path / "sync")
    # A fresh thread owns its event loop, whatever loop another test's fixture left running here.
    with ThreadPoolExecutor(1) as pool:
        asyn = pool.submit(asyncio.run, arun(ct_pair_case, out=tmp_path / "async")).result()
    assert asyn.status == "completed"
    assert [c["text"] for c in asyn.state["claims"]] == [c["text"] for c in sync.state["claims"]]
    a, s = Report.model_validate_json(asyn.report_paths["json"].read_text()), sync.report
    assert [b.type for b in a.blocks] == [b.type for b in s.blocks]


def test_user_defined_workflow_composes_tools_and_prompts(ct_pair_case: Case, tmp_path: Path) -> None:
    from dataclasses import replace

    from okaflow.workflows import RADIOLOGY_REPORT, get_workflow

    mine = replace(
        RADIOLOGY_REPORT,
        name="measure-only",
        title="Measurements",
        instructions="Only measure.",
        tools=("measure_image",),
        sections=("findings",),
        visuals=lambda case: [],
    )
    backend = ScriptedBackend([{"claims": []}])
    result = run(ct_pair_case, workflow=mine, backend=backend, out=tmp_path / "run")
    assert result.report.title.startswith("Measurements")
    prompt = backend.requests[0].messages[-1].content
    assert "Only measure." in prompt and '"measure_image"' in prompt and "compare_images" not in prompt
    assert backend.requests[0].context["available_tools"] == ["measure_image"]
    assert get_workflow("okaflow.workflows:LONGITUDINAL_COMPARISON").name == "longitudinal-comparison"
    with pytest.raises(ConfigurationError, match="no workflow named"):
        get_workflow("nope")


class OneImageBackend(ScriptedBackend):
    """A scripted model behind a server that takes one image per prompt."""

    max_images_per_request = 1


def test_images_over_the_backends_limit_go_in_batches_and_claims_keep_their_batchs_provenance(
    ct_pair_case: Case, tmp_path: Path
) -> None:
    def answer(request: UnderstandRequest) -> dict[str, Any]:
        (image,) = request.images
        seen = {"section": "findings", "kind": "image_finding", "text": "seen", "cites": [image.evidence_id]}
        # Every batch sees the same record, so every batch may state the same fact.
        fact = {"section": "findings", "kind": "fact", "text": "Compare with the prior CT.", "cites": []}
        return {"claims": [fact, seen]}

    backend = OneImageBackend([answer])
    result = run(ct_pair_case, backend=backend, out=tmp_path / "run", max_steps=1)
    assert [len(r.images) for r in backend.requests] == [1, 1]
    assert "image batch 1 of 2" in backend.requests[0].messages[-1].content
    assert "image batch 2 of 2" in backend.requests[1].messages[-1].content
    claims = result.state["claims"]
    assert [c["text"] for c in claims] == ["Compare with the prior CT.", "seen", "seen"]  # the shared fact once
    image_claims = claims[1:]
    assert [c["cites"] for c in image_claims] == [[r.images[0].evidence_id] for r in backend.requests]
    assert [c["provenance"]["prompt_hash"] for c in image_claims] == [prompt_hash(r) for r in backend.requests]
    # Both batches see the same evidence and schema: only the images differ.
    first, second = backend.requests
    assert first.response_schema == second.response_schema
    assert first.evidence == second.evidence


@pytest.fixture
def fresh_graph_cache(monkeypatch: pytest.MonkeyPatch) -> Any:
    """An empty cache of compiled graphs, whatever the tests before filled in."""
    import okaflow._run

    cache = okaflow._run._CompiledGraphs()
    monkeypatch.setattr(okaflow._run, "_GRAPHS", cache)
    return cache


def test_a_finished_run_leaves_nothing_of_itself_alive(
    ct_pair_case: Case, tmp_path: Path, fresh_graph_cache: Any
) -> None:
    """Long cohorts and replay series must not accumulate runs (langchain_core caches node closures),
    nor may the graph the runs share keep the first run's backend."""
    import gc
    import weakref

    def one(i: int) -> weakref.ref[ScriptedBackend]:
        backend = ScriptedBackend([{"claims": []}])
        run(ct_pair_case, backend=backend, out=tmp_path / f"run-{i}", max_steps=1)
        return weakref.ref(backend)

    refs = [one(i) for i in range(3)]
    gc.collect()
    assert [r() for r in refs] == [None, None, None]


def test_runs_of_one_configuration_share_a_compiled_graph_but_not_their_records(
    ct_pair_case: Case, tmp_path: Path, fresh_graph_cache: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import okaflow.agents

    compiled = []
    real = okaflow.agents.create_oka_agent

    def counting(*args: Any, **kwargs: Any) -> Any:
        compiled.append(kwargs.get("sinks", ()))
        return real(*args, **kwargs)

    monkeypatch.setattr(okaflow.agents, "create_oka_agent", counting)
    backends = [
        ScriptedBackend([{"claims": [{"text": f"run {i}", "cites": [], "section": "findings", "kind": "fact"}]}])
        for i in range(2)
    ]
    results = [run(ct_pair_case, backend=b, out=tmp_path / f"run-{i}", max_steps=1) for i, b in enumerate(backends)]
    assert len(compiled) == 1, "the second run of the same configuration compiled the graph again"
    # Each run called its own backend, and recorded its own calls and checkpoints.
    assert [len(b.requests) for b in backends] == [1, 1]
    for i, result in enumerate(results):
        assert [c["text"] for c in result.state["claims"]] == [f"run {i}"]
        assert (result.run_dir / "model_calls.jsonl").read_text().count("\n") == 1
        assert (result.run_dir / "checkpoints.sqlite").stat().st_size > 0
    # Another setting is another graph; a caller's sinks are never kept, so those runs compile their own.
    run(ct_pair_case, backend=ScriptedBackend([{"claims": []}]), out=tmp_path / "seeded", max_steps=1, seed=7)
    sink = FolderSink(tmp_path / "published")
    for i in range(2):
        run(ct_pair_case, out=tmp_path / f"sink-{i}", sinks=[sink], require_approval=False, max_steps=1)
    assert len(compiled) == 4


def test_the_prompt_offers_the_generators_visual_tasks_and_the_schema_agrees(
    ct_pair_case: Case, tmp_path: Path
) -> None:
    from okaflow.tools.generation import ClassicalGenerator

    backend = ScriptedBackend([{"claims": [], "done": True}])
    run(ct_pair_case, backend=backend, out=tmp_path / "with", generator=ClassicalGenerator())
    text = backend.requests[0].messages[-1].content
    offered = backend.requests[0].response_schema["properties"]["visual_requests"]["items"]["properties"]["task"][
        "enum"
    ]
    assert "visual_requests" in text and all(task in text for task in offered) and "super_resolution" in offered
    silent = ScriptedBackend([{"claims": [], "done": True}])
    run(ct_pair_case, backend=silent, out=tmp_path / "without", generator=None)
    assert "visual_requests" not in silent.requests[0].messages[-1].content, "offered visuals with no generator"


def test_concurrent_async_runs_go_through_oldest_first_not_in_lockstep(ct_pair_case: Case, tmp_path: Path) -> None:
    """Started together, runs used to queue their CPU steps first come, first served: every run loaded and
    rendered its case before the first one asked the model or wrote its report. The oldest run now
    goes through first, so its report is written before the last run has even rendered its images."""
    events: list[tuple[int, str]] = []

    async def many() -> list[Any]:
        def recorder(i: int) -> Any:
            return lambda event: events.append((i, event["node"]))

        backend = ScriptedBackend([{"claims": []}] * 8)
        runs = [
            arun(ct_pair_case, backend=backend, out=tmp_path / f"run-{i}", max_steps=1, on_event=recorder(i))
            for i in range(8)
        ]
        return await asyncio.gather(*runs)

    with ThreadPoolExecutor(1) as pool:
        results = pool.submit(asyncio.run, many()).result()
    assert [r.status for r in results] == ["completed"] * 8
    assert events.index((0, "report")) < events.index((7, "observe")), "\n".join(map(str, events))


def test_async_run_pauses_at_the_approval_gate(ct_pair_case: Case, tmp_path: Path) -> None:
    sink = FolderSink(tmp_path / "published")
    with ThreadPoolExecutor(1) as pool:
        paused = pool.submit(asyncio.run, arun(ct_pair_case, out=tmp_path / "run", sinks=[sink])).result()
    assert paused.status == "awaiting_approval"
    assert (tmp_path / "run" / "report.html").exists()
    assert not (tmp_path / "published").exists()


def test_a_series_no_axis_can_show_is_said_in_the_report_instead_of_ending_the_run(tmp_path: Path) -> None:
    import math

    from okaflow.tools.fhir import ObservationFact, PatientContext

    points = [
        ObservationFact(
            id=f"Observation/v-{i}", text="Viral load", value=v, unit="copies/mL", effective=f"2026-0{i + 1}-01"
        )
        for i, v in enumerate([1200.0, math.inf])
    ]
    case = Case.from_objects(PatientContext(fhir_version="R4", observations=points), [], task="trend?")
    result = run(case, out=tmp_path / "run")
    said = [b for b in result.report.blocks if b.type == "text" and "no trend plot" in b.text]
    assert [b.text for b in said] == [
        "Viral load: no trend plot, because Observation/v-1 has the value inf, which no axis can place."
    ]
    assert said[0].cites == ["Observation/v-0", "Observation/v-1"]


def test_only_a_callers_retriever_or_tools_give_up_the_cpu_slot() -> None:
    from okaflow.agents._graph import _waits_on_servers
    from okaflow.agents._nodes import AgentConfig
    from okaflow.tools.analysis import default_tools
    from okaflow.tools.knowledge import BM25Retriever
    from okaflow.workflows import get_workflow

    class VectorStore:  # a caller's retriever: it may wait on a server
        def search(self, query: str, *, k: int = 5) -> list[Any]:
            return []

    def config(**changes: Any) -> AgentConfig:
        base: dict[str, Any] = {"tools": default_tools(), "knowledge": None}
        base.update(changes)
        return AgentConfig(backend=ScriptedBackend([]), generator=None, workflow=get_workflow("clinical-vqa"), **base)

    # okaflow's own retrievers and tools compute here: they keep the slot, so runs still go oldest first.
    assert _waits_on_servers(config()) == {"generate", "publish"}
    assert _waits_on_servers(config(knowledge=BM25Retriever([]))) == {"generate", "publish"}
    assert "knowledge" in _waits_on_servers(config(knowledge=VectorStore()))

    class CalculatorService:  # a caller's tool, likewise
        name = "calculate"

    assert "tools" in _waits_on_servers(config(tools={**default_tools(), "calculate": CalculatorService()}))
