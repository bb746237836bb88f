"""Run a workflow over a case, sync or async, into a run directory.

A run directory holds ``run.json`` (what was run, on what inputs, with which settings),
``checkpoints.sqlite`` (LangGraph checkpoints), ``events.jsonl`` (progress events), ``model_calls.jsonl``
and ``generation_calls.jsonl`` (every backend and generator call with its result, as recorded for
replay), ``artifacts/`` (images by content hash), ``evidence.json`` and ``report.{json,md,html}``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import json
import shutil
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from okaflow._audit import AUDIT_LOG, AuditTrail
from okaflow._case import Case
from okaflow._constants import DEFAULT_MAX_STEPS, DEFAULT_RUNS_DIR, DEFAULT_WORKFLOW, ENV_RUNS_DIR, RUN_MANIFEST
from okaflow._errors import ConfigurationError, RunDirectoryError
from okaflow._record import write_manifest
from okaflow._turns import run_turn
from okaflow._types import utc_now
from okaflow._urls import without_credentials
from okaflow._version import __version__
from okaflow.model_backend import EvidenceOnlyAnalyst, UnderstandingBackend
from okaflow.tools.generation import GenerationTool
from okaflow.tools.reporting import Report
from okaflow.workflows import Workflow, get_workflow

__all__ = ["RunResult", "approve", "arun", "resolve_backend", "run"]

EventHandler = Callable[[dict[str, Any]], None]


@dataclass
class RunResult:
    """The outcome of :func:`run`: where it went, and the report if one was written."""

    run_dir: Path
    status: Literal["completed", "awaiting_approval"]
    thread_id: str
    report_paths: dict[str, Path] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def report(self) -> Report:
        """The report, read back from ``report.json``."""
        path = self.report_paths.get("json")
        if path is None:
            raise RunDirectoryError(f"run {self.run_dir} has no report yet (status {self.status})")
        return Report.model_validate_json(path.read_text(encoding="utf-8"))

    @property
    def warnings(self) -> list[str]:
        return list(self.state.get("warnings", []))

    @property
    def flagged_claims(self) -> list[dict[str, Any]]:
        return [c for c in self.state.get("claims", []) if c.get("flags")]


def resolve_backend(spec: str | UnderstandingBackend | None, *, asynchronous: bool = False) -> UnderstandingBackend:
    """A backend from a name, ``module:factory``, or an instance.

    Names: ``evidence-only`` (the default), ``openai`` (an OpenAI-compatible server such as vLLM, configured
    by ``OKAFLOW_MODEL_URL``, ``OKAFLOW_MODEL`` and ``OKAFLOW_API_KEY``; the async client when
    ``asynchronous``).
    """
    if spec is None or spec == "evidence-only":
        return EvidenceOnlyAnalyst()
    if not isinstance(spec, str):
        return spec
    if spec == "openai":
        from okaflow.model_backend import AsyncOpenAIBackend, OpenAIBackend

        return AsyncOpenAIBackend() if asynchronous else OpenAIBackend()
    if ":" in spec:
        return load_spec(spec, "backend", "understand")  # type: ignore[no-any-return]
    raise ConfigurationError(
        f"unknown backend {spec!r}", hint="use 'evidence-only', 'openai' or 'package.module:factory'"
    )


def _new_run_dir(case: Case, out: str | Path | None, force: bool) -> Path:
    if out is None:
        import os

        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        out = Path(os.environ.get(ENV_RUNS_DIR, DEFAULT_RUNS_DIR)) / f"{case.id}-{stamp}-{uuid.uuid4().hex[:6]}"
    run_dir = Path(out)
    if run_dir.exists() and any(run_dir.iterdir()):
        if not (run_dir / RUN_MANIFEST).exists():
            raise RunDirectoryError(
                f"{run_dir} exists and is not an okaflow run directory", hint="choose another --out"
            )
        if not force:
            raise RunDirectoryError(
                f"{run_dir} already holds a run",
                hint="choose another --out, or pass force=True (--force) to replace it",
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _write_manifest(
    run_dir: Path,
    case: Case,
    wf: Workflow,
    backend: UnderstandingBackend,
    thread_id: str,
    settings: dict[str, Any],
    started_at: str,
    parent: dict[str, Any] | None = None,
) -> None:
    manifest: dict[str, Any] = {
        "okaflow_version": __version__,
        "created": started_at,
        "thread_id": thread_id,
        "case": {
            "id": case.id,
            "source": str(case.source.resolve()) if case.source else None,
            "task": case.task,
            "inputs": case.input_hashes(),
        },
        "workflow": wf.name,
        "backend": {
            "name": backend.name,
            "model_id": backend.model_id,
            "is_model": backend.is_model,
            "base_url": without_credentials(getattr(backend, "base_url", None)),
            "max_images_per_request": getattr(backend, "max_images_per_request", None),
        },
        "settings": settings,
    }
    if parent is not None:
        manifest["parent"] = parent
    write_manifest(run_dir, manifest)


def _prepare(case: Case | str | Path, workflow: Workflow | str | None, task: str | None) -> tuple[Case, Workflow]:
    loaded = case if isinstance(case, Case) else Case.load(case)
    if task:
        loaded.task = task
    return loaded, get_workflow(workflow or loaded.workflow or DEFAULT_WORKFLOW)


def _initial_state(case: Case, wf: Workflow) -> dict[str, Any]:
    return {"case_id": case.id, "workflow": wf.name, "task": case.task or ""}


def _event_sink(run_dir: Path, on_event: EventHandler | None) -> EventHandler:
    log = run_dir / "events.jsonl"

    def handle(event: dict[str, Any]) -> None:
        event = {"at": utc_now(), **event}
        with log.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(event, sort_keys=True, default=str) + "\n")
        if on_event is not None:
            on_event(event)

    return handle


def drive(graph: Any, graph_input: Any, config: dict[str, Any], context: Any, emit: EventHandler) -> Any:
    """Run ``graph`` from ``graph_input`` (a state, a resume ``Command``, or ``None`` to continue from
    ``config``'s checkpoint), passing progress events to ``emit``; the final state snapshot."""
    for mode, chunk in graph.stream(graph_input, config, context=context, stream_mode=["custom", "updates"]):
        if mode == "custom":
            emit(chunk)
    return graph.get_state(config)


def _result(run_dir: Path, thread_id: str, snapshot: Any) -> RunResult:
    values = dict(snapshot.values)
    status: Literal["completed", "awaiting_approval"] = "awaiting_approval" if snapshot.next else "completed"
    paths = {k: Path(v) for k, v in values.get("report_paths", {}).items()}
    return RunResult(run_dir=run_dir, status=status, thread_id=thread_id, report_paths=paths, state=values)


@contextlib.contextmanager
def _closing_owned(backend: object) -> Iterator[None]:
    """Closes a backend okaflow created (None: nothing to close)."""
    try:
        yield
    finally:
        close = getattr(backend, "close", None)
        if callable(close):
            close()


class _AsyncCloser:
    """Closes a backend okaflow created, whether its close is sync or async."""

    def __init__(self, backend: object) -> None:
        self.backend = backend

    async def aclose(self) -> None:
        close = getattr(self.backend, "aclose", None) or getattr(self.backend, "close", None)
        if close is not None:
            result = close()
            if hasattr(result, "__await__"):
                await result


@contextlib.contextmanager
def _sqlite_saver(run_dir: Path) -> Iterator[Any]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(run_dir / "checkpoints.sqlite", check_same_thread=False)
    # WAL + NORMAL: a checkpoint survives a crash of the process (what resume needs) without an fsync
    # per step; only a power cut can lose the last step, which resume then redoes.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    try:
        yield SqliteSaver(conn)
    finally:
        conn.close()


@contextlib.asynccontextmanager
async def _async_sqlite_saver(run_dir: Path) -> AsyncIterator[Any]:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with aiosqlite.connect(run_dir / "checkpoints.sqlite") as conn:
        # As _sqlite_saver: a run resumes the same whichever of run() and arun() wrote it.
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        yield AsyncSqliteSaver(conn)


def load_spec(spec: str, what: str, method: str) -> Any:
    """The object ``package.module:name`` names: an instance as it is; a class or factory called once.

    Raises:
        ConfigurationError: the module or name cannot be loaded.
    """
    module_name, _, attr = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot load {what} {spec!r}: {exc}", hint=f"name it as package.module:factory ({what} or factory)"
        ) from None
    # A class has the method too: only an instance that has it is used as it is.
    return found() if isinstance(found, type) or (callable(found) and not hasattr(found, method)) else found


