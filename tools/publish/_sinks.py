"""Where a finished report goes beyond the run directory. Every sink runs only after approval.

:class:`FolderSink` copies the report files and their artifacts into a folder (a shared drive, a
results directory). The EHR (FHIR) and PACS (DICOM) sinks implement the same protocol.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from okaflow._errors import ConfigurationError

__all__ = ["FolderSink", "ReportSink"]


@runtime_checkable
class ReportSink(Protocol):
    def describe(self) -> str:
        """One line naming the destination, shown to the human who approves."""
        ...

    def publish(self, run_dir: Path, report_paths: Mapping[str, str]) -> str:
        """Write the report out; return where it went."""
        ...


class FolderSink:
    """Copies ``report.*`` and the artifacts they reference into ``<folder>/<run name>/``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def describe(self) -> str:
        return f"folder {self.folder}"

    def publish(self, run_dir: Path, report_paths: Mapping[str, str]) -> str:
        target = self.folder / run_dir.name
        if target.resolve() == run_dir.resolve():
            raise ConfigurationError("the publish folder is the run directory itself", hint="choose another folder")
        target.mkdir(parents=True, exist_ok=True)
        for path in report_paths.values():
            shutil.copy2(path, target / Path(path).name)
        artifacts = run_dir / "artifacts"
        if artifacts.is_dir():
            shutil.copytree(artifacts, target / "artifacts", dirs_exist_ok=True)
        return str(target)
