"""A finished run as DICOM objects for its source study: one Structured Report, one Secondary Capture per image.

::

    from okaflow.tools.pacs import build_writeback

    writeback = build_writeback("runs/chest")       # PublishError if there is nothing to attach to
    writeback.datasets                              # the SR, then the Secondary Captures, ready to store

Everything is built and checked before anything is sent (a PACS keeps what it is given). The objects
go into the study the run's DICOM images came from, never a new one: a PACS files results by study.

UIDs are derived, not random: ``2.25.<UUID5>`` over the run's thread id and the content (the report's
hash, each image's artifact hash), so building the same run twice gives the same SOP Instance UIDs
and storing them again stores nothing new on the PACS (it already holds those instances).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from okaflow._constants import RUN_MANIFEST
from okaflow._errors import ConfigurationError, MissingExtraError, PublishError
from okaflow._types import Evidence, content_hash

if TYPE_CHECKING:
    import pydicom

__all__ = ["SRKind", "Writeback", "build_writeback", "check_sr_kind", "writeback_uid"]

_FROM_THE_RUNS_MACHINE = "publish from the machine and case folder the run was made with"

#: ``comprehensive`` (default), ``enhanced``, or ``basic`` (Basic Text SR, for viewers that show nothing else).
SRKind = Literal["comprehensive", "enhanced", "basic"]


def check_sr_kind(kind: str) -> SRKind:
    """``kind`` if it is an :data:`SRKind`.

    Raises:
        ConfigurationError: it is not (a misspelt kind is refused, never built as a Comprehensive SR).
    """
    kinds = get_args(SRKind)
    if kind not in kinds:
        raise ConfigurationError(f"sr_kind {kind!r} is not one of {list(kinds)}")
    return kind  # type: ignore[return-value]  # checked against the Literal's values just above


_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/okaflow/okaflow/dicom-writeback")
# Series numbers of the two new series: high, so they sort after the modality's own series in a viewer.
SR_SERIES_NUMBER = 9901
SC_SERIES_NUMBER = 9902


def writeback_uid(*parts: str) -> str:
    """A DICOM UID fixed by ``parts``: ``2.25.`` and the decimal of their UUID5 (at most 44 characters)."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, chr(31).join(parts)).int}"


@dataclass(frozen=True)
class Writeback:
    """What a run becomes in its source study.

    Attributes:
        study_uid: The source study the new series belong to.
        sr: The Structured Report (its own series).
        images: One Secondary Capture per generated or derived image (one more series), in report order.
    """

    study_uid: str
    sr: pydicom.Dataset
    images: tuple[pydicom.Dataset, ...]

    @property
    def datasets(self) -> list[pydicom.Dataset]:
        """Everything to store: the images first, so the SR never references what is not yet there."""
        return [*self.images, self.sr]

    def summary(self) -> dict[str, Any]:
        """Study, series and SOP Instance UIDs of every object, as ``published/dicom.json`` records them."""
        series: dict[str, dict[str, Any]] = {}
        for ds in self.datasets:
            entry = series.setdefault(
                str(ds.SeriesInstanceUID),
                {"series_uid": str(ds.SeriesInstanceUID), "modality": str(ds.Modality), "instances": []},
            )
            entry["instances"].append(
                {"sop_class_uid": str(ds.SOPClassUID), "sop_instance_uid": str(ds.SOPInstanceUID)}
            )
        return {"study_uid": self.study_uid, "series": list(series.values())}


