"""A case: one patient's FHIR record, their images, and the task to do.

Load one from a folder (``case.json`` naming a bundle and images, or just a bundle plus image
files), from a bundle path with image paths, or from Python objects. Image paths may use the
``pydicom:NAME`` scheme for the real DICOM files shipped inside pydicom's wheel.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from okaflow._constants import CASE_MANIFEST, IMAGE_SUFFIXES
from okaflow._errors import CaseError, ConfigurationError
from okaflow._types import Evidence, Modality, content_hash
from okaflow.tools.fhir import PatientContext

if TYPE_CHECKING:
    from okaflow.tools.imaging import ImageSeries, MedicalImage

__all__ = ["Case", "ImageRole", "study_day"]

ImageRole = Literal["current", "prior"]
_IMAGE_KEYS = {"path", "modality", "role", "id"}
_CASE_KEYS = {"id", "title", "task", "workflow", "bundle", "images", "knowledge"}


@dataclass
class Case:
    """One patient's record and images, and the task to perform on them.

    Attributes:
        id: A short name for the case, used for run directories.
        patient: The typed patient context built from the FHIR bundle.
        images: Loaded images (see :class:`okaflow.tools.imaging.MedicalImage`).
        roles: ``current`` or ``prior`` per image id (a longitudinal comparison needs both).
        task: The clinical question or task, if any.
        warnings: Everything ingestion noticed but did not refuse (shown by ``okaflow inspect``).
        inputs: The input files, hashed into the run record.
    """

    id: str
    patient: PatientContext
    images: list[MedicalImage] = field(default_factory=list)
    roles: dict[str, ImageRole] = field(default_factory=dict)
    task: str | None = None
    title: str | None = None
    workflow: str | None = None
    source: Path | None = None
    knowledge_dir: Path | None = None
    inputs: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Series grouping sorts every image; it is asked for on every node, so it is kept per image list.
    _series: tuple[tuple[str, ...], list[ImageSeries]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, source: str | Path, **kwargs: Any) -> Case:
        """Load from a case folder, a ``case.json`` file, or a bare FHIR bundle file."""
        path = Path(source)
        if path.is_dir():
            return cls.from_folder(path, **kwargs)
        if not path.exists():
            raise CaseError("no such file or folder", source=path, hint="pass a case folder, case.json or a bundle")
        if path.name == CASE_MANIFEST:
            return cls.from_folder(path.parent, **kwargs)
        return cls.from_files(path, **kwargs)

    @classmethod
    def from_folder(cls, folder: str | Path, *, strict: bool = True) -> Case:
        """Load ``folder/case.json``; without one, take ``bundle.json`` (or the only ``*.json``)
        and every image file in the folder and its ``images/`` subfolder."""
        root = Path(folder)
        manifest_path = root / CASE_MANIFEST
        if not manifest_path.exists():
            return cls.from_files(_find_bundle(root), _find_images(root), case_id=root.name, strict=strict)
        manifest = _read_manifest(manifest_path)
        images = manifest.get("images", [])
        if not isinstance(images, list):
            raise CaseError("'images' must be a list", source=manifest_path, location="images")
        paths, hints, roles, ids = [], {}, {}, {}
        for n, entry in enumerate(images):
            spec = {"path": entry} if isinstance(entry, str) else entry
            where = f"images[{n}]"
            if not isinstance(spec, dict) or "path" not in spec:
                raise CaseError("each image needs a 'path'", source=manifest_path, location=where)
            extra = set(spec) - _IMAGE_KEYS
            if extra:
                raise CaseError(
                    f"unknown keys {sorted(extra)}",
                    source=manifest_path,
                    location=where,
                    hint=f"allowed: {sorted(_IMAGE_KEYS)}",
                )
            path = resolve_image_path(str(spec["path"]), root, manifest_path, where)
            paths.append(path)
            if "modality" in spec:
                hints[path] = spec["modality"]
            if "role" in spec:
                if spec["role"] not in ("current", "prior"):
                    raise CaseError(
                        f"role {spec['role']!r} is not 'current' or 'prior'",
                        source=manifest_path,
                        location=f"{where}.role",
                    )
                roles[path] = spec["role"]
            if "id" in spec:
                ids[path] = str(spec["id"])
        bundle = manifest.get("bundle", "bundle.json")
        knowledge = manifest.get("knowledge")
        case = cls.from_files(
            root / bundle,
            paths,
            task=manifest.get("task"),
            case_id=str(manifest.get("id") or root.name),
            modality_hints=hints,
            roles=roles,
            image_ids=ids,
            strict=strict,
        )
        case.title = manifest.get("title")
        case.workflow = manifest.get("workflow")
        case.source = root
        case.knowledge_dir = root / knowledge if knowledge else None
        case.inputs.insert(0, manifest_path)
        if case.knowledge_dir is not None and case.knowledge_dir.is_dir():
            # Supplied documents steer retrieval, so they are inputs of the run like the bundle.
            case.inputs += sorted(p for p in case.knowledge_dir.rglob("*") if p.is_file())
        # Facts (and every evidence row a tool derives from them) name the bundle relative to the case.
        case.patient = case.patient.model_copy(update={"source": case.portable_source(case.patient.source)})
        return case

    @classmethod
    def from_files(
        cls,
        bundle: str | Path,
        images: Sequence[str | Path] = (),
        *,
        task: str | None = None,
        case_id: str | None = None,
        modality_hints: Mapping[Path, str | Modality] | None = None,
        roles: Mapping[Path, ImageRole] | None = None,
        image_ids: Mapping[Path, str] | None = None,
        strict: bool = True,
    ) -> Case:
        """Load a bundle file and image files (DICOM, PNG, JPEG, TIFF)."""
        from okaflow.tools.fhir import read_patient_context
        from okaflow.tools.imaging import load_image

        bundle_path = Path(bundle)
        patient = read_patient_context(bundle_path, strict=strict)
        hints, role_of, id_of = dict(modality_hints or {}), dict(roles or {}), dict(image_ids or {})
        loaded, by_path = [], {}
        for p in map(Path, images):
            img = load_image(p, modality_hint=hints.get(p), image_id=id_of.get(p))
            loaded.append(img)
            by_path[p] = img
        case = cls.from_objects(
            patient,
            loaded,
            task=task,
            case_id=case_id or bundle_path.stem,
            roles={by_path[p].id: r for p, r in role_of.items() if p in by_path},
        )
        case.source = bundle_path.parent
        case.inputs = [bundle_path, *map(Path, images)]
        return case

    @classmethod
    def from_objects(
        cls,
        patient: PatientContext | Mapping[str, Any],
        images: Sequence[MedicalImage] = (),
        *,
        task: str | None = None,
        case_id: str = "case",
        roles: Mapping[str, ImageRole] | None = None,
    ) -> Case:
        """Build a case from a ``PatientContext`` (or a bundle as a dict) and loaded images."""
        from okaflow.tools.fhir import build_patient_context, load_bundle

        context = patient if isinstance(patient, PatientContext) else build_patient_context(load_bundle(dict(patient)))
        ids = [i.id for i in images]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise CaseError(f"two images share the id(s) {dupes}", hint="give each image its own 'id' in case.json")
        case = cls(id=case_id, patient=context, images=list(images), task=task)
        case.roles = _assign_roles(case, dict(roles or {}))
        case.warnings = [*context.warnings, *_cross_check(case)]
        for img in images:
            case.warnings += [f"{img.id}: {w}" for w in img.warnings]
        return case

    # -- views -------------------------------------------------------------------------------
    def image(self, image_id: str) -> MedicalImage:
        for img in self.images:
            if img.id == image_id:
                return img
        raise ConfigurationError(
            f"no image {image_id!r} in case {self.id!r}", hint=f"ids: {[i.id for i in self.images]}"
        )

    @property
    def series(self) -> list[ImageSeries]:
        """The images grouped by DICOM series (each non-DICOM image is a series of its own)."""
        from okaflow.tools.imaging import group_series

        key = tuple(i.id for i in self.images)
        if self._series is None or self._series[0] != key:
            self._series = (key, group_series(self.images))
        return self._series[1]

    @property
    def key_images(self) -> list[MedicalImage]:
        """One image per series, the middle one in display order: what the model is shown.

        A CT series of 300 slices is one key image, not 300 model inputs.
        """
        from okaflow.tools.imaging import middle_image

        return [middle_image(s) for s in self.series]

    @property
    def current_images(self) -> list[MedicalImage]:
        """Key images of current studies."""
        return [i for i in self.key_images if self.roles.get(i.id) != "prior"]

    @property
    def prior_images(self) -> list[MedicalImage]:
        """Key images of prior studies."""
        return [i for i in self.key_images if self.roles.get(i.id) == "prior"]

    def series_size(self, image_id: str) -> int:
        """How many images share the series of ``image_id``."""
        return next((len(s.images) for s in self.series if any(i.id == image_id for i in s.images)), 0)

    def evidence(self) -> list[Evidence]:
        """The evidence table: every patient fact, then every image.

        Each row's ``source`` is portable: relative to the case folder for files inside it,
        ``pydicom:NAME`` for pydicom's bundled files, so a report reads the same on any machine.
        """
        from okaflow.tools.imaging import image_evidence

        rows = [*self.patient.evidence(), *(image_evidence(i) for i in self.images)]
        # Rows share a handful of sources (the bundle, each image file): each is resolved on disk once.
        portable = {source: self.portable_source(source) for source in {r.source for r in rows}}
        return [r.model_copy(update={"source": portable[r.source]}) for r in rows]

    def portable_source(self, source: str | None) -> str | None:
        """``source`` as the record names it on any machine: relative to the case folder, ``pydicom:NAME``
        for pydicom's bundled files, else unchanged (so evidence rows and reports do not depend on where
        the case or okaflow's environment lives)."""
        if source is None:
            return None
        path = Path(source)
        if not path.exists():
            return source  # "<dict>", "<bytes>", a URL: already machine-independent
        resolved = path.resolve()
        roots: list[tuple[str, Path]] = []
        if self.source is not None:
            roots.append(("", self.source if self.source.is_dir() else self.source.parent))
        roots.append(("pydicom:", _pydicom_test_files()))
        for prefix, root in roots:
            if resolved.is_relative_to(root.resolve()):
                return prefix + resolved.relative_to(root.resolve()).as_posix()
        return source

    def input_hashes(self) -> dict[str, str]:
        """SHA-256 of every input file, keyed by its portable name (relative to the case folder,
        ``pydicom:NAME``, else the absolute path), so a case moved to another machine still matches."""
        return {str(self.portable_source(str(p))): content_hash(p.read_bytes()) for p in self.inputs if p.is_file()}


