"""Distinct copies of an example case, so N concurrent cases ask the engine for N different things.

Real concurrent cases are different patients with different images. N copies of one case send N
identical requests, and vLLM's prefix cache then encodes the image and fills the prompt once for all
of them: the engine does a fraction of the work, and answers them together in the same step. Each
copy here shifts every image sideways by its own number of pixels (DICOM through pydicom, written
uncompressed; other formats through Pillow), so each request is new to the engine while the cases
stay the same size and shape.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.errors import InvalidDicomError

from okaflow._case import resolve_image_path
from okaflow._constants import CASE_MANIFEST

__all__ = ["distinct_copies"]

_STEP = 7  # pixels between one copy's shift and the next


def distinct_copies(case: Path, n: int, root: Path) -> list[Path]:
    """``n`` copies of the case folder under ``root``; copy ``i`` has its images shifted ``7 * (i + 1)`` pixels."""
    manifest_path = case / CASE_MANIFEST
    if not manifest_path.is_file():
        raise SystemExit(f"{case} has no {CASE_MANIFEST}: distinct copies need the case's image list")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    entries = [{"path": e} if isinstance(e, str) else e for e in manifest.get("images", [])]
    sources = [
        resolve_image_path(str(entry["path"]), case, manifest_path, f"images[{k}]") for k, entry in enumerate(entries)
    ]
    copies = []
    for i in range(n):
        folder = root / f"case-{i}"
        shutil.copytree(case, folder)
        images = []
        for k, (entry, source) in enumerate(zip(entries, sources, strict=True)):
            target = folder / f"shifted-{k}{source.suffix or '.dcm'}"
            _shifted(source, target, _STEP * (i + 1))
            images.append({**entry, "path": target.name})
        (folder / CASE_MANIFEST).write_text(json.dumps({**manifest, "images": images}, indent=2), encoding="utf-8")
        copies.append(folder)
    return copies


def _shifted(source: Path, target: Path, pixels: int) -> None:
    try:
        ds = pydicom.dcmread(source)
    except InvalidDicomError:
        with Image.open(source) as image:
            shifted = np.roll(np.asarray(image), pixels, axis=1)
            Image.fromarray(shifted).save(target, format=image.format)
        return
    samples = int(ds.get("SamplesPerPixel", 1))
    # pixel_array gives colour samples as RGB, whatever the file stored.
    photometric = "RGB" if samples > 1 else str(ds.PhotometricInterpretation)
    shifted = np.roll(ds.pixel_array, pixels, axis=-2 if samples > 1 else -1)
    ds.set_pixel_data(shifted, photometric, int(ds.BitsStored))
    ds.save_as(target, enforce_file_format=True)
