"""Portable case bundles: a run's record and its case inputs in one zip, importable and replayable elsewhere.

Layout of the zip::

    okaflow-export.json   what this is: format version, okaflow version, case id, the files below
    run/                  the run directory (manifest, checkpoints, call records, artifacts, report)
    case/                 the case folder's files (case.json, bundle, images, knowledge documents)

Inputs outside the case folder that okaflow can name portably (``pydicom:NAME``) are not copied:
the importing machine resolves them, and a replay's input check tells if its copy differs.
Import refuses entries that would land outside the target folder.
"""

from __future__ import annotations

import json
import sqlite3
import zipfile
from pathlib import Path, PurePosixPath

from okaflow._errors import InputError, RunDirectoryError
from okaflow._record import read_manifest
from okaflow._version import __version__

__all__ = ["EXPORT_FORMAT", "export_run", "import_run"]

EXPORT_FORMAT = 1
_INDEX = "okaflow-export.json"
_SKIP_SUFFIXES = ("-wal", "-shm")


def export_run(run_dir: str | Path, out: str | Path) -> Path:
    """Write ``run_dir`` and its case inputs into the zip ``out``.

    Raises:
        RunDirectoryError: Not a run, or its case was built in Python (no folder to take inputs from).
    """
    run = Path(run_dir)
    manifest = read_manifest(run)
    source = manifest["case"].get("source")
    if not source or not Path(source).is_dir():
        raise RunDirectoryError(
            f"run {run} has no case folder to export (its case was built in Python or has moved)",
            hint="export runs of case folders; a moved case can be replayed with --case first",
        )
    case_root = Path(source)
    _checkpoint_wal(run / "checkpoints.sqlite")
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    files = {f"run/{p.relative_to(run).as_posix()}": p for p in _files(run)}
    inputs = manifest["case"].get("inputs", {})
    for name in inputs:
        local = case_root / name
        if not name.startswith("pydicom:") and not Path(name).is_absolute() and local.is_file():
            files[f"case/{PurePosixPath(name)}"] = local
    missing = [n for n in inputs if not n.startswith("pydicom:") and f"case/{n}" not in files]
    if missing:
        raise RunDirectoryError(
            f"run {run}'s inputs {missing} are not files inside its case folder {case_root}",
            hint="export needs every input inside the case folder (or named pydicom:NAME)",
        )
    index = {
        "format": EXPORT_FORMAT,
        "okaflow_version": __version__,
        "case_id": manifest["case"]["id"],
        "workflow": manifest["workflow"],
        "files": sorted(files),
    }
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(_INDEX, json.dumps(index, indent=2))
        for arcname, path in sorted(files.items()):
            zf.write(path, arcname)
    return target


def import_run(bundle: str | Path, to: str | Path) -> Path:
    """Unpack an export into ``to`` (``to/run`` and ``to/case``) and point the run at the unpacked case.

    Returns:
        The imported run directory, ready for ``okaflow replay`` / ``diff`` / ``rerun``.

    Raises:
        InputError: Not an okaflow export, an unknown format, or an entry that would leave ``to``.
        RunDirectoryError: ``to`` already holds an import.
    """
    source = Path(bundle)
    target = Path(to)
    if (target / "run").exists():
        raise RunDirectoryError(f"{target} already holds an imported run", hint="import into an empty folder")
    try:
        zf = zipfile.ZipFile(source)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"not a zip file ({exc})", source=source, hint="pass a file okaflow export wrote") from None
    with zf:
        names = zf.namelist()
        if _INDEX not in names:
            raise InputError(f"no {_INDEX} inside", source=source, hint="pass a file okaflow export wrote")
        index = json.loads(zf.read(_INDEX))
        if index.get("format") != EXPORT_FORMAT:
            raise InputError(
                f"export format {index.get('format')!r}; this okaflow reads {EXPORT_FORMAT}", source=source
            )
        root = target.resolve()
        for name in names:
            dest = (target / name).resolve()
            if not dest.is_relative_to(root) or not (name.startswith(("run/", "case/")) or name == _INDEX):
                raise InputError(f"entry {name!r} would be written outside {target}", source=source)
        zf.extractall(target)
    run = target / "run"
    manifest_path = run / "run.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["case"]["source"] = str((target / "case").resolve())
    manifest["imported_from"] = {"bundle": str(source.resolve()), "okaflow_version": index.get("okaflow_version")}
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return run


def _files(run: Path) -> list[Path]:
    return sorted(p for p in run.rglob("*") if p.is_file() and not p.name.endswith(_SKIP_SUFFIXES))


def _checkpoint_wal(db: Path) -> None:
    """Fold the WAL into the database file, so the copy in the zip is complete on its own."""
    if db.is_file():
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
