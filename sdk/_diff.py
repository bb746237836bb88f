"""Compare two runs: what they were given, what each analysis step did, and what their reports say.

Reads only the run directories (manifest, final checkpoint, report files), so runs made on other
machines, with other backends, or replays of each other compare the same way.
"""

from __future__ import annotations

import difflib
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from okaflow._errors import RunDirectoryError
from okaflow._record import final_state, read_manifest

__all__ = ["RunDiff", "StepDiff", "diff_runs"]

_MANIFEST_KEYS = ("okaflow_version", "workflow")


@dataclass
class StepDiff:
    """One analysis step of each run, side by side (``None``: that run has no such step)."""

    step: int
    claims_only_a: list[str] = field(default_factory=list)
    claims_only_b: list[str] = field(default_factory=list)
    tools_a: list[str] = field(default_factory=list)
    tools_b: list[str] = field(default_factory=list)
    model_a: str | None = None
    model_b: str | None = None

    @property
    def same(self) -> bool:
        return not (self.claims_only_a or self.claims_only_b) and self.tools_a == self.tools_b


@dataclass
class RunDiff:
    """Everything that differs between run ``a`` and run ``b``; :attr:`identical` when nothing does."""

    a: Path
    b: Path
    setup: list[str]
    steps: list[StepDiff]
    citations_only_a: list[str]
    citations_only_b: list[str]
    images_only_a: list[str]
    images_only_b: list[str]
    report_diff: list[str]

    @property
    def identical(self) -> bool:
        return not (
            self.setup
            or any(not s.same for s in self.steps)
            or self.citations_only_a
            or self.citations_only_b
            or self.images_only_a
            or self.images_only_b
            or self.report_diff
        )

    def to_text(self) -> str:
        """A terminal-readable account, most telling first."""
        lines = [f"a: {self.a}", f"b: {self.b}"]
        if self.identical:
            return "\n".join([*lines, "identical: same setup, same steps, same report"])
        lines += [f"setup: {d}" for d in self.setup]
        for s in self.steps:
            if s.same:
                continue
            lines.append(f"step {s.step}: model a={s.model_a} b={s.model_b}")
            if s.tools_a != s.tools_b:
                lines.append(f"  tools a: {s.tools_a or '-'}  b: {s.tools_b or '-'}")
            lines += [f"  - {c}" for c in s.claims_only_a] + [f"  + {c}" for c in s.claims_only_b]
        if self.citations_only_a or self.citations_only_b:
            lines.append(f"citations only in a: {self.citations_only_a}  only in b: {self.citations_only_b}")
        if self.images_only_a or self.images_only_b:
            lines.append(f"images only in a: {self.images_only_a}  only in b: {self.images_only_b}")
        if self.report_diff:
            lines += ["report.md:", *self.report_diff]
        return "\n".join(lines)

    def to_html(self) -> str:
        """A self-contained HTML page: the summary, then the reports side by side."""
        summary = html.escape(self.to_text())
        table = difflib.HtmlDiff(wrapcolumn=90).make_table(
            _lines(self.a / "report.md"), _lines(self.b / "report.md"), str(self.a), str(self.b), context=True
        )
        return (
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>okaflow diff</title><style>"
            "body{font-family:system-ui,sans-serif;margin:1.5rem}pre{background:#f6f6f6;padding:1rem}"
            "table.diff{font-family:monospace;font-size:12px;border-collapse:collapse}"
            ".diff_add{background:#dfd}.diff_chg{background:#ffc}.diff_sub{background:#fdd}"
            f"</style></head><body><h1>okaflow diff</h1><pre>{summary}</pre>{table}</body></html>\n"
        )


