"""Replay a recorded run: the same case and settings, the recorded model and generator answers, no server.

A replay is itself a new run directory (and so can be replayed in turn). It refuses to start when the
inputs differ from the record — a changed, missing or new case file, another okaflow version — and
stops at the first model or generation request the record does not hold, saying how it differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from okaflow._case import Case
from okaflow._record import open_record, recorded_options
from okaflow._run import EventHandler, RunResult, run

__all__ = ["REPORT_FILES", "ReplayResult", "replay"]

REPORT_FILES = ("report.json", "report.md", "report.html")


@dataclass
class ReplayResult:
    """A replay's run, and how its report compares with the original's, byte for byte."""

    run: RunResult
    original: Path
    identical: bool
    differing: list[str] = field(default_factory=list)
    unused_model_calls: int = 0


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

    original, manifest, loaded = open_record(run_dir, case, strict, "replayed")
    recorded = manifest["backend"]
    backend = ReplayBackend(
        original,
        name=recorded["name"],
        model_id=recorded["model_id"],
        is_model=recorded["is_model"],
        max_images_per_request=recorded.get("max_images_per_request"),
    )
    gen = manifest["settings"].get("generator")
    generator = None if gen is None else ReplayGenerator(original, **gen)
    options = recorded_options(manifest)
    target = Path(out) if out is not None else original.with_name(original.name + "-replay")
    result = run(
        loaded,
        workflow=manifest["workflow"],
        backend=backend,
        out=target,
        task=loaded.task,
        force=force,
        on_event=on_event,
        generator=generator,
        _started_at=manifest["created"],
        **options,
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


def _bytes(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None
