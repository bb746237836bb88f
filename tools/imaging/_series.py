"""Grouping loaded images into series, ordered as a radiologist would scroll them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from okaflow._types import Modality
from okaflow.tools.imaging._models import MedicalImage

__all__ = ["ImageSeries", "group_series", "middle_image"]


@dataclass(frozen=True)
class ImageSeries:
    """The images of one DICOM series (or one non-DICOM file), in display order.

    ``series_uid`` is None for an image without a SeriesInstanceUID (PNG, JPEG, TIFF, or a DICOM
    file lacking it): such an image is a series of its own.
    """

    series_uid: str | None
    study_uid: str | None
    modality: Modality
    description: str | None
    images: tuple[MedicalImage, ...]
    series_number: int | None = None

    @property
    def key(self) -> str:
        """``series_uid``, or the single image's id for series without one."""
        return self.series_uid or self.images[0].id

    def __len__(self) -> int:
        return len(self.images)


def _display_order(image: MedicalImage) -> tuple[bool, int, bool, float, str]:
    # InstanceNumber first (what the scanner numbered), SliceLocation to break ties or fill gaps,
    # the id last so equal keys still sort the same way every run.
    return (
        image.instance_number is None,
        image.instance_number or 0,
        image.slice_location is None,
        image.slice_location or 0.0,
        image.id,
    )


def group_series(images: Iterable[MedicalImage]) -> list[ImageSeries]:
    """Group images by SeriesInstanceUID, each series sorted by InstanceNumber then SliceLocation.

    Series come out in the order their first image appears in ``images``. Images without a series
    UID (non-DICOM files) are each their own series. A series takes its modality and description
    from its first image in display order.
    """
    groups: dict[str, list[MedicalImage]] = {}
    uids: dict[str, str | None] = {}
    for image in images:
        key = f"series:{image.series_uid}" if image.series_uid else f"image:{image.id}:{len(groups)}"
        groups.setdefault(key, []).append(image)
        uids[key] = image.series_uid
    result = []
    for key, members in groups.items():
        ordered = tuple(sorted(members, key=_display_order))
        first = ordered[0]
        result.append(
            ImageSeries(
                series_uid=uids[key],
                study_uid=first.study_uid,
                modality=first.modality,
                description=first.series_description,
                images=ordered,
                series_number=first.series_number,
            )
        )
    return result


def middle_image(series: ImageSeries) -> MedicalImage:
    """The image at the middle of the series in display order (the upper middle for an even count).

    For a single multi-frame image this is that image; pick its middle frame with
    ``render_frame(image, frame="middle")``.
    """
    return series.images[len(series.images) // 2]