def build_writeback(
    run_dir: str | Path,
    *,
    sr_kind: SRKind = "comprehensive",
    include_generated: bool = True,
    study_uid: str | None = None,
) -> Writeback:
    """Build the SR and Secondary Captures of a finished run, without sending anything.

    Args:
        run_dir: A run directory with ``run.json``, ``report.json`` and ``evidence.json``.
        sr_kind: Which SR SOP class (see :data:`SRKind`).
        include_generated: Also build a Secondary Capture per generated or derived image.
        study_uid: The study to attach to, needed when the run's images span several studies.

    Raises:
        PublishError: No DICOM source images (nothing to attach to), images of several patients, several
            studies without ``study_uid`` (or one that is not among them), a source file that is missing or
            changed since the run, or an object that fails to build.
        MissingExtraError: highdicom is not installed (``pip install 'okaflow[pacs]'``).
        ConfigurationError: ``sr_kind`` is not an :data:`SRKind`.
    """
    check_sr_kind(sr_kind)
    try:
        import highdicom  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("pacs", feature="DICOM write-back", missing=exc.name or "highdicom") from None
    from okaflow.tools.pacs._sc import build_secondary_capture
    from okaflow.tools.pacs._sr import build_report_sr
    from okaflow.tools.reporting import GeneratedImageBlock, Report

    run = Path(run_dir)
    manifest = _read_json(run / RUN_MANIFEST)
    try:
        report = Report.model_validate(_read_json(run / "report.json"))
        evidence = [Evidence.model_validate(row) for row in _read_json(run / "evidence.json")]
    except ValueError as exc:  # pydantic's ValidationError: a report of another okaflow version, or damaged
        raise PublishError(
            f"run {run}'s report or evidence does not validate ({type(exc).__name__}): nothing was sent",
            hint="publish a run written by this okaflow version (okaflow replay re-renders an older one)",
        ) from None
    sources = load_sources(run, manifest, evidence)
    study = _choose_study(sources, study_uid, run)
    thread = str(manifest.get("thread_id") or "")
    if not thread:
        raise PublishError(f"{run / RUN_MANIFEST} has no thread_id", hint="publish a run written by okaflow.run")
    when = _created(report.created)
    images: list[pydicom.Dataset] = []
    try:
        if include_generated:
            blocks = [b for b in report.blocks if isinstance(b, GeneratedImageBlock)]
            series_uid = writeback_uid(thread, "secondary-capture-series", study)
            for number, block in enumerate(blocks, start=1):
                images.append(
                    build_secondary_capture(
                        run,
                        block,
                        sources,
                        study_reference=_first_of_study(sources, study),
                        series_uid=series_uid,
                        series_number=SC_SERIES_NUMBER,
                        sop_uid=writeback_uid(thread, "secondary-capture", block.image.sha256, *block.derived_from),
                        instance_number=number,
                        created=when,
                    )
                )
        report_hash = content_hash(report.model_dump(mode="json"))
        sr = build_report_sr(
            report,
            sources,
            study_reference=_first_of_study(sources, study),
            kind=sr_kind,
            series_uid=writeback_uid(thread, "sr-series", study),
            series_number=SR_SERIES_NUMBER,
            sop_uid=writeback_uid(thread, "sr", sr_kind, report_hash),
            created=when,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        # highdicom validates as it builds; whatever it refuses is ours, and nothing has been sent.
        raise PublishError(
            f"the DICOM objects for {run} fail to build ({type(exc).__name__}: {exc})",
            hint="nothing was sent; this is a bug in okaflow or a source file it cannot reference",
        ) from exc
    return Writeback(study_uid=study, sr=sr, images=tuple(images))


def load_sources(run: Path, manifest: Mapping[str, Any], evidence: list[Evidence]) -> dict[str, pydicom.Dataset]:
    """The run's DICOM source images by evidence id, headers only, each checked against the run's input hash."""
    import pydicom

    from okaflow._case import resolve_image_path

    case = manifest.get("case") or {}
    source = case.get("source")
    folder = None if source is None else (Path(source) if Path(source).is_dir() else Path(source).parent)
    hashes: dict[str, str] = case.get("inputs") or {}
    found: dict[str, pydicom.Dataset] = {}
    for row in evidence:
        if row.kind != "image" or row.data.get("format") != "dicom" or not row.source:
            continue
        name = row.source
        if name.startswith("pydicom:"):
            path = resolve_image_path(name, Path("."))
        elif Path(name).is_absolute():
            path = Path(name)
        elif folder is not None:
            path = folder / name
        else:
            raise PublishError(
                f"cannot find the source image {name!r}: the run's case has no folder",
                hint=_FROM_THE_RUNS_MACHINE,
            )
        if not path.is_file():
            raise PublishError(
                f"the source image {name} of {run} is gone ({path})",
                hint=_FROM_THE_RUNS_MACHINE,
            )
        if name in hashes and hashes[name] != content_hash(path.read_bytes()):
            raise PublishError(
                f"the source image {path} changed since the run",
                hint="a report must reference the images it was made from: run the case again",
            )
        found[row.id] = pydicom.dcmread(path, stop_before_pixels=True)
    if not found:
        raise PublishError(
            f"the run {run} has no DICOM source images: a PACS files results under the study they belong to",
            hint="publish runs over DICOM studies to a PACS; use FolderSink or a FHIR sink for others",
        )
    return found


def _choose_study(sources: Mapping[str, pydicom.Dataset], study_uid: str | None, run: Path) -> str:
    patients = sorted({str(ds.get("PatientID", "")) for ds in sources.values()})
    if len(patients) > 1:
        raise PublishError(
            f"the source images of {run} belong to {len(patients)} patients",
            hint="a report is filed for one patient: run the case per patient",
        )
    studies = sorted({str(ds.StudyInstanceUID) for ds in sources.values()})
    if study_uid is not None:
        if study_uid not in studies:
            raise PublishError(f"study {study_uid} is not among the run's studies {studies}")
        return study_uid
    if len(studies) > 1:
        raise PublishError(
            f"the source images of {run} span {len(studies)} studies: {', '.join(studies)}",
            hint="pass study_uid= to say which study the report belongs to (the current one, not the prior)",
        )
    return studies[0]


def _first_of_study(sources: Mapping[str, pydicom.Dataset], study: str) -> pydicom.Dataset:
    """The source whose patient and study modules the new objects copy."""
    return next(ds for ds in sources.values() if str(ds.StudyInstanceUID) == study)


def _created(iso: str) -> datetime:
    """The report's creation time: the objects' content date and time, so a rebuild repeats them."""
    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        raise PublishError(f"the report's creation time {iso!r} is not ISO 8601") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PublishError(f"{path} is missing", hint="publish a finished run directory") from None
    except json.JSONDecodeError as exc:
        raise PublishError(f"{path} is not JSON ({exc})") from None
