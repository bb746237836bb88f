"""Fork a recorded run from one of its checkpoints into a new run, with another backend or settings.

LangGraph time travel over the run's own checkpoints: the new run directory starts as a copy of the
parent's history (checkpoints, artifacts, and the record of the calls made before the fork), then
continues from the checkpoint before analysis step ``from_step`` with the new backend. Its manifest
names the parent and the step, and its record replays like any other run's.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from okaflow._case import Case
from okaflow._errors import ConfigurationError, RunDirectoryError
from okaflow._record import (
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
    _new_run_dir,
    _result,
    _settings,
    _sqlite_saver,
    _write_manifest,
    drive,
)
from okaflow._types import utc_now
from okaflow.model_backend import MODEL_CALLS, UnderstandingBackend
from okaflow.workflows import get_workflow

__all__ = ["rerun"]


def rerun(
    run_dir: str | Path,
    *,
    from_step: int = 1,
    out: str | Path | None = None,
    backend: UnderstandingBackend | str | None = None,
    case: Case | str | Path | None = None,
    force: bool = False,
    strict: bool = True,
    max_steps: int | None = None,
    seed: int | None = None,
    on_event: EventHandler | None = None,
    **agent_options: Any,
) -> RunResult:
    """A new run that shares the parent's steps before ``from_step`` and redoes the rest.

    Args:
        run_dir: The parent run (finished or not).
        from_step: The analysis step to redo first (1 redoes every analysis; observe and knowledge are kept).
        out: The new run directory (default ``<run_dir>-from-<step>`` beside it).
        backend: The backend for the redone steps (default: the parent's, rebuilt from its record).
        case: The case, when the parent's was built in Python or has moved.
        force: Replace ``out`` if it holds a run.
        strict: Load the case strictly. max_steps: seed: Override the parent's settings.
        on_event: Progress callback. **agent_options: Custom ``tools`` / ``knowledge`` / ``generator``.

    Raises:
        RunDirectoryError: The parent has no checkpoint before that step (the message lists the steps it has).
        ReplayInputsChangedError: The case files or okaflow's version differ from the parent's record.
    """
    if from_step < 1:
        raise ConfigurationError(f"from_step counts analysis steps from 1, not {from_step}")
    parent, manifest, loaded = open_record(run_dir, case, strict, "forked")
    options = {**recorded_options(manifest), **agent_options, "sinks": ()}
    if max_steps is not None:
        options["max_steps"] = max_steps
    if seed is not None:
        options["seed"] = seed
    # The output folder first: rebuilding a recorded diffusers generator loads its whole pipeline.
    target = Path(out) if out is not None else parent.with_name(f"{parent.name}-from-{from_step}")
    target = _new_run_dir(loaded, target, force)
    with rebuilt_tools(manifest, backend, options) as chosen:
        _copy_history(parent, target)
        started = utc_now()
        wf = get_workflow(manifest["workflow"])
        parent_info = {"run": str(parent.resolve()), "from_step": from_step}
        settings = _settings(dict(options))
        _write_manifest(target, loaded, wf, chosen, manifest["thread_id"], settings, started, parent=parent_info)
        emit = _event_sink(target, on_event)
        with _sqlite_saver(target) as saver:
            graph, ctx = _agent(loaded, wf, chosen, saver, target, options, started)
            config = {"configurable": {"thread_id": manifest["thread_id"]}}
            fork = _checkpoint_before(graph, config, from_step, parent)
            kept = finished_prompt_hashes(fork.values)
            # The kept steps' calls, so the child's record is whole (and replays).
            with (target / MODEL_CALLS).open("a", encoding="utf-8") as fh:
                fh.writelines(json.dumps(call) + "\n" for call in read_calls(parent) if call["prompt_hash"] in kept)
            emit({"node": "rerun", "summary": f"forked from {parent} before analysis step {from_step}"})
            drive(graph, None, fork.config, ctx, emit)  # from the fork's checkpoint …
            return _result(target, manifest["thread_id"], graph.get_state(config))  # … to the thread's newest


def _copy_history(parent: Path, target: Path) -> None:
    """The parent's checkpoints (a consistent copy, WAL included) and artifacts."""
    source = parent / "checkpoints.sqlite"
    if not source.is_file():
        raise RunDirectoryError(f"run {parent} has no checkpoints to fork from")
    with (
        # Not mode=ro: a read-only connection to a WAL database leaves -wal/-shm files behind in the parent.
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target / "checkpoints.sqlite")) as dst,
    ):
        src.backup(dst)
    if (parent / "artifacts").is_dir():
        shutil.copytree(parent / "artifacts", target / "artifacts")


def _checkpoint_before(graph: Any, config: dict[str, Any], step: int, parent: Path) -> Any:
    """The newest checkpoint where analysis step ``step`` is next."""
    available = []
    for snapshot in graph.get_state_history(config):
        if snapshot.next == ("analyze",):
            done = snapshot.values.get("step", 0)
            if done == step - 1:
                return snapshot
            available.append(done + 1)
    raise RunDirectoryError(
        f"run {parent} has no checkpoint before analysis step {step}",
        hint=f"steps it can be forked from: {sorted(set(available)) or 'none'}",
    )