@functools.lru_cache(maxsize=256)
def _pydicom_test_file(name: str) -> Path | None:
    """pydicom's test file ``name`` (looked up once: pydicom walks its data folders on every call)."""
    from pydicom.data import get_testdata_file

    with warnings.catch_warnings():
        # pydicom warns (and returns None) for files that would need a download.
        warnings.simplefilter("ignore")
        found = get_testdata_file(name)
    return None if found is None else Path(str(found))


def _pydicom_test_files() -> Path:
    import pydicom.data

    return Path(pydicom.data.__file__).parent / "test_files"


def resolve_image_path(spec: str, root: Path, manifest: Path | None = None, where: str | None = None) -> Path:
    """Resolve a case image path: relative to the case folder, or ``pydicom:NAME``."""
    if spec.startswith("pydicom:"):
        name = spec.removeprefix("pydicom:")
        found = _pydicom_test_file(name)
        if found is None:
            raise CaseError(
                f"pydicom ships no test file {name!r}",
                source=manifest,
                location=where,
                hint="use a file listed by pydicom.data.get_testdata_files()",
            )
        return found
    path = Path(spec)
    path = path if path.is_absolute() else root / path
    if not path.exists():
        raise CaseError(
            f"image file {spec!r} does not exist",
            source=manifest,
            location=where,
            hint="paths in case.json are relative to the case folder",
        )
    return path


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CaseError(f"invalid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}", source=path) from None
    if not isinstance(data, dict):
        raise CaseError("case.json must hold a JSON object", source=path)
    extra = set(data) - _CASE_KEYS
    if extra:
        raise CaseError(f"unknown keys {sorted(extra)}", source=path, hint=f"allowed: {sorted(_CASE_KEYS)}")
    return data


