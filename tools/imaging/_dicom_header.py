"""Facts read from a DICOM header: identifiers, dates, geometry, display windows and VOI LUTs.

Every reader here is forgiving: a malformed optional element becomes None plus a warning on the
image, never an exception, because a bad StudyDescription must not cost the user the pixels.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

import numpy as np
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from okaflow.tools.imaging._models import VoiFunction, VoiLut, Window

__all__ = [
    "HeaderReader",
    "element_value",
    "iso_date",
    "keyword_tag",
    "read_header_windows",
    "read_pixel_spacing",
    "read_voi_luts",
]

T = TypeVar("T")


@cache
def keyword_tag(keyword: str) -> BaseTag:
    """The tag of a DICOM keyword (cached: the dictionary lookup is not free)."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"unknown DICOM keyword {keyword!r}")
    return BaseTag(tag)


# Value representations whose bytes are plain ASCII whatever the character set or byte order.
_ASCII_VRS = frozenset({"AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})


@cache
def _dictionary_vr(tag: BaseTag) -> str:
    return str(dictionary_VR(tag))


def element_value(source: Dataset, tag: BaseTag) -> Any:
    """An element's value, or None when absent.

    A header read touches ~40 keywords, most absent, and pydicom's general conversion of a raw
    element (character sets, validation) costs more than decoding the pixels of a small image. So
    absent tags are answered by a dictionary lookup, and still-raw ASCII elements (UIDs, dates,
    codes, numbers as text) are decoded here; everything else goes through pydicom. Multi-valued
    ASCII elements come back as a list of strings, as pydicom's MultiValue would.
    """
    # pydicom types get_item as returning DataElement, but it returns the RawDataElement (or None)
    # while the value is unconverted: that is the point of calling it.
    elem: Any = source.get_item(tag)
    if elem is None:
        return None
    if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes):
        vr = elem.VR or _dictionary_vr(tag)
        if vr in _ASCII_VRS:
            text = elem.value.decode("ascii", "replace").strip(" \x00")
            if "\\" in text:
                return [part.strip(" \x00") for part in text.split("\\")]
            return text
    return source[tag].value


class HeaderReader:
    """Reads optional elements, collecting a warning for each one that cannot be parsed."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self.warnings: list[str] = []

    def get(self, keyword: str, convert: Callable[[Any], T], ds: Dataset | None = None) -> T | None:
        source = self.ds if ds is None else ds
        tag = keyword_tag(keyword)
        try:
            value = element_value(source, tag)
            if value is None or value == "":
                return None
            return convert(value)
        except Exception as exc:  # pydicom converts lazily: a bad IS/DS/DA raises only here
            self.warnings.append(f"ignored malformed {keyword}: {exc}")
            return None

    def text(self, keyword: str, ds: Dataset | None = None) -> str | None:
        value = self.get(keyword, _as_text, ds)
        return value.strip() or None if value is not None else None

    def number(self, keyword: str, ds: Dataset | None = None) -> float | None:
        return self.get(keyword, float, ds)

    def integer(self, keyword: str, ds: Dataset | None = None) -> int | None:
        return self.get(keyword, _as_int, ds)

    def numbers(self, keyword: str, ds: Dataset | None = None) -> tuple[float, ...]:
        return self.get(keyword, _as_floats, ds) or ()

    def item(self, keyword: str, ds: Dataset | None = None, index: int = 0) -> Dataset | None:
        seq = self.get(keyword, list, ds)
        return seq[index] if seq and len(seq) > index else None


def _as_text(value: Any) -> str:
    if isinstance(value, str | bytes):
        return value.decode("latin-1") if isinstance(value, bytes) else value
    if isinstance(value, Sequence):
        return "\\".join(str(v) for v in value)
    return str(value)


def _as_int(value: Any) -> int:
    # IS values such as "12.0" occur in the wild; accept them when they are whole numbers.
    number = float(value) if isinstance(value, str) else value
    if isinstance(number, float) and not number.is_integer():
        raise ValueError(f"{value!r} is not an integer")
    return int(number)


def _as_floats(value: Any) -> tuple[float, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        return (float(value),)
    return tuple(float(v) for v in value)


def iso_date(value: str | None) -> str | None:
    """DICOM DA ``YYYYMMDD`` (or already ISO) to ``YYYY-MM-DD``; anything else stays as given."""
    if not value:
        return None
    digits = value.strip().replace("-", "").replace(".", "")
    if len(digits) == 8 and digits.isdigit():
        return f"{digits[:4]}-{digits[4:6]}-{digits[6:]}"
    return value.strip()


def functional_item(reader: HeaderReader, group: str, frame: int = 0) -> Dataset | None:
    """The ``group`` item (e.g. ``PixelMeasuresSequence``) for an enhanced multi-frame object:
    shared functional groups first, then the frame's own per-frame group."""
    shared = reader.item("SharedFunctionalGroupsSequence")
    found = reader.item(group, shared) if shared is not None else None
    if found is not None:
        return found
    per_frame = reader.item("PerFrameFunctionalGroupsSequence", index=frame)
    return reader.item(group, per_frame) if per_frame is not None else None


def read_pixel_spacing(reader: HeaderReader) -> tuple[tuple[float, float] | None, str | None]:
    """(row spacing, column spacing) in mm, and the element it came from.

    Order of preference: PixelSpacing (patient plane), the enhanced multi-frame Pixel Measures
    macro, ImagerPixelSpacing (at the detector, so magnified for projection radiography),
    NominalScannedPixelSpacing (secondary capture), then ultrasound regions calibrated in cm.
    """
    measures = functional_item(reader, "PixelMeasuresSequence")
    candidates: list[tuple[str, Dataset | None, str]] = [
        ("PixelSpacing", reader.ds, "PixelSpacing"),
        ("PixelSpacing", measures, "PixelMeasuresSequence.PixelSpacing"),
        ("ImagerPixelSpacing", reader.ds, "ImagerPixelSpacing"),
        ("NominalScannedPixelSpacing", reader.ds, "NominalScannedPixelSpacing"),
    ]
    for keyword, holder, where in candidates:
        if holder is None:
            continue
        values = reader.numbers(keyword, holder)
        if len(values) >= 2 and values[0] > 0 and values[1] > 0:
            return (values[0], values[1]), where
    return _ultrasound_spacing(reader)


def _ultrasound_spacing(reader: HeaderReader) -> tuple[tuple[float, float] | None, str | None]:
    regions = reader.get("SequenceOfUltrasoundRegions", list) or []
    deltas = set()
    for region in regions:
        # Units code 3 = cm (PS3.3 C.8.5.5.1.15); other units are not lengths.
        units = (
            reader.integer("PhysicalUnitsXDirection", region),
            reader.integer("PhysicalUnitsYDirection", region),
        )
        if units != (3, 3):
            return None, None
        dx, dy = reader.number("PhysicalDeltaX", region), reader.number("PhysicalDeltaY", region)
        if not dx or not dy:
            return None, None
        deltas.add((abs(dy) * 10.0, abs(dx) * 10.0))
    if len(deltas) == 1:
        return deltas.pop(), "SequenceOfUltrasoundRegions"
    return None, None


def read_header_windows(reader: HeaderReader) -> tuple[Window, ...]:
    """Every (WindowCenter, WindowWidth) pair with its explanation and the VOI LUT Function.

    Enhanced multi-frame objects keep them in the Frame VOI LUT macro instead of the top level.
    """
    holder: Dataset | None = reader.ds
    if "WindowCenter" not in reader.ds:
        holder = functional_item(reader, "FrameVOILUTSequence")
    if holder is None:
        return ()
    centers, widths = reader.numbers("WindowCenter", holder), reader.numbers("WindowWidth", holder)
    if not centers or not widths:
        return ()
    if len(centers) != len(widths):
        reader.warnings.append(
            f"WindowCenter has {len(centers)} values and WindowWidth {len(widths)}; kept the first "
            f"{min(len(centers), len(widths))} pairs"
        )
    explanation = reader.text("WindowCenterWidthExplanation", holder)
    names = explanation.split("\\") if explanation else []
    function_text = (reader.text("VOILUTFunction", holder) or "LINEAR").upper()
    function: VoiFunction
    if function_text in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = function_text  # type: ignore[assignment]  # narrowed by the membership test
    else:
        reader.warnings.append(f"unknown VOILUTFunction {function_text!r}; used LINEAR")
        function = "LINEAR"
    windows = []
    for i, (center, width) in enumerate(zip(centers, widths, strict=False)):
        if width <= 0 or (function == "LINEAR" and width < 1):
            reader.warnings.append(f"ignored header window {i} with width {width:g}")
            continue
        name = names[i].strip() if i < len(names) and names[i].strip() else None
        windows.append(Window(center=center, width=width, name=name, function=function))
    return tuple(windows)


def read_voi_luts(reader: HeaderReader, *, little_endian: bool, signed: bool) -> tuple[VoiLut, ...]:
    """Every item of (0028,3010) VOI LUT Sequence, decoded to a uint16 table."""
    luts = []
    for i, item in enumerate(reader.get("VOILUTSequence", list) or []):
        try:
            luts.append(_read_voi_lut(item, little_endian=little_endian, signed=signed))
        except Exception as exc:
            reader.warnings.append(f"ignored VOILUTSequence item {i}: {exc}")
    return tuple(luts)


def _read_voi_lut(item: Dataset, *, little_endian: bool, signed: bool) -> VoiLut:
    descriptor = [int(v) for v in item.LUTDescriptor]
    entries = descriptor[0] or 65536  # 0 means 2**16 entries (PS3.3 C.11.2.1.1)
    first = descriptor[1]
    if signed and first > 32767:  # the descriptor's second value is SS when pixels are signed
        first -= 65536
    bits = descriptor[2]
    raw = item["LUTData"]
    if isinstance(raw.value, bytes | bytearray):
        data = struct.unpack(f"{'<' if little_endian else '>'}{entries}H", bytes(raw.value)[: 2 * entries])
    else:
        values = raw.value
        data = tuple(values) if isinstance(values, Sequence) else (values,)
    if len(data) != entries:
        raise ValueError(f"LUTData has {len(data)} entries, LUTDescriptor says {entries}")
    explanation = item.get("LUTExplanation")
    return VoiLut(
        first_mapped=first,
        data=np.asarray(data, dtype=np.uint16),
        bits=bits,
        explanation=str(explanation).strip() or None if explanation else None,
    )
