"""Resume an interrupted run from its last checkpoint: only the steps not yet done call the backend.

A run that stopped — the model server went away, a timeout, Ctrl-C, a crash — leaves its LangGraph
checkpoints (SQLite, one per finished step) and its record in the run directory. :func:`resume`
rebuilds the same agent over the same case and settings, checks the inputs still match, and
continues the graph from the last checkpoint in place: the finished steps are not redone, and the
model calls already made are not made again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from okaflow._case import Case
from okaflow._errors import ConfigurationError, ReplayInputsChangedError, RunDirectoryError
from okaflow._replay import case_from_record, input_changes, read_manifest
from okaflow._run import (
    EventHandler,
    RunResult,
    _agent,
    _closing_owned,
    _event_sink,
    _result,
    _sqlite_saver,
    resolve_backend,
)
from okaflow.model_backend import UnderstandingBackend

__all__ = ["backend_for", "generator_for", "resume"]


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
        RunDirectoryError: Not a run, or a run waiting for approval (use :func:`okaflow.approve`).
        ConfigurationError: The recorded backend cannot be rebuilt: pass ``backend=``.
    """
    path = Path(run_dir)
    manifest = read_manifest(path)
    loaded = case_from_record(manifest, case, strict)
    changes = input_changes(manifest, loaded)
    if changes:
        raise ReplayInputsChangedError(
            f"run {path} cannot be resumed on other inputs: " + "; ".join(changes),
            changes=changes,
            hint="restore the recorded inputs and okaflow version, or start a new run",
        )
    if loaded.task != manifest["case"].get("task"):
        loaded.task = manifest["case"].get("task")
    chosen = backend_for(manifest, backend)
    settings = manifest["settings"]
    options: dict[str, Any] = {
        "max_steps": settings["max_steps"],
        "seed": settings["seed"],
        "require_approval": settings["require_approval"],
        **{k: settings[k] for k in ("max_tokens", "max_claims", "max_claim_chars") if k in settings},
        **agent_options,
    }
    given = [s.describe() for s in sinks]
    if given != settings.get("sinks", []):
        raise ConfigurationError(
            f"run {path} was started to publish to {settings.get('sinks') or 'nowhere'}, not {given or 'nowhere'}",
            hint="resume with the same sinks (CLI: the same --publish-dir) the run was started with",
        )
    options["sinks"] = sinks
    if "generator" not in agent_options:
        options["generator"] = generator_for(settings.get("generator"))
    from okaflow.workflows import get_workflow

    wf = get_workflow(manifest["workflow"])
    emit = _event_sink(path, on_event)
    # A backend okaflow rebuilt from the record is okaflow's to close.
    with _sqlite_saver(path) as saver, _closing_owned(chosen if backend is None else None):
        config = {"configurable": {"thread_id": manifest["thread_id"]}}
        probe, _ = _agent(loaded, wf, chosen, saver, path, dict(options), manifest["created"])
        snapshot = probe.get_state(config)
        # Calls the stopped step made before it failed are answered from the record, not made twice.
        leftovers = _unfinished_calls(path, snapshot.values)
        graph, ctx = _agent(loaded, wf, chosen, saver, path, options, manifest["created"], reuse=leftovers)
        if not snapshot.next:
            if not snapshot.values:
                raise RunDirectoryError(f"run {path} has no checkpoint to resume from", hint="start it again")
            return _result(path, manifest["thread_id"], snapshot)
        if any(task.interrupts for task in snapshot.tasks):
            raise RunDirectoryError(
                f"run {path} is waiting for approval, not interrupted",
                hint="answer it with okaflow approve RUN CASE --yes|--no",
            )
        emit({"node": "resume", "summary": f"resuming before {', '.join(snapshot.next)}"})
        for mode, chunk in graph.stream(None, config, context=ctx, stream_mode=["custom", "updates"]):
            if mode == "custom":
                emit(chunk)
        return _result(path, manifest["thread_id"], graph.get_state(config))


def _unfinished_calls(run_dir: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Recorded model calls that no checkpointed step holds: made by the step that stopped."""
    from okaflow.model_backend import MODEL_CALLS

    record = run_dir / MODEL_CALLS
    if not record.is_file():
        return []
    finished = {
        prov["prompt_hash"]
        for analysis in values.get("analyses", [])
        for prov in analysis.get("batch_provenance") or [analysis["provenance"]]
    }
    calls = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines() if line]
    return [c for c in calls if c["prompt_hash"] not in finished]


def backend_for(manifest: dict[str, Any], backend: UnderstandingBackend | str | None) -> UnderstandingBackend:
    """``backend`` if given, else the recorded backend rebuilt (evidence-only, or the recorded server)."""
    if backend is not None:
        return resolve_backend(backend)
    recorded = manifest["backend"]
    if recorded["name"] == "evidence-only":
        return resolve_backend(None)
    if recorded["name"] == "openai" and recorded.get("base_url"):
        from okaflow.model_backend import OpenAIBackend

        return OpenAIBackend(
            base_url=recorded["base_url"],
            model=recorded["model_id"],
            max_images_per_request=recorded.get("max_images_per_request"),
        )
    raise ConfigurationError(
        f"okaflow cannot rebuild the recorded backend {recorded['name']!r} ({recorded['model_id']})",
        hint="pass backend= (CLI: --backend ...) for the same model",
    )


def generator_for(recorded: dict[str, Any] | None) -> Any:
    """The generator option that rebuilds a recorded generator (``"default"`` for the classical one)."""
    if recorded is None:
        return None
    if recorded["name"] == "classical":
        return "default"
    raise ConfigurationError(
        f"okaflow cannot rebuild the recorded generator {recorded['name']!r}",
        hint="pass generator= with the same generation tool",
    )
