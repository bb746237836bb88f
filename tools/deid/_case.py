"""De-identify a whole case folder consistently, and search what will be shared for surviving identifiers.

:func:`deidentify_case` writes a new case folder: DICOM through the PS3.15 basic profile, the FHIR
bundle through :func:`deidentify_bundle`, raster images with their metadata stripped (pixels
untouched), ``case.json`` and knowledge documents scrubbed as free text — all with one
:class:`Pseudonymizer`, so the DICOM PatientID still matches the FHIR identifier, UIDs still link, and
intervals between dates hold. Images that came from pydicom's bundled files are copied in (de-identified)
under ``images/``, since the importing side would otherwise resolve the originals.

:func:`find_leaks` searches files byte by byte for every original the pseudonymizer replaced; the
export refuses to write a bundle in which one is found.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from okaflow._constants import CASE_MANIFEST
from okaflow._errors import DeidentificationError, FHIRParseError
from okaflow.tools.deid._dicom import deidentify_dicom
from okaflow.tools.deid._fhir import deidentify_bundle
from okaflow.tools.deid._pseudonyms import Pseudonymizer
from okaflow.tools.fhir import dumps_fhir_json, read_fhir_json

__all__ = ["DeidentifiedCase", "deidentify_case", "find_leaks"]

_TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".json", ".csv", ".html", ".htm", ".xml", ".rst"}
_RASTER = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
# JPEG segments that carry no identifying text: JFIF (APP0), ICC profiles (APP2), Adobe colour (APP14).
_JPEG_KEEP = {0xE0, 0xE2, 0xEE}


@dataclass
class DeidentifiedCase:
    """Where the de-identified case is, and what was done to each input (original name → new name)."""

    folder: Path
    files: dict[str, str] = field(default_factory=dict)


def deidentify_case(source: Path, inputs: list[str], target: Path, pseudonyms: Pseudonymizer) -> DeidentifiedCase:
    """De-identify the case folder ``source`` into the new folder ``target``.

    Args:
        source: The case folder.
        inputs: Its input files by portable name (relative to ``source``, or ``pydicom:NAME``), as a
            run's manifest lists them; every one is de-identified or the call fails.
        target: An empty folder for the de-identified case.
        pseudonyms: The case's pseudonymizer (its key and date shift).

    Raises:
        DeidentificationError: An input cannot be de-identified (unknown file type, burned-in pixels).
    """
    from okaflow._case import resolve_image_path

    manifest_path = source / CASE_MANIFEST
    manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    knowledge = f"{manifest['knowledge'].rstrip('/')}/" if manifest.get("knowledge") else None
    target.mkdir(parents=True, exist_ok=True)
    done = DeidentifiedCase(target)
    bundles: list[tuple[str, dict[str, Any]]] = []
    texts: list[str] = []
    # Structured values first (DICOM, then FHIR), so the free-text passes know every original.
    for name in inputs:
        if name == CASE_MANIFEST:
            continue
        if knowledge and name.startswith(knowledge):
            texts.append(name)
        elif name.startswith("pydicom:"):
            local = f"images/pydicom/{name.removeprefix('pydicom:')}"
            _image(resolve_image_path(name, source), target / local, pseudonyms)
            done.files[name] = local
        elif name.lower().endswith(".json") and (bundle := _bundle(source / name)) is not None:
            bundles.append((name, bundle))
        else:
            _image(source / name, target / name, pseudonyms)
            done.files[name] = name
    for name, bundle in bundles:
        _write_json(target / name, deidentify_bundle(bundle, pseudonyms))
        done.files[name] = name
    for name in texts:
        _text_file(source / name, target / name, pseudonyms)
        done.files[name] = name
    if CASE_MANIFEST in inputs:
        scrubbed = {
            k: pseudonyms.scrub_text(v) if k in ("id", "title", "task") and isinstance(v, str) else v
            for k, v in manifest.items()
        }
        scrubbed["images"] = [_repointed(entry, done.files) for entry in manifest.get("images") or []]
        _write_json(target / CASE_MANIFEST, scrubbed)
        done.files[CASE_MANIFEST] = CASE_MANIFEST
    return done


def _repointed(entry: Any, files: dict[str, str]) -> Any:
    if isinstance(entry, dict):
        return {**entry, "path": files.get(str(entry.get("path")), entry.get("path"))}
    return files.get(str(entry), entry)


def _bundle(path: Path) -> dict[str, Any] | None:
    """The JSON file's Bundle, read once and as the case loader reads it (BOM, decimals), or None."""
    try:
        data = read_fhir_json(path)
    except FHIRParseError:
        return None
    return data if isinstance(data, dict) and data.get("resourceType") == "Bundle" else None


def _image(source: Path, target: Path, pseudonyms: Pseudonymizer) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fmt = _RASTER.get(source.suffix.lower())
    if fmt is None:
        deidentify_dicom(source, target, pseudonyms)
    elif fmt == "JPEG":
        target.write_bytes(_strip_jpeg(source))
    else:
        _resave(source, target, fmt)


def _resave(source: Path, target: Path, fmt: str) -> None:
    """PNG/TIFF pixels re-encoded losslessly with no text chunks, EXIF or TIFF description tags."""
    from PIL import Image

    with Image.open(source) as img:
        img.load()
        # Pixels only: no info dict, no EXIF, no text chunks (the palette, for palette images).
        clean = Image.frombytes(img.mode, img.size, img.tobytes())
        palette = img.getpalette() if img.mode == "P" else None
        if palette is not None:
            clean.putpalette(palette)
        buffer = io.BytesIO()
        clean.save(buffer, format=fmt)
    target.write_bytes(buffer.getvalue())


def _strip_jpeg(source: Path) -> bytes:
    """The JPEG without APPn (EXIF, XMP, …) and COM segments that may hold text; the coded image is untouched."""
    data = source.read_bytes()
    if data[:2] != b"\xff\xd8":
        raise DeidentificationError(
            "not a JPEG file (it has no JPEG start marker)", source=source, hint="check the file, or leave it out"
        )
    out, i = bytearray(data[:2]), 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded image data
            break
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        segment = data[i : i + 2 + length]
        if not ((0xE0 <= marker <= 0xEF and marker not in _JPEG_KEEP) or marker == 0xFE):
            out += segment
        i += 2 + length
    out += data[i:]
    return bytes(out)


def _text_file(source: Path, target: Path, pseudonyms: Pseudonymizer) -> None:
    if source.suffix.lower() not in _TEXT_SUFFIXES:
        raise DeidentificationError(
            f"okaflow de-identifies text documents only ({', '.join(sorted(_TEXT_SUFFIXES))})",
            source=source,
            hint="convert the document to text, or leave it out of the shared case",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(pseudonyms.scrub_text(source.read_text(encoding="utf-8")), encoding="utf-8")


def _write_json(path: Path, data: Any) -> None:
    """Written as the loader reads it: decimals digit for digit ("1.40" stays 1.40), UTF-8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_fhir_json(data) + "\n", encoding="utf-8")


def find_leaks(folder: Path, pseudonyms: Pseudonymizer) -> list[str]:
    """Every file under ``folder`` that still holds an original the pseudonymizer replaced, as
    ``"path: kind"`` lines (the kind of value, never the value). Binary files are searched too."""
    found: list[str] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        kinds = pseudonyms.found_in(path.read_bytes().decode("utf-8", "surrogateescape"))
        found += [f"{path.relative_to(folder).as_posix()}: {kind}" for kind in sorted(kinds)]
    return found
