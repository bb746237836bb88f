"""Cohorts: many cases through the async agent at once, with progress, a status table and a summary.

A failing case never stops the cohort: it is recorded as failed with its reason, and running the
same batch again into the same folder resumes it — finished cases are kept, interrupted ones resume
from their last checkpoint, failed ones run again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import html
import json
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from okaflow._case import Case
from okaflow._constants import RUN_MANIFEST
from okaflow._errors import OkaflowError
from okaflow._run import arun, resolve_backend
from okaflow._types import utc_now
from okaflow.model_backend import UnderstandingBackend

__all__ = ["BatchResult", "CaseOutcome", "abatch", "batch", "run_coroutine"]

T = TypeVar("T")
Status = Literal["done", "failed", "resumed", "kept"]
ProgressHandler = Callable[["CaseOutcome", int, int], None]


@dataclass
class CaseOutcome:
    """One case of a batch.

    ``status``: ``done`` (ran now), ``resumed`` (an interrupted run finished now), ``kept`` (already
    finished in an earlier batch), ``failed`` (``reason`` says why; the cohort went on).
    """

    case: str
    status: Status
    run_dir: str
    report: str | None = None
    reason: str | None = None
    flagged_claims: int = 0
    seconds: float = 0.0


@dataclass
class BatchResult:
    """Every case's outcome, and where the summary files are."""

    out: Path
    outcomes: list[CaseOutcome]
    summary_json: Path
    summary_csv: Path
    index_html: Path

    @property
    def failed(self) -> list[CaseOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def batch(
    cases: Sequence[str | Path],
    *,
    out: str | Path,
    concurrency: int = 4,
    backend: UnderstandingBackend | str | None = None,
    on_progress: ProgressHandler | None = None,
    **run_options: Any,
) -> BatchResult:
    """Run ``cases`` concurrently (see :func:`abatch`) from synchronous code, notebooks included."""
    return run_coroutine(
        lambda: abatch(cases, out=out, concurrency=concurrency, backend=backend, on_progress=on_progress, **run_options)
    )


def run_coroutine(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(make())``, in a worker thread when this thread already runs an event loop
    (a Jupyter notebook, or a host application), where ``asyncio.run`` would refuse."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="okaflow-batch") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


async def abatch(
    cases: Sequence[str | Path],
    *,
    out: str | Path,
    concurrency: int = 4,
    backend: UnderstandingBackend | str | None = None,
    on_progress: ProgressHandler | None = None,
    **run_options: Any,
) -> BatchResult:
    """Run every case through the agent, at most ``concurrency`` at a time, each into ``out/<case>``.

    Args:
        cases: Case folders, ``case.json`` files or bundles.
        out: The batch folder: one run directory per case, plus ``summary.json``, ``summary.csv`` and
            ``index.html``. Running the same batch into it again resumes it.
        concurrency: Cases in flight at once.
        backend: One backend shared by all cases (a spec such as ``"openai"`` builds the async client).
        on_progress: Called after each case with its outcome, the number finished and the total.
        **run_options: Passed to :func:`okaflow.arun` for every case (``workflow``, ``max_steps`` …).

    Returns:
        The outcomes in the order of ``cases``; failures are in it, never raised.
    """
    from okaflow._errors import ConfigurationError

    if concurrency < 1:
        raise ConfigurationError(f"concurrency must be at least 1, not {concurrency}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    shared = resolve_backend(backend, asynchronous=True)
    owned = isinstance(backend, str)
    limit = asyncio.Semaphore(concurrency)
    names = _run_names([Path(c) for c in cases])
    done = 0

    async def one(case: Path, name: str) -> CaseOutcome:
        nonlocal done
        async with limit:
            outcome = await _run_one(case, root / name, shared, run_options)
        done += 1
        if on_progress is not None:
            on_progress(outcome, done, len(cases))
        return outcome

    try:
        outcomes = await asyncio.gather(*(one(Path(c), n) for c, n in zip(cases, names, strict=True)))
    finally:
        if owned:
            close = getattr(shared, "aclose", None)
            if close is not None:
                await close()
    return _write_summary(root, list(outcomes))


async def _run_one(case: Path, run_dir: Path, backend: UnderstandingBackend, options: dict[str, Any]) -> CaseOutcome:
    started = time.perf_counter()
    label = str(case)
    try:
        if (run_dir / "report.json").is_file() and (run_dir / RUN_MANIFEST).is_file():
            return CaseOutcome(label, "kept", str(run_dir), str(run_dir / "report.html"))
        if (run_dir / RUN_MANIFEST).is_file() and (run_dir / "checkpoints.sqlite").is_file():
            from okaflow._resume import resume

            # resume is synchronous; the recorded backend is rebuilt inside it.
            result = await asyncio.to_thread(resume, run_dir, case=case)
            status: Status = "resumed"
        else:
            result = await arun(Case.load(case), backend=backend, out=run_dir, force=True, **options)
            status = "done"
    except OkaflowError as exc:
        return CaseOutcome(
            label, "failed", str(run_dir), reason=f"{type(exc).__name__}: {exc}", seconds=_since(started)
        )
    except Exception as exc:  # one case's bug must not stop the cohort: it is reported with the case
        return CaseOutcome(
            label, "failed", str(run_dir), reason=f"unexpected {type(exc).__name__}: {exc}", seconds=_since(started)
        )
    report = result.report_paths.get("html")
    return CaseOutcome(
        label,
        status,
        str(run_dir),
        str(report) if report else None,
        flagged_claims=len(result.flagged_claims),
        seconds=_since(started),
    )


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)


def _run_names(cases: list[Path]) -> list[str]:
    """A run-directory name per case: the folder (or file stem) name, made unique with -2, -3 …"""
    names: list[str] = []
    seen: dict[str, int] = {}
    for case in cases:
        base = case.name if case.is_dir() else (case.parent.name if case.name == "case.json" else case.stem)
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


def _write_summary(root: Path, outcomes: list[CaseOutcome]) -> BatchResult:
    rows = [asdict(o) for o in outcomes]
    summary_json = root / "summary.json"
    summary_json.write_text(json.dumps({"written": utc_now(), "cases": rows}, indent=2), encoding="utf-8")
    summary_csv = root / "summary.csv"
    with summary_csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["case"])
        writer.writeheader()
        writer.writerows(rows)
    index = root / "index.html"
    index.write_text(_index_html(root, outcomes), encoding="utf-8")
    return BatchResult(root, outcomes, summary_json, summary_csv, index)


def _index_html(root: Path, outcomes: list[CaseOutcome]) -> str:
    def link(o: CaseOutcome) -> str:
        if not o.report:
            return ""
        rel = Path(o.report).resolve().relative_to(root.resolve()).as_posix()
        return f'<a href="{html.escape(rel)}">report</a>'

    body = "\n".join(
        f"<tr class={o.status}><td>{html.escape(o.case)}</td><td>{o.status}</td><td>{link(o)}</td>"
        f"<td>{o.flagged_claims}</td><td>{o.seconds:.1f}</td><td>{html.escape(o.reason or '')}</td></tr>"
        for o in outcomes
    )
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in ("done", "resumed", "kept", "failed")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>okaflow batch</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem}}table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #ddd;padding:.3rem .8rem;text-align:left}}tr.failed td{{color:#b00020}}</style>
</head><body><h1>okaflow batch</h1><p>{len(outcomes)} cases: {summary}</p>
<table><thead><tr><th>case</th><th>status</th><th>report</th><th>flagged claims</th><th>seconds</th>
<th>reason</th></tr></thead><tbody>
{body}
</tbody></table></body></html>
"""
