"""Images and their measurements as citable :class:`~okaflow.Evidence`.

Summaries carry the numbers and units exactly as ``data`` holds them, so the verify step can match a
model's sentence against the text it cites. No patient identifiers are put in evidence.
"""

from __future__ import annotations

from typing import Any

from okaflow._types import Evidence, Modality
from okaflow.tools.imaging._measure import HU_BANDS, ImageMeasurements
from okaflow.tools.imaging._models import MedicalImage

__all__ = ["image_evidence", "measurement_evidence"]


def _num(value: float) -> float:
    return round(value, 1) + 0.0  # + 0.0 turns -0.0 into 0.0 so summaries never show "-0.0"


def _mm(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _kind_label(image: MedicalImage) -> str:
    if image.modality is not Modality.OTHER:
        return image.modality.value
    return image.dicom_modality or image.format.upper()


def image_evidence(image: MedicalImage) -> Evidence:
    """The image itself as evidence (kind ``image``), id ``image.id``.

    The summary reads like ``CT image 512×512 px (0.49×0.49 mm pixels), series 'CHEST' (#3), study
    date 2004-01-19, body part CHEST``; ``data`` holds the header facts.
    """
    parts = [f"{_kind_label(image)} image {image.columns}×{image.rows} px"]
    if image.pixel_spacing_mm:
        row_mm, col_mm = image.pixel_spacing_mm
        parts[0] += f" ({_mm(col_mm)}×{_mm(row_mm)} mm pixels)"
    if image.frames > 1:
        parts.append(f"{image.frames} frames")
    if image.series_description or image.series_number is not None:
        series = f"series '{image.series_description}'" if image.series_description else "series"
        parts.append(series + (f" (#{image.series_number})" if image.series_number is not None else ""))
    if image.study_date:
        parts.append(f"study date {image.study_date}")
    if image.body_part:
        parts.append(f"body part {image.body_part}")
    if image.slice_thickness_mm:
        parts.append(f"slice thickness {_mm(image.slice_thickness_mm)} mm")
    data: dict[str, Any] = {
        "format": image.format,
        "modality": image.modality.value,
        "modality_source": image.modality_source,
        "dicom_modality": image.dicom_modality,
        "study_uid": image.study_uid,
        "series_uid": image.series_uid,
        "sop_uid": image.sop_uid,
        "study_date": image.study_date,
        "series_date": image.series_date,
        "study_description": image.study_description,
        "series_description": image.series_description,
        "series_number": image.series_number,
        "instance_number": image.instance_number,
        "body_part": image.body_part,
        "rows": image.rows,
        "columns": image.columns,
        "frames": image.frames,
        "pixel_spacing_mm": list(image.pixel_spacing_mm) if image.pixel_spacing_mm else None,
        "slice_thickness_mm": image.slice_thickness_mm,
        "slice_location": image.slice_location,
        "units": image.units,
        "photometric": image.photometric,
        "transfer_syntax": image.transfer_syntax,
        "header_windows": [w.describe() for w in image.header_windows],
    }
    return Evidence(
        id=image.id,
        kind="image",
        summary=", ".join(parts),
        source=str(image.source) if image.source else None,
        time=image.study_date,
        data={k: v for k, v in data.items() if v not in (None, [])},
    )


def measurement_evidence(image: MedicalImage, m: ImageMeasurements) -> list[Evidence]:
    """One evidence item per measurement (kind ``measurement``): ``size``, ``intensity``,
    ``percentiles`` and, for images in HU, ``hu_bands``.

    Ids are ``Measurement/<image id without 'Image/'>/<name>``; measurements of a single frame of a
    multi-frame image get ``<name>-frame<n>`` so they never collide with whole-image ones.
    """
    base = image.id.removeprefix("Image/")
    suffix = f"-frame{m.frame}" if m.frame is not None and m.frames > 1 else ""
    scope = (
        f"frame {m.frame}"
        if m.frame is not None and m.frames > 1
        else (f"all {m.frames} frames" if m.frames > 1 else "the image")
    )
    units = f" {m.units}" if m.units else ""
    what = "luma (0–255)" if m.channel == "luma" else f"pixel values{f' ({m.units})' if m.units else ''}"
    source = str(image.source) if image.source else None

    def item(name: str, summary: str, data: dict[str, Any]) -> Evidence:
        return Evidence(
            id=f"Measurement/{base}/{name}{suffix}",
            kind="measurement",
            summary=summary,
            source=source,
            time=image.study_date,
            data={"image_id": image.id, "frame": m.frame, **data},
        )

    size = f"Image size {m.columns}×{m.rows} px"
    size_data: dict[str, Any] = {"columns": m.columns, "rows": m.rows, "frames": m.frames}
    if m.width_mm is not None and m.height_mm is not None and m.pixel_spacing_mm:
        width, height = _num(m.width_mm), _num(m.height_mm)
        row_mm, col_mm = m.pixel_spacing_mm
        size += f", field of view {width}×{height} mm (pixel spacing {_mm(col_mm)}×{_mm(row_mm)} mm)"
        size_data.update(width_mm=width, height_mm=height, pixel_spacing_mm=[row_mm, col_mm])
    if m.frames > 1:
        size += f", {m.frames} frames"
    stats = {"min": _num(m.min), "max": _num(m.max), "mean": _num(m.mean), "std": _num(m.std)}
    intensity = (
        f"Intensity of {scope}, {what}: min {stats['min']}{units}, max {stats['max']}{units}, "
        f"mean {stats['mean']}{units}, SD {stats['std']}{units} over {m.pixel_count} pixels"
    )
    if m.padding_pixels:
        intensity += f" ({m.padding_pixels} padding pixels excluded)"
    quantiles = {k: _num(v) for k, v in m.percentiles.items()}
    listed = ", ".join(f"{k} {v}{units}" for k, v in quantiles.items())
    percentiles = f"Percentiles of {scope}, {what}: {listed}"
    result = [
        item("size", size, size_data),
        item("intensity", intensity, {**stats, "units": m.units, "channel": m.channel, "pixels": m.pixel_count}),
        item("percentiles", percentiles, {"percentiles": quantiles, "units": m.units}),
    ]
    if m.hu_bands is not None:
        labels = {name: label for name, _, _, label in HU_BANDS}
        shares = {name: _num(100 * fraction) for name, fraction in m.hu_bands.items()}
        text = ", ".join(
            f"{name.replace('_', ' ')} ({labels[name]}) {share}%" if name in labels else f"{name} {share}%"
            for name, share in shares.items()
        )
        result.append(
            item(
                "hu_bands",
                f"Share of pixels by HU range in {scope} (conventional ranges, not a segmentation): {text}",
                {"percent": shares, "bands": labels},
            )
        )
    return result
