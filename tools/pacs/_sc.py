"""A generated or derived report image as a DICOM Secondary Capture (highdicom.sc.SCImage).

The pixels are the stored artifact's, unchanged: the generation tools burnt the visible label
(``AI-GENERATED — NOT FOR DIAGNOSIS`` or ``DERIVED — NOT FOR DIAGNOSIS``) into them before the artifact
was stored, so this module checks that the label band is there and never draws a second one. The
metadata says the same: ImageType DERIVED\\SECONDARY, BurnedInAnnotation YES, a Derivation Description
naming task, backend, model and seed, the source instances in Source Image Sequence, and for a generative
model's output Synthetic Data YES where pydicom's dictionary knows that attribute.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from okaflow._errors import PublishError
from okaflow._version import __version__
from okaflow.tools.reporting import GeneratedImageBlock
from okaflow.tools.reporting._artifacts import read_ref
from okaflow.tools.reporting._labels import RULE_COLOUR

if TYPE_CHECKING:
    import pydicom

__all__ = ["build_secondary_capture", "has_label_band", "patient_orientation"]

_MANUFACTURER = "okaflow"


def build_secondary_capture(
    run_dir: Path,
    block: GeneratedImageBlock,
    sources: Mapping[str, pydicom.Dataset],
    *,
    study_reference: pydicom.Dataset,
    series_uid: str,
    series_number: int,
    sop_uid: str,
    instance_number: int,
    created: datetime,
) -> pydicom.Dataset:
    """One Secondary Capture of ``block``'s artifact in the study of ``study_reference``.

    Args:
        run_dir: The run directory holding the artifact.
        block: The report's generated (or classically derived) image.
        sources: The run's DICOM source images by evidence id (headers suffice).
        study_reference: The source whose patient and study modules are copied.
        series_uid, series_number, sop_uid, instance_number: Where the instance goes in the new series.
        created: Content date and time (the report's creation time, so a rebuild repeats it).

    Raises:
        PublishError: The artifact is missing, changed, or carries no burnt-in label band.
    """
    from highdicom import CoordinateSystemNames, PhotometricInterpretationValues
    from highdicom.sc import SCImage
    from pydicom.dataset import Dataset
    from pydicom.sr.codedict import codes

    pixels = _artifact_pixels(run_dir, block)
    derived = [sources[i] for i in block.derived_from if i in sources]
    reference = derived[0] if derived else study_reference
    orientation = patient_orientation(reference)
    image = SCImage(
        pixel_array=pixels,
        photometric_interpretation=PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=CoordinateSystemNames.PATIENT,
        study_instance_uid=str(study_reference.StudyInstanceUID),
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=sop_uid,
        instance_number=instance_number,
        manufacturer=_MANUFACTURER,
        patient_id=study_reference.get("PatientID"),
        patient_name=study_reference.get("PatientName"),
        patient_birth_date=study_reference.get("PatientBirthDate") or None,
        patient_sex=study_reference.get("PatientSex") or None,
        accession_number=study_reference.get("AccessionNumber"),
        study_id=study_reference.get("StudyID"),
        study_date=study_reference.get("StudyDate") or None,
        study_time=study_reference.get("StudyTime") or None,
        referring_physician_name=study_reference.get("ReferringPhysicianName"),
        # Type 2C: a placeholder where the source says nothing; blanked (unknown) below.
        patient_orientation=orientation or ("L", "P"),
        series_description="okaflow AI-generated images" if block.ai_generated else "okaflow derived images",
        manufacturer_model_name=block.provenance.model_id or block.provenance.backend,
        software_versions=f"okaflow {__version__}",
        content_date=created.date(),
        content_time=created.time(),
        specific_character_set="ISO_IR 192",  # patient names copied from the source may be non-Latin
    )
    if orientation is None:
        image.PatientOrientation = []  # Type 2: present and empty, "unknown"
    # Every derived image: the label is in the pixels (BurnedInAnnotation), the type says not original.
    image.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    image.BurnedInAnnotation = "YES"
    # Conversion Type: SYN (synthetic image) for a generative model's output, WSD (workstation) for a
    # classical derivation; highdicom's default DI (digital interface) would say it came off a modality.
    image.ConversionType = "SYN" if block.ai_generated else "WSD"
    image.DerivationDescription = derivation_description(block)[:1024]  # ST holds 1024 characters
    purpose = Dataset()
    code = codes.DCM.SourceImageForImageProcessingOperation
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = (
        code.value,
        code.scheme_designator,
        code.meaning,
    )
    references = []
    for ds in derived:
        item = Dataset()
        item.ReferencedSOPClassUID = ds.SOPClassUID
        item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
        item.PurposeOfReferenceCodeSequence = [purpose]
        references.append(item)
    if references:
        image.SourceImageSequence = references
        # Viewers that ignore Source Image Sequence follow Referenced Image Sequence to the originals.
        image.ReferencedImageSequence = [_plain_reference(ds) for ds in derived]
    if block.ai_generated:
        _mark_synthetic(image)
    return image


def derivation_description(block: GeneratedImageBlock) -> str:
    """Task, who made it (backend, model, seed) and its label, in ASCII (the default character set)."""
    prov = block.provenance
    maker = "generative model" if block.ai_generated else "classical operation"
    parts = [f"okaflow {block.task} by {maker}", f"backend {prov.backend}"]
    if prov.model_id:
        parts.append(f"model {prov.model_id}")
    if prov.seed is not None:
        parts.append(f"seed {prov.seed}")
    parts.append(f"label: {block.label}")
    text = "; ".join(parts)
    return text.replace("—", "-").replace("–", "-").encode("ascii", "replace").decode("ascii")


def has_label_band(pixels: np.ndarray) -> bool:
    """Whether the image carries okaflow's burnt-in label: a full-width row in the label's rule colour.

    The band's yellow rule spans the whole width where the band meets the image; no medical image
    has a row of exactly that colour, so it marks a labelled image without reading the text.
    """
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        return False
    rule = np.array(RULE_COLOUR, dtype=pixels.dtype)
    return bool(np.any(np.all(pixels == rule, axis=(1, 2))))


def patient_orientation(ds: pydicom.Dataset) -> tuple[str, str] | None:
    """The row and column directions of ``ds`` (from Image Orientation (Patient), else Patient Orientation).

    Generated and derived images keep their source's axes (resizing, labels and side-by-side layouts do
    not rotate), so the source's orientation holds for them. None where the source says nothing.
    """
    cosines = ds.get("ImageOrientationPatient")
    if cosines is not None and len(cosines) == 6:
        return _direction([float(c) for c in cosines[:3]]), _direction([float(c) for c in cosines[3:]])
    given = ds.get("PatientOrientation")
    if given is not None and len(given) == 2 and all(given):
        return str(given[0])[0], str(given[1])[0]
    return None


def _direction(vector: list[float]) -> str:
    """The patient direction a unit vector points to most (LPS: +x left, +y posterior, +z head)."""
    axis = max(range(3), key=lambda i: abs(vector[i]))
    return ("L", "P", "H")[axis] if vector[axis] > 0 else ("R", "A", "F")[axis]


def _artifact_pixels(run_dir: Path, block: GeneratedImageBlock) -> np.ndarray:
    """The artifact as 8-bit RGB (every labelled image is RGB: the label's rule is yellow)."""
    try:
        data = read_ref(run_dir, block.image)
    except Exception as exc:  # RunDirectoryError: missing, outside the run, or not matching its hash
        raise PublishError(f"the image of {block.task!r} cannot be sent: {exc}") from exc
    with Image.open(io.BytesIO(data)) as img:
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if not block.label or not has_label_band(rgb):
        raise PublishError(
            f"the {block.task!r} image {block.image.path} carries no burnt-in label",
            hint="only labelled images leave okaflow; this artifact was not made by an okaflow generation tool",
        )
    return rgb


def _plain_reference(ds: pydicom.Dataset) -> pydicom.Dataset:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    return item


def _mark_synthetic(image: pydicom.Dataset) -> None:
    """Synthetic Data (0008,001C) YES, where this pydicom's dictionary has the attribute.

    The attribute was added to the General Image and SOP Common modules by a DICOM correction proposal
    of 2023 (the CP number is not verified here); pydicom 3.0's dictionary has it, older ones do not, and
    writing an unknown keyword would fail, so it is set only where known.
    """
    from pydicom.datadict import keyword_dict

    if "SyntheticData" in keyword_dict:
        image.SyntheticData = "YES"
