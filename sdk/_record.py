"""Reading a run's record: the manifest, the case it ran on, its checkpointed state and its model calls.

Replay, resume, rerun, diff and export all start here, so they agree on what "the same inputs" means
and on how the recorded backend, generator and settings are rebuilt.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from okaflow._case import Case
from okaflow._constants import RUN_MANIFEST
from okaflow._errors import ConfigurationError, ReplayInputsChangedError, RunDirectoryError
from okaflow._files import write_text_atomic
from okaflow._version import __version__
from okaflow.model_backend import MODEL_CALLS, UnderstandingBackend

__all__ = [
    "backend_for",
    "case_from_record",
    "final_state",
    "finished_prompt_hashes",
    "generator_for",
    "input_changes",
    "open_record",
    "read_calls",
    "read_manifest",
    "rebuilt_tools",
    "recorded_options",
    "write_manifest",
]

_LIMITS = ("max_tokens", "max_claims", "max_claim_chars")


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Write a run directory's ``run.json`` whole or not at all (it is also rewritten in place, by export and
    import), with sorted keys, so the same run gives the same bytes."""
    write_text_atomic(run_dir / RUN_MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """A run directory's ``run.json``.

    Raises:
        RunDirectoryError: There is none, or it is not JSON.
    """
    path = run_dir / RUN_MANIFEST
    if not path.is_file():
        raise RunDirectoryError(f"{run_dir} is not an okaflow run directory (no {RUN_MANIFEST})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RunDirectoryError(f"{path} is not valid JSON ({exc})", hint="the run record is damaged") from None
    if not isinstance(data, dict):
        raise RunDirectoryError(f"{path} is not a run manifest")
    return data


def open_record(
    run_dir: str | Path, case: Case | str | Path | None, strict: bool, doing: str
) -> tuple[Path, dict[str, Any], Case]:
    """The run's folder, manifest and case, once the case is known to be the recorded one.

    ``doing`` completes "run X cannot be …" in the error (``"replayed"``, ``"resumed"``, ``"forked"``).
    The case gets the recorded task (which may have overridden the case's own).

    Raises:
        RunDirectoryError: Not a run. ReplayInputsChangedError: Inputs or okaflow's version differ.
    """
    path = Path(run_dir)
    manifest = read_manifest(path)
    loaded = case_from_record(manifest, case, strict)
    changes = input_changes(manifest, loaded)
    if changes:
        raise ReplayInputsChangedError(
            f"run {path} cannot be {doing} on other inputs: " + "; ".join(changes),
            changes=changes,
            hint="restore the recorded inputs and okaflow version (or pass case= where the case now lives), "
            "or start a new run",
        )
    loaded.task = manifest["case"].get("task")
    return path, manifest, loaded


def case_from_record(manifest: dict[str, Any], case: Case | str | Path | None, strict: bool) -> Case:
    """The case a recorded run ran on: ``case`` if given, else loaded from the recorded source."""
    if isinstance(case, Case):
        return case
    source = case if case is not None else manifest["case"].get("source")
    if not source:
        raise ConfigurationError(
            "this run's case was built in Python, so the record does not say where to load it from",
            hint="pass the same case: case= (CLI: --case)",
        )
    if not Path(source).exists():
        raise ReplayInputsChangedError(
            f"the recorded case {source} no longer exists",
            changes=[f"missing: {source}"],
            hint="restore it, or pass case= (CLI: --case) where it now lives",
        )
    return Case.load(source, strict=strict)


def input_changes(manifest: dict[str, Any], case: Case) -> list[str]:
    """Every way ``case`` (and this okaflow) differ from the record, one line each."""
    changes = []
    if manifest.get("okaflow_version") != __version__:
        changes.append(f"okaflow {__version__} instead of the recorded {manifest.get('okaflow_version')}")
    recorded: dict[str, str] = manifest["case"].get("inputs", {})
    now = case.input_hashes()
    for path, digest in sorted(recorded.items()):
        if path not in now:
            changes.append(f"missing: {path}")
        elif now[path] != digest:
            changes.append(f"changed: {path} (sha256 {now[path][:12]}… instead of {digest[:12]}…)")
    changes += [f"new: {path}" for path in sorted(set(now) - set(recorded))]
    return changes


def recorded_options(manifest: dict[str, Any]) -> dict[str, Any]:
    """The run's step cap, seed, approval setting and answer limits, as ``run`` takes them."""
    settings = manifest["settings"]
    return {
        "max_steps": settings["max_steps"],
        "seed": settings["seed"],
        "require_approval": settings["require_approval"],
        **{k: settings[k] for k in _LIMITS if k in settings},
    }


def backend_for(manifest: dict[str, Any], backend: UnderstandingBackend | str | None) -> UnderstandingBackend:
    """``backend`` if given, else the recorded backend rebuilt (evidence-only, or the recorded server).

    Raises:
        ConfigurationError: The recorded backend cannot be rebuilt from the record alone.
    """
    from okaflow._run import resolve_backend

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


def generator_for(manifest: dict[str, Any]) -> Any:
    """The ``generator=`` option that rebuilds the recorded generator (``"default"``: the classical one).

    A diffusers pipeline is loaded again from its recorded folder, with the recorded device and settings;
    an image endpoint is reached again at its recorded URL (the API key from ``$OKAFLOW_API_KEY``).

    Raises:
        ConfigurationError: It was a generator the record cannot rebuild (custom, or its pipeline folder is
            gone): pass ``generator=``.
    """
    recorded = manifest["settings"].get("generator")
    if recorded is None:
        return None
    if recorded["name"] == "classical":
        return "default"
    spec = recorded.get("rebuild")
    if spec is not None:
        return _rebuild_generator(spec)
    raise ConfigurationError(
        f"okaflow cannot rebuild the recorded generator {recorded['name']!r}",
        hint="pass generator= with the same generation tool (CLI: --generator diffusers --generation-model DIR, "
        "or --generator endpoint --generation-url URL --generation-model NAME)",
    )


@contextlib.contextmanager
def rebuilt_tools(
    manifest: dict[str, Any], backend: UnderstandingBackend | str | None, options: dict[str, Any]
) -> Iterator[UnderstandingBackend]:
    """The backend for a resumed or forked run, with ``options["generator"]`` resolved: those given, else the
    recorded ones rebuilt; what okaflow rebuilt is closed when the block ends, however it ends."""
    from okaflow._run import _closing_owned, _generator

    chosen = backend_for(manifest, backend)
    with _closing_owned(chosen if backend is None else None), contextlib.ExitStack() as stack:
        if "generator" in options:
            options["generator"] = _generator(options["generator"])
        else:
            options["generator"] = _generator(generator_for(manifest))
            stack.enter_context(_closing_owned(options["generator"]))
        yield chosen


def _rebuild_generator(spec: dict[str, Any]) -> Any:
    from okaflow.tools import generation

    options = {k: v for k, v in spec.items() if k != "kind"}
    if spec["kind"] == "classical":
        return generation.ClassicalGenerator()
    if spec["kind"] == "chain":
        return generation.GeneratorChain(*(_rebuild_generator(g) for g in spec["generators"]))
    if spec["kind"] == "diffusers":
        if not Path(spec["pipeline"]).is_dir():
            raise ConfigurationError(
                f"the run's diffusers pipeline {spec['pipeline']} is gone",
                hint="pass generator= (CLI: --generator diffusers --generation-model DIR) with the same pipeline",
            )
        return generation.DiffusersGenerator(options.pop("pipeline"), **options)
    if spec["kind"] == "endpoint":
        return generation.ImageEndpointGenerator(**options)
    raise ConfigurationError(f"the record names a generator of unknown kind {spec['kind']!r}")


def final_state(run_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The run's last checkpointed state (``{}`` if it has none), read without building a graph."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    db = run_dir / "checkpoints.sqlite"
    if not db.is_file():
        return {}
    # Not mode=ro: a read-only connection to a WAL database leaves -wal/-shm files behind in the run.
    with contextlib.closing(sqlite3.connect(db, check_same_thread=False)) as conn:
        found = SqliteSaver(conn).get_tuple({"configurable": {"thread_id": manifest["thread_id"]}})
    return dict(found.checkpoint["channel_values"]) if found else {}


def read_calls(run_dir: Path) -> list[dict[str, Any]]:
    """The run's recorded model calls, in the order they completed."""
    record = run_dir / MODEL_CALLS
    if not record.is_file():
        return []
    return [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines() if line]


def finished_prompt_hashes(state: dict[str, Any]) -> set[str]:
    """The prompt hashes of every model call that a checkpointed analysis step holds."""
    return {
        prov["prompt_hash"]
        for analysis in state.get("analyses", [])
        for prov in analysis.get("batch_provenance") or [analysis["provenance"]]
    }