def _find_bundle(root: Path) -> Path:
    if (root / "bundle.json").exists():
        return root / "bundle.json"
    candidates = sorted(root.glob("*.json"))
    if len(candidates) == 1:
        return candidates[0]
    raise CaseError(
        "cannot tell which file is the FHIR bundle" if candidates else "no FHIR bundle found",
        source=root,
        hint="name it bundle.json or add a case.json with a 'bundle' key",
    )


def _find_images(root: Path) -> list[Path]:
    found = [p for d in (root, root / "images") if d.is_dir() for p in sorted(d.iterdir())]
    return [p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def _assign_roles(case: Case, roles: dict[str, ImageRole]) -> dict[str, ImageRole]:
    """Keep explicit roles; otherwise the most recent study is current and older ones prior."""
    if roles or not case.images:
        return {i.id: roles.get(i.id, "current") for i in case.images}
    dates = {i.id: study_day(case, i) for i in case.images}
    known = [d for d in dates.values() if d]
    latest = max(known) if known else None
    return {i: ("prior" if latest and d and d < latest else "current") for i, d in dates.items()}


def study_day(case: Case, image: MedicalImage) -> date | None:
    """The day an image's study was done: the record's ImagingStudy.started, else the DICOM StudyDate."""
    study = case.patient.study_by_uid(image.study_uid) if image.study_uid else None
    for value in (study.started if study else None, image.study_date):
        if value:
            day = value[:10] if "-" in value[:10] else f"{value[:4]}-{value[4:6]}-{value[6:8]}"
            try:
                return date.fromisoformat(day)
            except ValueError:
                continue
    return None


def _cross_check(case: Case) -> list[str]:
    """Consistency between the record and the images; warnings, because real data is messy."""
    notes = []
    ids = {i.value for i in case.patient.patient.identifiers} if case.patient.patient else set()
    linked = {s.study_uid for s in case.patient.imaging_studies if s.study_uid}
    for img in case.images:
        if img.patient_id and ids and img.patient_id not in ids:
            notes.append(f"{img.id}: DICOM PatientID {img.patient_id!r} matches no identifier of the FHIR Patient")
        if img.study_uid and linked and img.study_uid not in linked:
            notes.append(f"{img.id}: study {img.study_uid} has no ImagingStudy in the bundle")
    have = {i.study_uid for i in case.images}
    for s in case.patient.imaging_studies:
        if s.study_uid and s.study_uid not in have:
            notes.append(f"{s.id}: study {s.study_uid} is in the record but no image of it was loaded")
    return notes
