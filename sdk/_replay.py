"""Replay a recorded run: the same case and settings, the recorded model and generator answers, no server.

A replay is itself a new run directory (and so can be replayed in turn). It refuses to start when the
inputs differ from the record — a changed, missing or new case file, another okaflow version — and
stops at the first model or generation request the record does not hold, saying how it differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from okaflow._case import Case
from okaflow._errors import ConfigurationError, ReplayInputsChangedError, RunDirectoryError
from okaflow._run import RUN_MANIFEST, EventHandler, RunResult, run
from okaflow._version import __version__

__all__ = ["REPORT_FILES", "ReplayResult", "case_from_record", "input_changes", "read_manifest", "replay"]

REPORT_FILES = ("report.json", "report.md", "report.html")


@dataclass
class ReplayResult:
    """A replay's run, and how its report compares with the original's, byte for byte."""

    run: RunResult
    original: Path
    identical: bool
    differing: list[str] = field(default_factory=list)
    unused_model_calls: int = 0


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


def replay(
    run_dir: str | Path,
    *,
    out: str | Path | None = None,
    case: Case | str | Path | None = None,
    force: bool = False,
    strict: bool = True,
    on_event: EventHandler | None = None,
    **agent_options: Any,
) -> ReplayResult:
    """Re-execute a recorded run with its recorded model and generator answers.

    Args:
        run_dir: The recorded run.
        out: The replay's run directory (default: ``<run_dir>-replay`` beside it).
        case: The case, when the run's was built in Python (otherwise read from the recorded source).
        force: Replace ``out`` if it holds a run.
        strict: Load the case strictly (``False`` if the original run was ``--lenient``).
        on_event: Progress callback, as for :func:`okaflow.run`.
        **agent_options: Custom ``tools`` / ``knowledge`` the original run was given (not recordable).

    Returns:
        The replay's :class:`ReplayResult`; ``identical`` says whether every report file has the same bytes.

    Raises:
        ReplayInputsChangedError: The case files or okaflow's version differ from the record.
        ReplayMismatchError: The replay asked for a model or generation call the record does not hold.
        RunDirectoryError: ``run_dir`` is not a run (or has no recorded calls).
    """
    from okaflow.model_backend import ReplayBackend
    from okaflow.tools.generation import ReplayGenerator

    original = Path(run_dir)
    manifest = read_manifest(original)
    loaded = case_from_record(manifest, case, strict)
    changes = input_changes(manifest, loaded)
    if changes:
        raise ReplayInputsChangedError(
            f"run {original} cannot be replayed as recorded: " + "; ".join(changes),
            changes=changes,
            hint="restore the recorded inputs and okaflow version, or rerun the case instead of replaying it",
        )
    recorded = manifest["backend"]
    backend = ReplayBackend(
        original,
        name=recorded["name"],
        model_id=recorded["model_id"],
        is_model=recorded["is_model"],
        max_images_per_request=recorded.get("max_images_per_request"),
    )
    settings = manifest["settings"]
    gen = settings.get("generator")
    generator = None if gen is None else ReplayGenerator(original, **gen)
    limits = {k: settings[k] for k in ("max_tokens", "max_claims", "max_claim_chars") if k in settings}
    target = Path(out) if out is not None else original.with_name(original.name + "-replay")
    result = run(
        loaded,
        workflow=manifest["workflow"],
        backend=backend,
        out=target,
        task=manifest["case"].get("task"),
        force=force,
        on_event=on_event,
        max_steps=settings["max_steps"],
        seed=settings["seed"],
        generator=generator,
        _started_at=manifest["created"],
        **limits,
        **agent_options,
    )
    differing = [name for name in REPORT_FILES if _bytes(original / name) != _bytes(result.run_dir / name)]
    return ReplayResult(
        run=result,
        original=original,
        identical=not differing,
        differing=differing,
        unused_model_calls=backend.remaining,
    )


def case_from_record(manifest: dict[str, Any], case: Case | str | Path | None, strict: bool) -> Case:
    """The case a recorded run ran on: ``case`` if given, else loaded from the recorded source."""
    if isinstance(case, Case):
        return case
    source = case if case is not None else manifest["case"].get("source")
    if not source:
        raise ConfigurationError(
            "this run's case was built in Python, so the record does not say where to load it from",
            hint="pass the same case: okaflow.replay(run_dir, case=...)",
        )
    if not Path(source).exists():
        raise ReplayInputsChangedError(
            f"the recorded case {source} no longer exists",
            changes=[f"missing: {source}"],
            hint="restore it, or pass case= (CLI: --case) where it now lives",
        )
    return Case.load(source, strict=strict)


def input_changes(manifest: dict[str, Any], case: Case) -> list[str]:
    """Every way the replay's inputs differ from the record, one line each."""
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


def _bytes(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None
