"""Resume an interrupted run from its last checkpoint: only the steps not yet done call the backend.

A run that stopped — the model server went away, a timeout, Ctrl-C, a crash — leaves its LangGraph
checkpoints (SQLite, one per finished step) and its record in the run directory. :func:`resume`
rebuilds the same agent over the same case and settings, checks the inputs still match, and
continues the graph from the last checkpoint in place: the finished steps are not redone, and the
model calls already made are not made again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from okaflow._case import Case
from okaflow._errors import ConfigurationError, RunAwaitingApprovalError, RunDirectoryError
from okaflow._record import (
    final_state,
    finished_prompt_hashes,
    open_record,
    read_calls,
    rebuilt_tools,
    recorded_options,
)
from okaflow._run import (
    EventHandler,
    RunResult,
    _agent,
    _event_sink,
    _result,
    _sqlite_saver,
    drive,
)
from okaflow.model_backend import UnderstandingBackend
from okaflow.workflows import get_workflow

__all__ = ["resume"]


def resume(
    run_dir: str | Path,
    *,
    backend: UnderstandingBackend | str | None = None,
    case: Case | str | Path | None = None,
    strict: bool = True,
    sinks: Sequence[Any] = (),
    on_event: EventHandler | None = None,
    **agent_options: Any,
) -> RunResult:
    """Continue an interrupted run in place, from its last checkpoint.

    Args:
        run_dir: The interrupted run.
        backend: The understanding backend; default: the recorded one where okaflow can rebuild it
            (evidence-only, or an OpenAI-compatible server at the recorded URL and model, with the key
            from ``$OKAFLOW_API_KEY``).
        case: The case, when the run's was built in Python or has moved.
        strict: Load the case strictly (``False`` if the run was ``--lenient``).
        sinks: The sinks the run was started with (it refuses others, as :func:`okaflow.approve` does).
        on_event: Progress callback, as for :func:`okaflow.run`.
        **agent_options: Custom ``tools`` / ``knowledge`` / ``generator`` the run was given.

    Returns:
        The run's result; a run that had already finished is returned as it is.

    Raises:
        ReplayInputsChangedError: The case files or okaflow's version differ from the record.
        RunAwaitingApprovalError: The run waits for approval (answer it with :func:`okaflow.approve`).
        RunDirectoryError: Not a run, or one with no checkpoint to resume from.
        ConfigurationError: The recorded backend cannot be rebuilt: pass ``backend=``.
    """
    path, manifest, loaded = open_record(run_dir, case, strict, "resumed")
    recorded_sinks = manifest["settings"].get("sinks", [])
    given = [s.describe() for s in sinks]
    if given != recorded_sinks:
        raise ConfigurationError(
            f"run {path} was started to publish to {recorded_sinks or 'nowhere'}, not {given or 'nowhere'}",
            hint="resume with the same sinks (CLI: the same --publish-dir) the run was started with",
        )
    options = {**recorded_options(manifest), **agent_options, "sinks": sinks}
    wf = get_workflow(manifest["workflow"])
    emit = _event_sink(path, on_event)
    # Calls the stopped step made before it failed are answered from the record, not made twice.
    finished = finished_prompt_hashes(final_state(path, manifest))
    leftovers = [call for call in read_calls(path) if call["prompt_hash"] not in finished]
    with rebuilt_tools(manifest, backend, options) as chosen, _sqlite_saver(path) as saver:
        graph, ctx = _agent(loaded, wf, chosen, saver, path, options, manifest["created"], reuse=leftovers)
        config = {"configurable": {"thread_id": manifest["thread_id"]}}
        snapshot = graph.get_state(config)
        if not snapshot.next:
            if not snapshot.values:
                raise RunDirectoryError(f"run {path} has no checkpoint to resume from", hint="start it again")
            return _result(path, manifest["thread_id"], snapshot)
        if any(task.interrupts for task in snapshot.tasks):
            raise RunAwaitingApprovalError(
                f"run {path} is waiting for approval, not interrupted",
                result=_result(path, manifest["thread_id"], snapshot),
                hint="answer it with okaflow approve RUN CASE --yes|--no",
            )
        emit({"node": "resume", "summary": f"resuming before {', '.join(snapshot.next)}"})
        return _result(path, manifest["thread_id"], drive(graph, None, config, ctx, emit))