def _generator(option: Any) -> GenerationTool | None:
    """The generation tool a ``generator=`` option names: ``"default"`` (the classical one), ``None``, a tool,
    or ``"package.module:factory"``. Idempotent, so resolved options pass through unchanged.

    Raises:
        ConfigurationError: a spec that cannot be loaded, or an async-only tool (the agent calls ``generate``).
    """
    from okaflow.tools.generation import ClassicalGenerator, require_synchronous

    if option == "default":
        return ClassicalGenerator()
    if isinstance(option, str):
        if ":" not in option:
            raise ConfigurationError(
                f"unknown generator {option!r}",
                hint="use 'default', None, a generation tool or 'package.module:factory'",
            )
        option = load_spec(option, "generator", "generate")
    if option is not None:
        require_synchronous(option)
    return option  # type: ignore[no-any-return]


def _agent(
    case: Case,
    wf: Workflow,
    backend: UnderstandingBackend,
    saver: Any,
    run_dir: Path,
    kwargs: dict[str, Any],
    started_at: str | None = None,
    reuse: list[dict[str, Any]] | None = None,
) -> tuple[Any, Any]:
    """The compiled graph with the run's checkpointer, and the run's context: its backend and generator
    wrapped in recorders that write their calls into the run."""
    from okaflow.agents import RunContext
    from okaflow.model_backend import MODEL_CALLS, RecordingBackend
    from okaflow.tools.generation import GENERATION_CALLS, RecordingGenerator
    from okaflow.tools.reporting import ArtifactStore

    store = ArtifactStore(run_dir)
    generator = _generator(kwargs.pop("generator", "default"))
    graph = _GRAPHS.for_run(backend, generator, wf, kwargs, saver)
    context = RunContext(
        case=case,
        run_dir=run_dir,
        artifacts=store,
        backend=RecordingBackend(backend, run_dir / MODEL_CALLS, reuse=reuse),
        generator=None if generator is None else RecordingGenerator(generator, run_dir / GENERATION_CALLS, store),
    )
    if started_at is not None:
        context.started_at = started_at
    return graph, context


