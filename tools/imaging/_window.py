"""Display windows: CT presets, choosing a window for an image, and mapping values to 8 bits."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from okaflow._errors import ConfigurationError
from okaflow._types import Modality
from okaflow.tools.imaging._models import MedicalImage, VoiLut, Window

__all__ = [
    "AUTO_PERCENTILES",
    "CT_WINDOW_PRESETS",
    "apply_voi_lut_8bit",
    "apply_window_8bit",
    "resolve_window",
]

# Conventional CT windows in HU (centre, width), as tabulated by Radiopaedia's "windowing (CT)".
CT_WINDOW_PRESETS: Mapping[str, Window] = MappingProxyType(
    {
        "lung": Window(center=-600, width=1500, name="lung"),
        "mediastinum": Window(center=50, width=350, name="mediastinum"),
        "soft_tissue": Window(center=40, width=400, name="soft_tissue"),
        "bone": Window(center=400, width=1800, name="bone"),
        "brain": Window(center=40, width=80, name="brain"),
        "liver": Window(center=30, width=150, name="liver"),
        "stroke": Window(center=40, width=40, name="stroke"),
        "subdural": Window(center=75, width=215, name="subdural"),
    }
)
_PRESET_ALIASES = {
    "softtissue": "soft_tissue",
    "soft": "soft_tissue",
    "abdomen": "soft_tissue",
    "mediastinal": "mediastinum",
}
# Robust range for images without a window: clip the darkest and brightest 0.5 %.
AUTO_PERCENTILES = (0.5, 99.5)
_DEFAULT_CT = "soft_tissue"
_KEYWORDS = ("auto", "full", "header[:i]", "voi[:i]")


def _preset(name: str) -> Window | None:
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    key = _PRESET_ALIASES.get(key.replace("_", ""), key)
    return CT_WINDOW_PRESETS.get(key)


def _auto_window(values: npt.NDArray[np.float32]) -> Window:
    lo, hi = (float(v) for v in np.percentile(values, AUTO_PERCENTILES))
    return Window(
        center=(lo + hi) / 2,
        width=max(hi - lo, 1e-3),
        name="auto 0.5–99.5 percentile",
        function="LINEAR_EXACT",
    )


def _full_window(values: npt.NDArray[np.float32]) -> Window:
    lo, hi = float(values.min()), float(values.max())
    return Window(center=(lo + hi) / 2, width=max(hi - lo, 1e-3), name="full range", function="LINEAR_EXACT")


def _indexed(spec: str, prefix: str, items: tuple[Window, ...] | tuple[VoiLut, ...], image: MedicalImage) -> int:
    rest = spec[len(prefix) :].lstrip(":")
    index = int(rest) if rest.isdigit() else 0
    if index >= len(items):
        raise ConfigurationError(
            f"window {spec!r}: image {image.id} has {len(items)} {prefix} window(s)",
            hint="use 'auto', a CT preset, or a Window(center=..., width=...)",
        )
    return index


def resolve_window(
    image: MedicalImage, window: Window | str | None, values: npt.NDArray[np.float32]
) -> Window | VoiLut | None:
    """The window a render uses, following okaflow's precedence.

    Precedence: an explicit ``window`` > the first header window > the first VOI LUT > for CT in HU
    the ``soft_tissue`` preset > for 8-bit PNG/JPEG/TIFF the full 0–255 range (they are already
    display images) > the robust 0.5–99.5 percentile range of ``values``. Colour images without an
    explicit window return None (shown as stored, scaled from their bit depth).

    ``window`` may be a :class:`Window`, a CT preset name (:data:`CT_WINDOW_PRESETS`, HU images only),
    ``"header"``/``"header:<i>"``, ``"voi"``/``"voi:<i>"``, ``"auto"`` (percentiles) or ``"full"``
    (min to max).

    Raises:
        ConfigurationError: an unknown name, a preset on an image not in HU, or a missing index.
    """
    if isinstance(window, Window):
        return window
    if window is None:
        if image.is_color:
            return None
        if image.header_windows:
            return image.header_windows[0]
        if image.voi_luts:
            return image.voi_luts[0]
        if image.modality is Modality.CT and image.units == "HU":
            return CT_WINDOW_PRESETS[_DEFAULT_CT]
        if image.format != "dicom" and image.bits_stored == 8:
            return Window(center=127.5, width=255, name="full 8-bit range", function="LINEAR_EXACT")
        return _auto_window(values)
    spec = window.strip().lower()
    if spec == "auto":
        return _auto_window(values)
    if spec == "full":
        return _full_window(values)
    if spec.startswith("header"):
        return image.header_windows[_indexed(spec, "header", image.header_windows, image)]
    if spec.startswith("voi"):
        return image.voi_luts[_indexed(spec, "voi", image.voi_luts, image)]
    preset = _preset(spec)
    if preset is None:
        raise ConfigurationError(
            f"unknown window {window!r}",
            hint=f"use a Window, a CT preset {sorted(CT_WINDOW_PRESETS)}, or {', '.join(_KEYWORDS)}",
        )
    if image.units != "HU":
        raise ConfigurationError(
            f"CT window preset {preset.name!r} is in HU; {image.id} is in {image.units or 'unitless values'}",
            hint="use 'auto', 'header' or an explicit Window(center=..., width=...)",
        )
    return preset


def apply_window_8bit(values: npt.NDArray[np.float32], window: Window) -> npt.NDArray[np.uint8]:
    """Map values through a DICOM VOI function (PS3.3 C.11.2.1.2–3) to 0–255."""
    c, w = window.center, window.width
    y: npt.NDArray[np.float32]
    if window.function == "SIGMOID":
        y = np.exp((values - np.float32(c)) * np.float32(-4.0 / w))
        y += np.float32(1.0)
        np.reciprocal(y, out=y)
    else:
        # LINEAR maps c - 0.5 ± (w - 1) / 2 onto the output range; LINEAR_EXACT maps c ± w / 2.
        if window.function == "LINEAR" and w > 1:
            scale, offset = 1.0 / (w - 1), 0.5 - (c - 0.5) / (w - 1)
        else:
            scale, offset = 1.0 / w, 0.5 - c / w
        y = values * np.float32(scale)
        y += np.float32(offset)
    np.clip(y, 0.0, 1.0, out=y)
    y *= np.float32(255.0)
    y += np.float32(0.5)
    return y.astype(np.uint8)


def apply_voi_lut_8bit(values: npt.NDArray[np.float32], lut: VoiLut) -> npt.NDArray[np.uint8]:
    """Map values through a VOI LUT, scaled so the table's largest entry is white.

    Tables often declare 16 bits per entry but fill only 12; scaling by the declared depth would
    render them nearly black, so the largest entry present defines white (as most viewers do).
    """
    top = max(int(lut.data.max()), 1)
    table = ((lut.data.astype(np.float32) * (255.0 / top)) + 0.5).astype(np.uint8)
    index = np.rint(values).astype(np.int64) - lut.first_mapped
    np.clip(index, 0, table.size - 1, out=index)
    out: npt.NDArray[np.uint8] = table[index]
    return out
