"""Image-size limits of a generation model, and fitting source images onto its size grid.

UniMedVL generates at most 1024 px a side, in multiples of 16 (its VAE downsamples 8× and its latent
patches are 2×2). A request that asks for another size is refused with :class:`~okaflow.GenerationSizeError`
rather than silently changed; a *source* image is resized onto the grid (aspect kept) because medical
images come in any size, and the sizes before and after are recorded in the result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from PIL import Image

from okaflow._constants import GENERATION_MAX_SIDE, GENERATION_MULTIPLE
from okaflow._errors import GenerationSizeError
from okaflow.tools.imaging import MedicalImage, render_frame, round_to_multiple

__all__ = ["UNIMEDVL_LIMITS", "FittedSource", "GenerationLimits", "fit_sources", "resize_to"]


@dataclass(frozen=True)
class GenerationLimits:
    """The sizes a generation model can produce.

    Attributes:
        max_side: Longest allowed side of a generated image, in pixels.
        multiple: Both sides must be multiples of this.
    """

    max_side: int = GENERATION_MAX_SIDE
    multiple: int = GENERATION_MULTIPLE

    def __post_init__(self) -> None:
        if self.multiple < 1 or self.max_side < self.multiple:
            raise ValueError(f"GenerationLimits needs 1 <= multiple <= max_side, not {self}")

    def check(self, size: tuple[int, int], *, what: str) -> None:
        """Refuse a size the model cannot generate.

        Args:
            size: ``(width, height)``.
            what: What the size is, for the message ("the requested text-to-image size").

        Raises:
            GenerationSizeError: A side is over ``max_side`` or not a multiple of ``multiple``.
        """
        width, height = size
        problems = []
        if max(width, height) > self.max_side:
            problems.append(f"a side is over {self.max_side} px")
        if width % self.multiple or height % self.multiple:
            problems.append(f"a side is not a multiple of {self.multiple}")
        if problems:
            raise GenerationSizeError(
                f"{what} {width}×{height} cannot be generated: {' and '.join(problems)}",
                size=size,
                max_side=self.max_side,
                multiple=self.multiple,
            )

    def fit_source(self, size: tuple[int, int], *, factor: int = 1) -> tuple[int, int]:
        """The input size for a source image of ``size`` whose output is ``factor`` times larger.

        With ``factor == 1`` (image-to-image tasks) a large source is scaled down to fit and both sides
        are rounded to the grid. With ``factor > 1`` (super-resolution) the source is only rounded so
        that the output lands on the grid; it is never scaled down before being scaled up.

        Raises:
            GenerationSizeError: The output of a super-resolution would exceed ``max_side``.
        """
        step = self.multiple // math.gcd(self.multiple, factor)
        # Only image-to-image sources are scaled down; a super-resolution source is only rounded.
        shrink = min(1.0, self.max_side / max(size)) if factor == 1 else 1.0
        fitted = (round_to_multiple(size[0] * shrink, step), round_to_multiple(size[1] * shrink, step))
        out = (fitted[0] * factor, fitted[1] * factor)
        if max(out) > self.max_side:
            raise GenerationSizeError(
                f"{factor}× super-resolution of a {size[0]}×{size[1]} image would be {out[0]}×{out[1]}, over the "
                f"{self.max_side} px limit",
                size=out,
                max_side=self.max_side,
                multiple=self.multiple,
            )
        return fitted


@dataclass(frozen=True)
class FittedSource:
    """A source image as a generator uses it: its id, its 8-bit RGB rendering, and that fitted onto the grid."""

    id: str
    shown: Image.Image
    fitted: Image.Image


def fit_sources(
    sources: list[str], images: Mapping[str, MedicalImage], limits: GenerationLimits | None, *, factor: int = 1
) -> list[FittedSource]:
    """Each source's middle frame rendered to 8-bit RGB and fitted onto ``limits``' grid.

    With ``limits`` ``None`` (the generator declared none) the rendering is only rounded to multiples of 8,
    the latent grid of most diffusion VAEs.
    """
    grid = limits or GenerationLimits(max_side=1 << 16, multiple=8)
    out = []
    for source in sources:
        shown = render_frame(images[source], frame="middle").convert("RGB")
        out.append(FittedSource(source, shown, resize_to(shown, grid.fit_source(shown.size, factor=factor))))
    return out


def resize_to(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``img`` at ``size`` (Lanczos), or ``img`` itself when it already has that size."""
    return img if img.size == size else img.resize(size, Image.Resampling.LANCZOS)


UNIMEDVL_LIMITS = GenerationLimits()
