"""The OKA agent's state (what is checkpointed) and its per-run context (what is not).

State holds only JSON-serialisable values so every checkpoint is readable, replayable and free of
pickled objects. The loaded case (pixel arrays and all) travels in :class:`RunContext`, passed at
invoke time, never into a checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypedDict, TypeVar

from okaflow._types import utc_now

if TYPE_CHECKING:
    from okaflow._case import Case
    from okaflow._turns import RunTurn
    from okaflow.model_backend import UnderstandingBackend
    from okaflow.tools.generation import GenerationTool
    from okaflow.tools.knowledge import KnowledgeRetriever
    from okaflow.tools.reporting import ArtifactStore

__all__ = ["OKAState", "RunContext", "merge_evidence"]

T = TypeVar("T")
log = logging.getLogger("okaflow.run")


def merge_evidence(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reducer: append evidence rows, keeping the first row for an id (evidence is immutable)."""
    seen = {row["id"] for row in left}
    merged = list(left)
    for row in right:
        if row["id"] not in seen:
            seen.add(row["id"])
            merged.append(row)
    return merged


class OKAState(TypedDict, total=False):
    """Checkpointed state. Keys are written by the node named in brackets.

    * ``case_id``, ``workflow``, ``task`` — the run's input [caller]
    * ``evidence`` — the evidence table, ``Evidence`` rows as dicts [observe, knowledge, tools, generate]
    * ``warnings`` — ingestion and run warnings [every node]
    * ``model_images`` — renderings shown to the model: evidence id, artifact path/hash, size [observe]
    * ``step`` — analyze calls made so far [analyze]
    * ``analyses`` — every analyze answer with its provenance [analyze]
    * ``pending_tool_calls`` — tool calls the last answer asked for [analyze, tools]
    * ``tool_log`` — every tool call and its outcome [tools]
    * ``visual_requests`` — visual outputs the analysis asked for [analyze]
    * ``generated`` — images produced by the generation tool, with labels and provenance [generate]
    * ``claims`` — the final claims with their verification flags [verify]
    * ``report_paths`` — written report files [report]
    * ``approval`` — the human decision on publishing [approve]
    * ``published`` — where the report was published [publish]
    """

    case_id: str
    workflow: str
    task: str
    evidence: Annotated[list[dict[str, Any]], merge_evidence]
    warnings: Annotated[list[str], operator.add]
    model_images: list[dict[str, Any]]
    step: int
    analyses: Annotated[list[dict[str, Any]], operator.add]
    pending_tool_calls: list[dict[str, Any]]
    tool_log: Annotated[list[dict[str, Any]], operator.add]
    visual_requests: list[dict[str, Any]]
    generated: Annotated[list[dict[str, Any]], operator.add]
    claims: list[dict[str, Any]]
    report_paths: dict[str, str]
    approval: dict[str, Any]
    published: Annotated[list[str], operator.add]


@dataclass
class RunContext:
    """Per-run objects the nodes need but checkpoints must not hold.

    ``retriever`` is built by the knowledge step on first use (indexing the case's documents once per
    run) unless the caller supplies one.
    """

    case: Case
    run_dir: Path
    artifacts: ArtifactStore
    retriever: KnowledgeRetriever | None = None
    # When the run started (ISO 8601, UTC): the report's "created" and generated images' provenance use
    # it, so a replay of the run (which starts from the recorded time) writes the same bytes.
    started_at: str = field(default_factory=utc_now)
    # What this run calls instead of the graph's own backend and generator: okaflow.run wraps them in
    # per-run recorders here, so that one compiled graph serves every run of a configuration.
    backend: UnderstandingBackend | None = None
    generator: GenerationTool | None = None
    # okaflow.arun's place among the concurrent runs of its event loop (okaflow._turns): the run holds a
    # CPU slot while it computes. None (a graph invoked directly): nothing is scheduled.
    turn: RunTurn | None = None
    # What prepared() has made, by name (each name with its own lock), and the tasks prepare_ahead() started.
    _prepared: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _locks: dict[str, threading.Lock] = field(default_factory=dict, init=False, repr=False)
    _locking: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _ahead: dict[str, asyncio.Task[None]] = field(default_factory=dict, init=False, repr=False)

    def away_from_cpu(self) -> AbstractAsyncContextManager[None]:
        """``async with ctx.away_from_cpu():`` around a wait on another server, so other runs compute meanwhile."""
        return self.turn.away() if self.turn is not None else contextlib.nullcontext()

    def prepared(self, name: str, make: Callable[[], T]) -> T:
        """``make()``, made once per run by whoever asks first: a node, or work done ahead (thread-safe).

        A second caller waits for the first to finish; a ``make()`` that raises keeps nothing, so the
        next caller makes it again (and meets the error itself).
        """
        with self._locking:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self._prepared:
                self._prepared[name] = make()
            return self._prepared[name]  # type: ignore[no-any-return]

    def prepare_ahead(self, name: str, work: Callable[[], object]) -> None:
        """Start ``work`` in a worker thread when the CPU is free, once per ``name``.

        ``work`` makes, through :meth:`prepared`, what a later node will ask for. An async node calls
        this before it waits on a server. The work gets a CPU slot only while no run's step waits for
        one (``RunTurn.ahead``); once started it is not interrupted, so a step that comes meanwhile
        waits for it, as for any other step. A failure here is logged (``okaflow.run``, debug) and
        left for the node that needs the result to meet again and report. Without turns (a graph
        invoked directly, ``okaflow.run``, or ``OKAFLOW_CPU_SLOTS=0``, where a CPU engine on the same
        cores wants the CPU while it answers) nothing is done ahead: the node makes it when it needs it.
        """
        if self.turn is None or self.turn.turns.unlimited or name in self._ahead or name in self._prepared:
            return
        turn = self.turn

        async def ahead() -> None:
            async with turn.ahead():
                thread = asyncio.ensure_future(asyncio.to_thread(work))
                try:
                    await asyncio.shield(thread)
                except asyncio.CancelledError:
                    # A thread cannot be stopped: the run (and the slot) end when it has finished writing.
                    await asyncio.wait({thread})
                    if thread.exception() is not None:
                        log.debug("work ahead %r failed: %s", name, thread.exception())
                    raise
                except Exception as exc:
                    log.debug("work ahead %r failed: %s", name, exc)

        self._ahead[name] = asyncio.get_running_loop().create_task(ahead(), name=f"okaflow ahead: {name}")

    async def end_ahead(self) -> None:
        """At the run's end: cancel the work ahead still waiting for the CPU, and wait for any already in
        its thread to finish, so nothing writes into the run directory after the run."""
        tasks = list(self._ahead.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
