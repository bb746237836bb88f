"""DICOM to :class:`MedicalImage`: pydicom reads, we guard the size, decode, and apply the modality LUT."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from okaflow._errors import DICOMError, MissingPixelDataError, UnsupportedTransferSyntaxError
from okaflow._types import Modality
from okaflow.tools.imaging._dicom_header import (
    HeaderReader,
    functional_item,
    iso_date,
    read_header_windows,
    read_pixel_spacing,
    read_voi_luts,
)
from okaflow.tools.imaging._dicom_values import apply_modality_transform, output_units, to_rgb
from okaflow.tools.imaging._modality import detect_modality
from okaflow.tools.imaging._models import MedicalImage
from okaflow.tools.imaging._policy import check_pixel_budget

__all__ = ["dicom_has_pixel_data", "read_dicom"]

PIXEL_DATA = "(7FE0,0010) PixelData"
TRANSFER_SYNTAX = "(0002,0010) TransferSyntaxUID"
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_REQUIRED = {
    "Rows": "(0028,0010) Rows",
    "Columns": "(0028,0011) Columns",
    "BitsAllocated": "(0028,0100) BitsAllocated",
    "PhotometricInterpretation": "(0028,0004) PhotometricInterpretation",
}
_SIZE_LOCATION = "(0028,0010) Rows × (0028,0011) Columns"
CODECS_HINT = "pip install 'okaflow[codecs]'"


@contextmanager
def captured_warnings(into: list[str]) -> Iterator[None]:
    """Collect library warnings as text on the image instead of letting them escape.

    pydicom warns about recoverable oddities (bad VRs, excess padding); they belong to the image
    they describe. ``catch_warnings`` is process-global before Python 3.14, so warnings raised by
    other threads during a load may be collected here too.
    """
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        yield
    for record in records:
        text = str(record.message)
        if text not in into:
            into.append(text)


def dicom_has_pixel_data(path: str | Path) -> bool:
    """Whether a DICOM file holds an image (pixel data), read without loading the pixels.

    Studies from a PACS also hold objects with no image (structured reports, presentation states, key
    object selections): a case takes their images, not them. A file that cannot be read counts as an image,
    so loading it reports what is wrong with it (a :class:`~okaflow.DICOMError` naming the file).
    """
    try:
        ds = dcmread(path, defer_size=1024)
    except Exception:
        return True
    return any(k in ds for k in _PIXEL_KEYWORDS)


def read_dicom(
    path: Path,
    *,
    force: bool,
    modality_hint: Modality | str | None,
    max_pixels: int,
    max_total_pixels: int,
    image_id: str | None,
) -> MedicalImage:
    """Read one DICOM file into a :class:`MedicalImage` (see :func:`okaflow.tools.imaging.load_image`)."""
    notes: list[str] = []
    with captured_warnings(notes):
        ds = _read_dataset(path, force=force)
        reader = HeaderReader(ds)
        rows, columns, frames = _check_image_pixel_module(ds, reader, path)
        check_pixel_budget(
            rows=rows,
            columns=columns,
            frames=frames,
            max_pixels=max_pixels,
            max_total_pixels=max_total_pixels,
            source=path,
            location=_SIZE_LOCATION + (" × (0028,0008) NumberOfFrames" if frames > 1 else ""),
        )
        tsyntax = _transfer_syntax(ds, path, notes)
        raw, props = _decode(ds, tsyntax, path)
        image = _build(ds, reader, raw, props, path, tsyntax, modality_hint, image_id)
    image.warnings.extend(reader.warnings)
    image.warnings.extend(n for n in notes if n not in image.warnings)
    return image


def _read_dataset(path: Path, *, force: bool) -> Dataset:
    try:
        ds = dcmread(path, force=force)
    except InvalidDicomError as exc:
        raise DICOMError(
            f"not a DICOM file ({exc})",
            source=path,
            hint="check the file; okaflow reads DICOM, PNG, JPEG and TIFF",
        ) from exc
    except Exception as exc:  # pydicom raises many types for damaged files; all mean the same to a user
        raise DICOMError(
            f"cannot parse the DICOM data set ({type(exc).__name__}: {exc})",
            source=path,
            hint="the file is probably truncated or corrupt; re-export it from the source system",
        ) from exc
    if len(ds) == 0:
        raise DICOMError("not a DICOM file (no data elements could be read)", source=path)
    return ds


def _check_image_pixel_module(ds: Dataset, reader: HeaderReader, path: Path) -> tuple[int, int, int]:
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        kind = _object_kind(ds)
        if "Image Storage" in kind or "Rows" in ds:
            # An image object whose pixels are missing was almost always cut short in transfer.
            raise MissingPixelDataError(
                f"no pixel data, although the object is {kind}: the file is probably truncated",
                source=path,
                location=PIXEL_DATA,
                hint="re-send or re-export the file from the source system",
            )
        raise MissingPixelDataError(
            f"no pixel data: the object is {kind}, which holds no image",
            source=path,
            location=PIXEL_DATA,
            hint=_missing_pixels_hint(ds),
        )
    values: dict[str, int] = {}
    for keyword, location in _REQUIRED.items():
        try:
            value = ds.get(keyword)
            if keyword != "PhotometricInterpretation":
                value = int(value) if value is not None else None
        except Exception as exc:
            raise DICOMError(f"malformed {keyword}: {exc}", source=path, location=location) from exc
        if value is None or value == "":
            raise DICOMError(
                f"the Image Pixel module lacks {keyword}, so the pixel data cannot be interpreted",
                source=path,
                location=location,
            )
        if keyword != "PhotometricInterpretation":
            values[keyword] = int(value)
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
    except Exception as exc:
        raise DICOMError(
            f"malformed NumberOfFrames: {exc}", source=path, location="(0028,0008) NumberOfFrames"
        ) from exc
    if values["Rows"] < 1 or values["Columns"] < 1 or frames < 1:
        raise DICOMError(
            f"empty image: {values['Columns']}×{values['Rows']} px, {frames} frames",
            source=path,
            location="(0028,0010) Rows",
        )
    return values["Rows"], values["Columns"], frames


def _object_kind(ds: Dataset) -> str:
    """What the object is, for messages: a DICOMDIR, or its SOP class name."""
    if "DirectoryRecordSequence" in ds:
        return "a DICOMDIR"
    sop = ds.get("SOPClassUID") or (ds.file_meta.get("MediaStorageSOPClassUID") if hasattr(ds, "file_meta") else None)
    name = UID(str(sop)).name if sop else ""
    return f"of SOP class '{name}'" if name else "of an unknown SOP class"


def _missing_pixels_hint(ds: Dataset) -> str:
    if "DirectoryRecordSequence" in ds:
        return "a DICOMDIR only indexes files: load the image files it references"
    if str(ds.get("Modality", "")).upper() in ("SR", "KO", "PR", "RTPLAN", "RTSTRUCT", "REG", "ECG"):
        return "this object carries no pixels; load the study's image objects instead"
    return "load an image object (CT, MR, CR/DX, US, SC ...) instead"


def _transfer_syntax(ds: Dataset, path: Path, notes: list[str]) -> UID:
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if tsyntax:
        return UID(str(tsyntax))
    pixel_keyword = next(k for k in _PIXEL_KEYWORDS if k in ds)
    if ds[pixel_keyword].is_undefined_length:
        raise UnsupportedTransferSyntaxError(
            "the pixel data is compressed but the file names no transfer syntax",
            source=path,
            location=TRANSFER_SYNTAX,
            hint="re-export the file with its File Meta Information",
        )
    # No file meta: the pixels are native, so the encoding pydicom parsed the data set with is theirs.
    implicit, little = ds.original_encoding
    if implicit:
        inferred = ImplicitVRLittleEndian
    else:
        inferred = ExplicitVRLittleEndian if little is not False else ExplicitVRBigEndian
    ds.file_meta.TransferSyntaxUID = inferred
    notes.append(f"no TransferSyntaxUID in the file; assumed {inferred.name} from the data set's encoding")
    return inferred


def _decode(ds: Dataset, tsyntax: UID, path: Path) -> tuple[npt.NDArray[Any], dict[str, Any]]:
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as exc:
        raise UnsupportedTransferSyntaxError(
            f"no decoder exists for transfer syntax {tsyntax.name or 'unknown'} ({tsyntax})",
            source=path,
            location=TRANSFER_SYNTAX,
            hint="convert the file to an uncompressed syntax first (e.g. dcmtk dcmdjpeg or gdcmconv --raw)",
        ) from exc
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise UnsupportedTransferSyntaxError(
            f"the pixel data is compressed as {tsyntax.name} ({tsyntax}) and no installed decoder handles it "
            f"(pydicom needs one of: {missing})",
            source=path,
            location=TRANSFER_SYNTAX,
            hint=CODECS_HINT,
        )
    try:
        arr, props = decoder.as_array(ds, **as_pixel_options(ds))
    except ValueError as exc:
        raise DICOMError(
            f"the pixel data does not match the image header: {exc}",
            source=path,
            location=PIXEL_DATA,
            hint="the file is truncated, or its Rows/Columns/BitsAllocated/NumberOfFrames are wrong",
        ) from exc
    except RuntimeError as exc:
        raise DICOMError(
            f"could not decode the {tsyntax.name} pixel data: {exc}",
            source=path,
            location=PIXEL_DATA,
            hint="the data may be corrupt; python-gdcm decodes some files the pylibjpeg plugins reject",
        ) from exc
    except Exception as exc:
        raise DICOMError(
            f"could not decode the pixel data ({type(exc).__name__}: {exc})", source=path, location=PIXEL_DATA
        ) from exc
    return arr, dict(props)


def _build(
    ds: Dataset,
    reader: HeaderReader,
    arr: npt.NDArray[Any],
    props: dict[str, Any],
    path: Path,
    tsyntax: UID,
    modality_hint: Modality | str | None,
    image_id: str | None,
) -> MedicalImage:
    samples = int(props.get("samples_per_pixel", 1))
    if arr.ndim == (3 if samples > 1 else 2):
        arr = arr[np.newaxis]
    frames = int(arr.shape[0])
    stored_photometric = str(ds.PhotometricInterpretation).strip().upper()
    photometric = str(props.get("photometric_interpretation", stored_photometric)).strip().upper()
    bits_stored = reader.integer("BitsStored") or int(props.get("bits_allocated", 8))
    notes: list[str] = []
    rescale: list[tuple[float, float]] | None = None
    lut = False
    if samples > 1 or photometric == "PALETTE COLOR":
        rgb, bits = to_rgb(ds, arr, photometric, path, notes)
        pixels = rgb.astype(np.float32)
        bits_stored, photometric = bits or bits_stored, "RGB"
    elif photometric in ("MONOCHROME1", "MONOCHROME2"):
        pixels, rescale, lut = apply_modality_transform(ds, reader, arr, frames)
    else:
        raise DICOMError(
            f"unsupported photometric interpretation {photometric!r} for single-sample data",
            source=path,
            location="(0028,0004) PhotometricInterpretation",
        )
    modality, modality_source = detect_modality(ds, hint=modality_hint)
    if modality_hint is not None:
        from_tags, _ = detect_modality(ds)
        if from_tags not in (modality, Modality.OTHER):
            notes.append(f"modality hint {modality.value} overrides {from_tags.value} from the DICOM tags")
    code = (reader.text("Modality") or "").upper()
    spacing, spacing_source = read_pixel_spacing(reader)
    measures = functional_item(reader, "PixelMeasuresSequence")
    thickness = reader.number("SliceThickness")
    if thickness is None and measures is not None:
        thickness = reader.number("SliceThickness", measures)
    sop_uid = reader.text("SOPInstanceUID")
    signed = reader.integer("PixelRepresentation") == 1
    padding = reader.number("PixelPaddingValue")
    if padding is not None and padding > 32767 and signed:  # stored as US in some files despite signed pixels
        padding -= 65536
    if padding is not None and rescale:
        padding = padding * rescale[0][0] + rescale[0][1]
    little_endian = ds.original_encoding[1] is not False
    metadata: dict[str, Any] = {
        "transfer_syntax_uid": str(tsyntax),
        "sop_class": UID(str(ds.SOPClassUID)).name if "SOPClassUID" in ds else None,
        "sop_class_uid": reader.text("SOPClassUID"),
        "photometric_interpretation_stored": stored_photometric,
        "bits_allocated": reader.integer("BitsAllocated"),
        "pixel_representation": 1 if signed else 0,
        "rescale": [list(p) for p in sorted(set(rescale))] if rescale else None,
        "modality_lut_sequence": lut,
        "pixel_spacing_source": spacing_source,
        "pixel_padding_value": padding,
        "manufacturer": reader.text("Manufacturer"),
        "image_type": reader.text("ImageType"),
        "lossy_compression": reader.text("LossyImageCompression") == "01",
        "burned_in_annotation": reader.text("BurnedInAnnotation"),
        "image_position_patient": list(reader.numbers("ImagePositionPatient")) or None,
        "image_orientation_patient": list(reader.numbers("ImageOrientationPatient")) or None,
        "view_position": reader.text("ViewPosition"),
        "laterality": reader.text("ImageLaterality") or reader.text("Laterality"),
        "frame_of_reference_uid": reader.text("FrameOfReferenceUID"),
    }
    return MedicalImage(
        id=image_id or f"Image/{sop_uid or path.stem}",
        source=path,
        format="dicom",
        modality=modality,
        modality_source=modality_source,
        pixels=pixels,
        photometric=photometric,
        dicom_modality=code or None,
        patient_id=reader.text("PatientID"),
        study_uid=reader.text("StudyInstanceUID"),
        series_uid=reader.text("SeriesInstanceUID"),
        sop_uid=sop_uid,
        study_date=iso_date(reader.text("StudyDate")),
        series_description=reader.text("SeriesDescription"),
        study_description=reader.text("StudyDescription"),
        body_part=reader.text("BodyPartExamined"),
        pixel_spacing_mm=spacing,
        slice_thickness_mm=thickness,
        instance_number=reader.integer("InstanceNumber"),
        slice_location=reader.number("SliceLocation"),
        header_windows=read_header_windows(reader) if photometric != "RGB" else (),
        units=output_units(reader, code, rescale is not None, lut) if photometric != "RGB" else None,
        metadata={k: v for k, v in metadata.items() if v is not None},
        warnings=notes,
        voi_luts=() if photometric == "RGB" else read_voi_luts(reader, little_endian=little_endian, signed=signed),
        series_date=iso_date(reader.text("SeriesDate")),
        series_number=reader.integer("SeriesNumber"),
        bits_stored=bits_stored,
        transfer_syntax=tsyntax.name or str(tsyntax),
    )
