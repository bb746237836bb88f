"""Which of UniMedVL's eight modalities an image is: from DICOM tags, or from a caller's hint."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydicom.dataset import Dataset

from okaflow._errors import ConfigurationError
from okaflow._types import Modality
from okaflow.tools.imaging._dicom_header import element_value, keyword_tag

__all__ = ["MODALITY_ALIASES", "detect_modality", "parse_modality"]

# Hint aliases, compared after lower-casing and dropping everything but letters, digits and '&'.
MODALITY_ALIASES: dict[Modality, tuple[str, ...]] = {
    Modality.CT: ("ct", "computed tomography", "cat scan"),
    Modality.MRI: ("mri", "mr", "magnetic resonance", "mr imaging"),
    Modality.CXR: (
        "cxr",
        "chest x-ray",
        "chest xray",
        "xray chest",
        "x-ray chest",
        "chest radiograph",
        "chest radiography",
        "cr chest",
        "dx chest",
        "chest film",
    ),
    Modality.CFP: (
        "cfp",
        "fundus",
        "colour fundus",
        "color fundus",
        "fundus photo",
        "fundus photography",
        "colour fundus photography",
        "color fundus photography",
        "retinal photo",
        "retinal photography",
        "op",
    ),
    Modality.HIS: (
        "his",
        "histopathology",
        "histology",
        "pathology",
        "whole slide",
        "wsi",
        "h&e",
        "sm",
        "slide",
    ),
    Modality.OCT: ("oct", "opt", "optical coherence tomography", "retinal oct"),
    Modality.US: ("us", "ultrasound", "sonography", "ultrasonography", "echography"),
    Modality.ENDOSCOPY: ("endoscopy", "es", "endoscopic", "colonoscopy", "gastroscopy", "bronchoscopy"),
    Modality.OTHER: ("other", "ot", "unknown"),
}


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9&]+", "", text.lower())


_ALIAS_INDEX: dict[str, Modality] = {
    _key(alias): modality for modality, aliases in MODALITY_ALIASES.items() for alias in (*aliases, modality.value)
}

# DICOM (0008,0060) Modality codes that decide on their own.
_DIRECT: dict[str, Modality] = {
    "CT": Modality.CT,
    "MR": Modality.MRI,
    "US": Modality.US,
    "IVUS": Modality.US,
    "OP": Modality.CFP,
    "OPT": Modality.OCT,
    "OCT": Modality.OCT,
    "ES": Modality.ENDOSCOPY,
    "SM": Modality.HIS,
    "GM": Modality.HIS,
}
# Projection radiography: a chest X-ray only when the anatomy says chest.
_RADIOGRAPHY = frozenset({"CR", "DX", "DR", "RG"})
# Generic codes (secondary capture, external camera, visible light): the descriptions decide.
_GENERIC = frozenset({"", "OT", "SC", "XC", "VL", "DOC"})

# SOP classes that fix the modality whatever (0008,0060) says.
_SOP_CLASSES: dict[str, Modality] = {
    "1.2.840.10008.5.1.4.1.1.77.1.1": Modality.ENDOSCOPY,  # VL Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.1.1": Modality.ENDOSCOPY,  # Video Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.2": Modality.HIS,  # VL Microscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.3": Modality.HIS,  # VL Slide-Coordinates Microscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.6": Modality.HIS,  # VL Whole Slide Microscopy Image
    "1.2.840.10008.5.1.4.1.1.77.1.5.1": Modality.CFP,  # Ophthalmic Photography 8 Bit
    "1.2.840.10008.5.1.4.1.1.77.1.5.2": Modality.CFP,  # Ophthalmic Photography 16 Bit
    "1.2.840.10008.5.1.4.1.1.77.1.5.4": Modality.OCT,  # Ophthalmic Tomography Image
}

_CHEST_WORDS = re.compile(r"\b(chest|thorax|thoracic|lungs?|cxr|pulmonary|ribs?)\b", re.IGNORECASE)
# Description keywords for generic codes, checked in this order.
_DESCRIPTION_WORDS: tuple[tuple[re.Pattern[str], Modality], ...] = (
    (re.compile(r"\b(oct|optical coherence)\b", re.IGNORECASE), Modality.OCT),
    (re.compile(r"\b(fundus|retina[l]?|funduscop\w*)\b", re.IGNORECASE), Modality.CFP),
    (
        re.compile(r"\b(endoscop\w*|colonoscop\w*|gastroscop\w*|bronchoscop\w*|cystoscop\w*)", re.IGNORECASE),
        Modality.ENDOSCOPY,
    ),
    (re.compile(r"\b(histo\w*|patholog\w*|h&e|slide|biopsy|microscop\w*)", re.IGNORECASE), Modality.HIS),
    (re.compile(r"\b(chest x-?ray|cxr|chest radiograph\w*)\b", re.IGNORECASE), Modality.CXR),
)


def parse_modality(hint: Modality | str) -> Modality:
    """Turn a caller's modality hint into a :class:`~okaflow.Modality`.

    Accepts the enum, its values, and case-insensitive aliases such as ``"MR"``, ``"MRI"``,
    ``"xray chest"``, ``"fundus"`` or ``"H&E"`` (see :data:`MODALITY_ALIASES`).

    Raises:
        ConfigurationError: the hint matches no modality; the message lists the accepted values.
    """
    if isinstance(hint, Modality):
        return hint
    found = _ALIAS_INDEX.get(_key(str(hint)))
    if found is None:
        accepted = "; ".join(f"{m.value}: {', '.join(MODALITY_ALIASES[m])}" for m in Modality)
        raise ConfigurationError(
            f"unknown modality hint {hint!r}",
            hint=f"use one of {', '.join(m.value for m in Modality)} or an alias ({accepted})",
        )
    return found


def _text(ds: Any, keyword: str) -> str:
    try:
        # Datasets take the fast path (a tag lookup); any other mapping-like object its own get().
        value = element_value(ds, keyword_tag(keyword)) if isinstance(ds, Dataset) else ds.get(keyword)
    except Exception:  # a malformed element must not stop recognition
        return ""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Iterable):
        return " ".join(str(v) for v in value)
    return str(value)


def _anatomy_text(ds: Any) -> str:
    keywords = ("BodyPartExamined", "StudyDescription", "SeriesDescription", "ProtocolName")
    parts = [_text(ds, k) for k in keywords]
    try:
        if not isinstance(ds, Dataset) or "AnatomicRegionSequence" in ds:
            for item in ds.get("AnatomicRegionSequence") or ():
                parts.append(str(item.get("CodeMeaning", "")))
    except Exception:  # a malformed optional sequence must not stop recognition
        pass
    return " ".join(p for p in parts if p)


def detect_modality(dataset: Any = None, *, hint: Modality | str | None = None) -> tuple[Modality, str]:
    """Decide an image's modality and say how it was decided.

    An explicit ``hint`` wins (the caller knows the case). Otherwise the DICOM tags decide:
    (0008,0016) SOP Class for ophthalmic, endoscopic and microscopy objects; (0008,0060) Modality
    (CT→CT, MR→MRI, US→US, OP→CFP, OPT→OCT, ES→ENDOSCOPY, SM/GM→HIS); CR/DX are a chest X-ray only
    when the body part or a description says chest; generic codes (OT, SC, XC, VL) look for words
    such as "fundus" or "endoscopy" in the descriptions. Anything else is OTHER.

    Args:
        dataset: A pydicom ``Dataset`` (or any object with ``.get(keyword)``), or None for files
            without tags (PNG, JPEG, TIFF).
        hint: A modality or alias, see :func:`parse_modality`.

    Returns:
        The modality and its source, e.g. ``(Modality.CT, "dicom:Modality=CT")``, ``(…, "hint")``
        or ``(Modality.OTHER, "default")``.

    Raises:
        ConfigurationError: ``hint`` is not a known modality or alias.
    """
    if hint is not None:
        return parse_modality(hint), "hint"
    if dataset is None:
        return Modality.OTHER, "default"
    code = _text(dataset, "Modality").strip().upper()
    sop_class = _text(dataset, "SOPClassUID").strip()
    if sop_class in _SOP_CLASSES:
        return _SOP_CLASSES[sop_class], f"dicom:SOPClassUID={sop_class}"
    if code in _DIRECT:
        return _DIRECT[code], f"dicom:Modality={code}"
    anatomy = _anatomy_text(dataset)
    if code in _RADIOGRAPHY:
        if _CHEST_WORDS.search(anatomy):
            return Modality.CXR, f"dicom:Modality={code}+chest"
        return Modality.OTHER, f"dicom:Modality={code} (not chest)"
    if code in _GENERIC:
        for pattern, modality in _DESCRIPTION_WORDS:
            match = pattern.search(anatomy)
            if match:
                return modality, f"dicom:Modality={code or '?'}+description '{match.group(0)}'"
    if code:
        return Modality.OTHER, f"dicom:Modality={code}"
    return Modality.OTHER, "default"
