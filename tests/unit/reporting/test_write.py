"""write_report: all formats, atomically, deterministically."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from okaflow._errors import RunDirectoryError
from okaflow.tools.reporting import Report, write_report


def test_writes_three_files(rich_report: tuple[Report, Path]) -> None:
    report, base = rich_report
    paths = write_report(report, base)
    assert list(paths) == ["json", "md", "html"]
    assert {p.name for p in paths.values()} == {"report.json", "report.md", "report.html"}
    assert Report.model_validate_json(paths["json"].read_text(encoding="utf-8")) == report
    assert not [p for p in base.iterdir() if p.name.startswith(".")], "no temp files left behind"


def test_same_report_gives_byte_identical_files(make_report: Callable[..., Report], tmp_path: Path) -> None:
    first = write_report(make_report(tmp_path / "a"), tmp_path / "a")
    second = write_report(make_report(tmp_path / "b"), tmp_path / "b")
    for fmt in ("json", "md", "html"):
        assert first[fmt].read_bytes() == second[fmt].read_bytes(), fmt
    # Artifacts too: same content, same names.
    assert sorted(p.name for p in (tmp_path / "a" / "artifacts").iterdir()) == sorted(
        p.name for p in (tmp_path / "b" / "artifacts").iterdir()
    )


def test_subset_and_separate_base_dir(rich_report: tuple[Report, Path], tmp_path: Path) -> None:
    report, base = rich_report
    out = tmp_path / "export"
    paths = write_report(report, out, formats=("html", "md"), base_dir=base)
    assert list(paths) == ["html", "md"]
    assert not (out / "report.json").exists()
    assert "](../artifacts/" in paths["md"].read_text(encoding="utf-8")


def test_unknown_format_is_refused(rich_report: tuple[Report, Path]) -> None:
    report, base = rich_report
    with pytest.raises(ValueError, match="pdf"):
        write_report(report, base, formats=("json", "pdf"))
    with pytest.raises(ValueError, match="unknown report formats"):
        write_report(report, base, formats=())


def test_failed_render_leaves_old_files_untouched(rich_report: tuple[Report, Path]) -> None:
    report, base = rich_report
    paths = write_report(report, base)
    before = {fmt: p.read_bytes() for fmt, p in paths.items()}
    shutil.rmtree(base / "artifacts")
    with pytest.raises(RunDirectoryError, match="missing"):
        write_report(report.model_copy(update={"title": "Changed"}), base)
    assert {fmt: p.read_bytes() for fmt, p in paths.items()} == before