class _CompiledGraphs:
    """Compiled OKA graphs by configuration, so that runs of one configuration share one.

    Compiling costs ~6 ms of CPU, a tenth of a run without a model. A shared graph holds nothing of
    any run: its nodes take the backend, generator and case from the run context (built with stand-ins
    for the backend and generator, which no run calls, and no checkpointer) and each run gets a copy
    with its own checkpointer. Only configurations without objects of the caller's (tools, knowledge, sinks) are
    kept, so the cache never keeps a caller's object alive; the others compile per run as before.
    """

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._graphs: collections.OrderedDict[tuple[Any, ...], Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def for_run(self, backend: Any, generator: Any, wf: Workflow, options: dict[str, Any], saver: Any) -> Any:
        """The configuration's graph, as a copy that checkpoints into ``saver``."""
        from okaflow.agents import create_oka_agent

        rest = {k: v for k, v in options.items() if k != "tools"}
        if (
            options.get("tools") is not None
            or options.get("knowledge") is not None
            or options.get("sinks")
            or not _hashable(wf)  # e.g. a workflow built with a list where a tuple belongs
        ):
            return create_oka_agent(
                backend, options.get("tools"), workflow=wf, checkpointer=saver, generator=generator, **rest
            )
        compiled = self._shared(generator is not None, wf, rest)
        graph = compiled.copy(update={"checkpointer": saver})
        # The nodes are wrapped weakly (see okaflow.agents._graph): the copy keeps them alive too, in
        # case the cache lets the original go while this run is still going.
        graph.okaflow_nodes = compiled.okaflow_nodes
        return graph

    def _shared(self, generates: bool, wf: Workflow, settings: dict[str, Any]) -> Any:
        from okaflow.agents import create_oka_agent

        # Workflows are frozen dataclasses: equal ones are the same workflow, whoever built them.
        key = (wf, generates, repr(sorted(settings.items())))
        with self._lock:
            if key in self._graphs:
                self._graphs.move_to_end(key)
                return self._graphs[key]
        graph = create_oka_agent(None, workflow=wf, generator="default" if generates else None, **settings)
        with self._lock:
            self._graphs[key] = graph
            while len(self._graphs) > self._size:
                self._graphs.popitem(last=False)
        return graph


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


_GRAPHS = _CompiledGraphs()


def _start(
    case: Case | str | Path,
    workflow: Workflow | str | None,
    backend: UnderstandingBackend | str | None,
    out: str | Path | None,
    task: str | None,
    force: bool,
    on_event: EventHandler | None,
    options: dict[str, Any],
    asynchronous: bool = False,
) -> tuple[Case, Workflow, UnderstandingBackend, Path, str, EventHandler, str]:
    """Load the case, pick workflow and backend, create the run directory and its manifest."""
    loaded, wf = _prepare(case, workflow, task)
    chosen = resolve_backend(backend, asynchronous=asynchronous)
    run_dir = _new_run_dir(loaded, out, force)
    thread_id = uuid.uuid4().hex
    # A replay starts at the recorded time, so the report's times (and bytes) repeat.
    started = options.pop("_started_at", None) or utc_now()
    _write_manifest(run_dir, loaded, wf, chosen, thread_id, _settings(options), started)
    _carry_case_audit(loaded, run_dir)
    return loaded, wf, chosen, run_dir, thread_id, _event_sink(run_dir, on_event), started


def _carry_case_audit(case: Case, run_dir: Path) -> None:
    """A pulled case's reads open the run's audit trail, so one file tells everything the run touched."""
    if case.source is not None:
        folder = case.source if case.source.is_dir() else case.source.parent
        AuditTrail(run_dir / AUDIT_LOG).extend(folder / AUDIT_LOG)


def _options(
    agent_options: dict[str, Any], sinks: Sequence[Any], require_approval: bool, max_steps: int, seed: int | None
) -> dict[str, Any]:
    """run()/arun()'s keyword arguments as the agent takes them, the generator built once."""
    options = dict(agent_options, sinks=sinks, require_approval=require_approval, max_steps=max_steps, seed=seed)
    options["generator"] = _generator(options.get("generator", "default"))
    return options


def _settings(options: dict[str, Any]) -> dict[str, Any]:
    """The run's settings as recorded in the manifest (what a replay needs to run it the same way)."""
    settings: dict[str, Any] = {
        "max_steps": options["max_steps"],
        "seed": options["seed"],
        "sinks": [s.describe() for s in options["sinks"]],
        "require_approval": options["require_approval"],
    }
    for key in ("max_tokens", "max_claims", "max_claim_chars"):
        if key in options:
            settings[key] = options[key]
    generator = _generator(options.get("generator", "default"))
    if generator is not None:
        from okaflow.tools.generation import GENERATION_TASKS

        settings["generator"] = {
            "name": generator.name,
            "model_id": generator.model_id,
            "tasks": [t for t in GENERATION_TASKS if generator.supports(t)],
            # How resume and rerun load it again (absent for a generator of your own).
            "rebuild": getattr(generator, "rebuild_spec", None),
        }
    else:
        settings["generator"] = None
    for key in ("knowledge", "tools"):
        if options.get(key) is not None:
            settings[key] = "custom (not recorded: pass it again to replay)"
    return settings


def run(
    case: Case | str | Path,
    *,
    workflow: Workflow | str | None = None,
    backend: UnderstandingBackend | str | None = None,
    out: str | Path | None = None,
    task: str | None = None,
    force: bool = False,
    on_event: EventHandler | None = None,
    sinks: Sequence[Any] = (),
    require_approval: bool = True,
    max_steps: int = DEFAULT_MAX_STEPS,
    seed: int | None = 0,
    **agent_options: Any,
) -> RunResult:
    """Run a workflow over a case and write the report into a new run directory.

    Args:
        case: A :class:`Case`, or a path to a case folder, ``case.json`` or a bundle.
        workflow: A workflow or its name; defaults to the case's own, then ``radiology-report``.
        backend: An understanding backend or a spec; ``None`` is the evidence-only analyst.
        out: The run directory (default ``runs/<case>-<time>-<id>``, or under ``$OKAFLOW_RUNS_DIR``).
        task: Overrides the case's task/question.
        force: Replace ``out`` if it already holds a run.
        on_event: Called with each progress event (``{"node", "summary", ...}``).
        sinks: Report sinks written after approval (see :mod:`okaflow.tools.publish`).
        require_approval: With sinks, pause for a human decision; resume with :func:`approve`.
        max_steps: Cap on analyze calls. seed: Passed to backend and generator.
        **agent_options: Passed to :func:`okaflow.agents.create_oka_agent` (``generator``, ``knowledge``, ``tools``).
    """
    options = _options(agent_options, sinks, require_approval, max_steps, seed)
    loaded, wf, chosen, run_dir, thread_id, emit, started = _start(
        case, workflow, backend, out, task, force, on_event, options
    )
    # A backend okaflow built from a name is okaflow's to close; one passed in is the caller's.
    owned = chosen if isinstance(backend, str) else None
    with _sqlite_saver(run_dir) as saver, _closing_owned(owned):
        graph, ctx = _agent(loaded, wf, chosen, saver, run_dir, options, started)
        config = {"configurable": {"thread_id": thread_id}}
        return _result(run_dir, thread_id, drive(graph, _initial_state(loaded, wf), config, ctx, emit))


async def arun(
    case: Case | str | Path,
    *,
    workflow: Workflow | str | None = None,
    backend: UnderstandingBackend | str | None = None,
    out: str | Path | None = None,
    task: str | None = None,
    force: bool = False,
    on_event: EventHandler | None = None,
    sinks: Sequence[Any] = (),
    require_approval: bool = True,
    max_steps: int = DEFAULT_MAX_STEPS,
    seed: int | None = 0,
    **agent_options: Any,
) -> RunResult:
    """The async twin of :func:`run`: same arguments, the backend called with ``aunderstand``."""
    options = _options(agent_options, sinks, require_approval, max_steps, seed)
    # The run computes while it holds one of its event loop's CPU slots, and gives it up while it waits on
    # the model (okaflow._turns): concurrent runs then go through oldest first instead of in lockstep.
    turn = run_turn()
    async with turn:
        # Loading a case (FHIR validation, DICOM decoding) and building the graph take tens of milliseconds
        # of CPU: in a worker thread, so the event loop keeps serving the other runs' model calls meanwhile.
        loaded, wf, chosen, run_dir, thread_id, emit, started = await asyncio.to_thread(
            _start, case, workflow, backend, out, task, force, on_event, options, asynchronous=True
        )
        owned = chosen if isinstance(backend, str) else None
        async with _async_sqlite_saver(run_dir) as saver, contextlib.aclosing(_AsyncCloser(owned)):
            graph, ctx = await asyncio.to_thread(_agent, loaded, wf, chosen, saver, run_dir, options, started)
            ctx.turn = turn
            config = {"configurable": {"thread_id": thread_id}}
            try:
                async for mode, chunk in graph.astream(
                    _initial_state(loaded, wf),
                    config,
                    context=ctx,
                    stream_mode=["custom", "updates"],
                ):
                    if mode == "custom":
                        emit(chunk)
            finally:
                await ctx.end_ahead()
            return _result(run_dir, thread_id, await graph.aget_state(config))


def approve(
    run_dir: str | Path,
    case: Case | str | Path,
    *,
    approved: bool,
    by: str | None = None,
    note: str | None = None,
    workflow: Workflow | str | None = None,
    backend: UnderstandingBackend | str | None = None,
    sinks: Sequence[Any] = (),
    on_event: EventHandler | None = None,
    **agent_options: Any,
) -> RunResult:
    """Answer a run paused at the approval gate, and let it publish (or not).

    Pass the same case, workflow, backend and sinks the run was started with.
    """
    from langgraph.types import Command

    from okaflow._record import read_manifest

    path = Path(run_dir)
    manifest = read_manifest(path)
    started_with = manifest["settings"].get("sinks", [])
    given = [s.describe() for s in sinks]
    if given != started_with:
        # Publishing somewhere other than what the run (and the human reading it) was told would be silent drift.
        raise ConfigurationError(
            f"run {path} was started to publish to {started_with or 'nowhere'}, not {given or 'nowhere'}",
            hint="approve with the same sinks (CLI: the same --publish-dir) the run was started with",
        )
    loaded, wf = _prepare(case, workflow or manifest["workflow"], None)
    chosen = resolve_backend(backend)
    emit = _event_sink(path, on_event)
    options = dict(agent_options, sinks=sinks, require_approval=True)
    with _sqlite_saver(path) as saver:
        graph, ctx = _agent(loaded, wf, chosen, saver, path, options, manifest["created"])
        config = {"configurable": {"thread_id": manifest["thread_id"]}}
        if not graph.get_state(config).next:
            raise RunDirectoryError(f"run {path} is not waiting for approval")
        answer: Command[Any] = Command(resume={"approved": approved, "by": by, "note": note})
        return _result(path, manifest["thread_id"], drive(graph, answer, config, ctx, emit))