def diff_runs(a: str | Path, b: str | Path) -> RunDiff:
    """Compare two run directories.

    Raises:
        RunDirectoryError: Either is not a run.
    """
    run_a, run_b = Path(a), Path(b)
    man_a, man_b = read_manifest(run_a), read_manifest(run_b)
    state_a, state_b = final_state(run_a, man_a), final_state(run_b, man_b)
    report_a, report_b = _report(run_a), _report(run_b)
    cites_a, cites_b = _cited(report_a), _cited(report_b)
    imgs_a, imgs_b = _images(report_a), _images(report_b)
    return RunDiff(
        a=run_a,
        b=run_b,
        setup=_setup(man_a, man_b),
        steps=_steps(state_a, state_b),
        citations_only_a=sorted(cites_a - cites_b),
        citations_only_b=sorted(cites_b - cites_a),
        images_only_a=sorted(imgs_a - imgs_b),
        images_only_b=sorted(imgs_b - imgs_a),
        report_diff=list(
            difflib.unified_diff(_lines(run_a / "report.md"), _lines(run_b / "report.md"), "a", "b", lineterm="", n=1)
        ),
    )


def _setup(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    out = [f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in _MANIFEST_KEYS if a.get(k) != b.get(k)]
    for key in ("name", "model_id", "base_url"):
        if a["backend"].get(key) != b["backend"].get(key):
            out.append(f"backend {key}: {a['backend'].get(key)!r} → {b['backend'].get(key)!r}")
    sa, sb = a.get("settings", {}), b.get("settings", {})
    out += [f"setting {k}: {sa.get(k)!r} → {sb.get(k)!r}" for k in sorted(set(sa) | set(sb)) if sa.get(k) != sb.get(k)]
    ia, ib = a["case"].get("inputs", {}), b["case"].get("inputs", {})
    if sorted(ia.values()) != sorted(ib.values()):
        out.append("case inputs differ (by content hash)")
    if a["case"].get("task") != b["case"].get("task"):
        out.append(f"task: {a['case'].get('task')!r} → {b['case'].get('task')!r}")
    return out


def _steps(a: dict[str, Any], b: dict[str, Any]) -> list[StepDiff]:
    by_a = {x["step"]: x for x in a.get("analyses", [])}
    by_b = {x["step"]: x for x in b.get("analyses", [])}
    tools_a, tools_b = _tools_by_step(a), _tools_by_step(b)
    out = []
    for step in sorted(set(by_a) | set(by_b)):
        ca, cb = _claims(by_a.get(step)), _claims(by_b.get(step))
        out.append(
            StepDiff(
                step=step,
                claims_only_a=[c for c in ca if c not in cb],
                claims_only_b=[c for c in cb if c not in ca],
                tools_a=tools_a.get(step, []),
                tools_b=tools_b.get(step, []),
                model_a=(by_a.get(step) or {}).get("provenance", {}).get("model_id"),
                model_b=(by_b.get(step) or {}).get("provenance", {}).get("model_id"),
            )
        )
    return out


def _claims(analysis: dict[str, Any] | None) -> list[str]:
    if not analysis:
        return []
    return [f"[{c['section']}] {c['text']} {c.get('cites', [])}" for c in analysis["analysis"].get("claims", [])]


def _tools_by_step(state: dict[str, Any]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for call in state.get("tool_log", []):
        # A tool call carries the number of the analysis step that asked for it.
        out.setdefault(call.get("step", 0), []).append(f"{call['tool']}({json.dumps(call['arguments'])})")
    return out


def _report(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "report.json"
    if not path.is_file():
        raise RunDirectoryError(f"run {run_dir} has no report.json", hint="resume it first: okaflow resume RUN")
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _cited(report: dict[str, Any]) -> set[str]:
    return {cite for block in report.get("blocks", []) for cite in block.get("cites", []) or []}


def _images(report: dict[str, Any]) -> set[str]:
    found = set()
    for block in report.get("blocks", []):
        ref = block.get("image")
        if isinstance(ref, dict) and ref.get("sha256"):
            found.add(f"{block.get('type')}:{ref['sha256'][:16]}")
    return found


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
