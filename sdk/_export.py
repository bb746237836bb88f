"""Portable case bundles: a run's record and its case inputs in one zip, importable and replayable elsewhere.

Layout of the zip::

    okaflow-export.json   what this is: format version, okaflow version, case id, the files below
    run/                  the run directory (manifest, checkpoints, call records, artifacts, report)
    case/                 the case folder's files (case.json, bundle, images, knowledge documents)

Inputs outside the case folder that okaflow can name portably (``pydicom:NAME``) are not copied:
the importing machine resolves them, and a replay's input check tells if its copy differs.
Import refuses entries that would land outside the target folder.

``deidentify=True`` shares a de-identified case instead, with the run recorded again over it (see
``okaflow._deid_run``); ``okaflow-export.json`` and the run's manifest then say what was done.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from okaflow._errors import ConfigurationError, DeidentificationError, InputError, RunDirectoryError
from okaflow._record import read_manifest, write_manifest
from okaflow._version import __version__

__all__ = ["EXPORT_FORMAT", "export_run", "import_run"]

EXPORT_FORMAT = 1
_INDEX = "okaflow-export.json"
_SKIP_SUFFIXES = ("-wal", "-shm")


def export_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    deidentify: bool = False,
    key: bytes | str | None = None,
    date_shift_days: int | None = None,
    strict: bool = True,
) -> Path:
    """Write ``run_dir`` and its case inputs into the zip ``out``.

    Args:
        run_dir: The run to share.
        out: The zip to write.
        deidentify: Share a de-identified case instead (see :mod:`okaflow.tools.deid`): DICOM through the
            PS3.15 basic profile with modified dates, the FHIR bundle, ``case.json`` and knowledge documents
            with consistent pseudonyms and one date shift; then the run is recorded again over that case
            with its original answers, scrubbed (so the bundle replays byte-identically elsewhere), and the
            whole bundle is searched for any original value before it is written.
        key: The pseudonym key (random when None, and then forgotten). Pass the same key to export several
            runs of the same patients consistently; never share it.
        date_shift_days: Days every date moves (default: 30 to 365 days back, derived from the key).
        strict: Load the case strictly when re-recording (``False`` for a run that was ``--lenient``).

    Raises:
        RunDirectoryError: Not a run, or its case was built in Python (no folder to take inputs from).
        DeidentificationError: An input cannot be de-identified, or an original value survived (the
            message names the file and the kind of value; nothing is written).
        MissingExtraError: ``deidentify`` without the ``deid`` extra.
    """
    if not deidentify and (key is not None or date_shift_days is not None):
        raise ConfigurationError(
            "key= and date_shift_days= only apply to a de-identified export", hint="pass deidentify=True"
        )
    run = Path(run_dir)
    manifest = read_manifest(run)
    case_root, inputs = _case_inputs(run, manifest)
    target = Path(out)
    if not deidentify:
        _checkpoint_wal(run / "checkpoints.sqlite")
        _write(target, manifest, _files(run), inputs, case_root, None)
        return target
    from okaflow._deid_run import rerecord_deidentified
    from okaflow.tools.deid import PROFILE_EDITION, Pseudonymizer, deidentify_case, find_leaks

    pseudonyms = Pseudonymizer.create(key, date_shift_days)
    with tempfile.TemporaryDirectory(prefix="okaflow-deid-") as tmp:
        work = Path(tmp)
        done = deidentify_case(case_root, inputs, work / "case", pseudonyms)
        new_run = rerecord_deidentified(run, manifest, work / "case", work / "run", pseudonyms, strict=strict)
        _checkpoint_wal(new_run / "checkpoints.sqlite")
        leaks = find_leaks(work / "case", pseudonyms) + [f"run/{leak}" for leak in find_leaks(new_run, pseudonyms)]
        if leaks:
            raise DeidentificationError(
                "original values survive de-identification, so nothing was written: " + "; ".join(leaks),
                hint="remove the free text that holds them (or the file) from the case, then export again",
            )
        deid = {
            "dicom_profile": f"PS3.15 Annex E Basic Application Level Confidentiality Profile ({PROFILE_EDITION}), "
            "Retain Longitudinal Temporal Information with Modified Dates option; pixel data not altered",
            "fhir": "ids, identifiers, names re-keyed; telecom, address, photo, contact and narratives removed; "
            "dates shifted; free text scrubbed of every replaced value",
            "date_shift": "withheld",
            "key_id": pseudonyms.key_id,
            "model_answers": "carried over from the original run with the same replacements; the model did not "
            "see these de-identified prompts",
        }
        _annotate(new_run, deid)
        _write(target, read_manifest(new_run), _files(new_run), list(done.files.values()), work / "case", deid)
    return target


def _case_inputs(run: Path, manifest: dict[str, Any]) -> tuple[Path, list[str]]:
    """The run's case folder and its input names, every one a file okaflow can carry."""
    source = manifest["case"].get("source")
    if not source or not Path(source).is_dir():
        raise RunDirectoryError(
            f"run {run} has no case folder to export (its case was built in Python or has moved)",
            hint="export runs of case folders; a moved case can be replayed with --case first",
        )
    case_root = Path(source)
    inputs = list(manifest["case"].get("inputs", {}))
    # Only names inside the folder: an absolute name (or one climbing out with ..) joined to the folder is
    # the original file itself, which a de-identified copy would overwrite.
    missing = [n for n in inputs if not n.startswith("pydicom:") and not _inside(case_root, n)]
    if missing:
        raise RunDirectoryError(
            f"run {run}'s inputs {missing} are not files inside its case folder {case_root}",
            hint="export needs every input inside the case folder (or named pydicom:NAME)",
        )
    return case_root, inputs


def _inside(root: Path, name: str) -> bool:
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and (root / path).is_file()


def _write(
    target: Path,
    manifest: dict[str, Any],
    run_files: list[tuple[str, Path]],
    inputs: list[str],
    case_root: Path,
    deid: dict[str, Any] | None,
) -> None:
    files = dict(run_files)
    # pydicom:NAME inputs stay out: the importing machine resolves them (a replay's input check tells if its
    # copy differs). A de-identified case has none left (they were copied in, de-identified).
    files.update({f"case/{PurePosixPath(n)}": case_root / n for n in inputs if not n.startswith("pydicom:")})
    index = {
        "format": EXPORT_FORMAT,
        "okaflow_version": __version__,
        "case_id": manifest["case"]["id"],
        "workflow": manifest["workflow"],
        "deidentified": deid,
        "files": sorted(files),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(_INDEX, json.dumps(index, indent=2))
        for arcname, path in sorted(files.items()):
            zf.write(path, arcname)


def _annotate(run: Path, deid: dict[str, Any]) -> None:
    manifest = read_manifest(run)
    manifest["deidentified"] = deid
    write_manifest(run, manifest)


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
    manifest = read_manifest(run)
    manifest["case"]["source"] = str((target / "case").resolve())
    manifest["imported_from"] = {"bundle": str(source.resolve()), "okaflow_version": index.get("okaflow_version")}
    write_manifest(run, manifest)
    return run


def _files(run: Path) -> list[tuple[str, Path]]:
    return [
        (f"run/{p.relative_to(run).as_posix()}", p)
        for p in sorted(run.rglob("*"))
        if p.is_file() and not p.name.endswith(_SKIP_SUFFIXES)
    ]


def _checkpoint_wal(db: Path) -> None:
    """Fold the WAL into the database file, so the copy in the zip is complete on its own."""
    if db.is_file():
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
