"""JSON rendering and writing a report's files atomically.

Readers of a run directory (a viewer, a second process, a user opening the HTML) must never see half a
report: every file is written to a temporary name in the same folder, flushed, and renamed into place.
All formats are rendered before any is written, so a failing renderer leaves the old files untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from okaflow._files import write_text_atomic
from okaflow.tools.reporting._html import render_html
from okaflow.tools.reporting._markdown import render_markdown
from okaflow.tools.reporting._model import Report

__all__ = ["REPORT_FILES", "render_json", "write_report"]

# Format name -> file name written by ``write_report``.
REPORT_FILES: dict[str, str] = {"json": "report.json", "md": "report.md", "html": "report.html"}


def render_json(report: Report) -> str:
    """Render ``report`` as pretty JSON that ``Report.model_validate_json`` reads back unchanged.

    Keys come in the model's field order and nothing depends on the clock, so the same report always
    gives the same text.
    """
    return report.model_dump_json(indent=2) + "\n"


def write_report(
    report: Report,
    out_dir: Path,
    *,
    formats: Iterable[str] = ("json", "md", "html"),
    base_dir: Path | None = None,
) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and/or ``report.html`` into ``out_dir``.

    Args:
        report: The report.
        out_dir: Folder for the files (created if missing).
        formats: Any of ``"json"``, ``"md"``, ``"html"``.
        base_dir: The directory the report's artifact paths are relative to; defaults to
            ``out_dir`` (the usual layout: ``<run>/report.html`` next to ``<run>/artifacts/``).

    Returns:
        Format → path of the written file, in the order of ``formats``.

    Raises:
        ValueError: An unknown format was asked for, or none.
        RunDirectoryError: An artifact the HTML inlines is missing or corrupt.
    """
    wanted = list(dict.fromkeys(formats))
    unknown = [f for f in wanted if f not in REPORT_FILES]
    if unknown or not wanted:
        raise ValueError(f"unknown report formats {unknown or wanted}; choose from {sorted(REPORT_FILES)}")
    out_dir = Path(out_dir)
    base = Path(base_dir) if base_dir is not None else out_dir
    rendered: dict[str, str] = {}
    for fmt in wanted:
        if fmt == "json":
            rendered[fmt] = render_json(report)
        elif fmt == "md":
            rendered[fmt] = render_markdown(report, base_dir=base, out_dir=out_dir)
        else:
            rendered[fmt] = render_html(report, base_dir=base)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for fmt, text in rendered.items():
        path = out_dir / REPORT_FILES[fmt]
        write_text_atomic(path, text)
        written[fmt] = path
    return written
