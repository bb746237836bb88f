"""What a loaded diffusers pipeline can do, and calling it in seeded batches.

A pipeline's *route* is how okaflow calls it: ``text_to_image`` (prompt → image), ``unconditional``
(no prompt: DDPM, DDIM), ``image_to_image`` (img2img: source + prompt + strength), ``instruction_edit``
(InstructPix2Pix: source + instruction + image guidance) or ``upscaler`` (source → a larger image). It is
read from the pipeline's class and its ``__call__`` signature, so any local pipeline folder of those kinds
works, not only Stable Diffusion.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from okaflow._errors import ConfigurationError

__all__ = [
    "IMAGE_TASKS",
    "Item",
    "accepted",
    "call_default",
    "call_params",
    "pipeline_route",
    "read_upscale_factor",
    "run_batched",
]

# Tasks that re-generate a source image with a text prompt.
IMAGE_TASKS = frozenset({"virtual_staining", "modality_translation", "counterfactual", "reconstruction"})
# Output size ÷ input size of the upscalers diffusers ships (the SD x4 upscaler's is its VAE's scale factor).
_UPSCALE_FACTORS = {"StableDiffusionLatentUpscalePipeline": 2, "LDMSuperResolutionPipeline": 4}


def pipeline_route(pipe: Any) -> str | None:
    """How ``pipe`` is called, or ``None`` for a kind okaflow does not drive (inpainting, video, audio …)."""
    cls = type(pipe).__name__
    params = inspect.signature(pipe.__call__).parameters
    if "Upscale" in cls or "SuperResolution" in cls:
        return "upscaler"
    if "mask_image" in params or "video" in cls.lower() or "audio" in cls.lower():
        return None
    if "InstructPix2Pix" in cls or "image_guidance_scale" in params:
        return "instruction_edit"
    if "image" in params and "strength" in params:
        return "image_to_image"
    if "prompt" in params and "image" not in params:
        return "text_to_image"
    if "prompt" not in params and "batch_size" in params:
        return "unconditional"
    return None


def read_upscale_factor(pipe: Any) -> int:
    """How much larger an upscaler's output is than its input."""
    cls = type(pipe).__name__
    if cls in _UPSCALE_FACTORS:
        return _UPSCALE_FACTORS[cls]
    factor = getattr(pipe, "vae_scale_factor", None)
    if not isinstance(factor, int) or factor < 2:
        raise ConfigurationError(
            f"cannot tell how much {cls} upscales", hint="pass upscale_factor= to DiffusersGenerator"
        )
    return factor


def call_params(pipe: Any) -> set[str]:
    """The argument names ``pipe.__call__`` takes."""
    return set(inspect.signature(pipe.__call__).parameters)


def call_default(pipe: Any, name: str) -> Any:
    """The default of ``pipe.__call__``'s argument ``name`` (what the pipeline uses when it is not passed)."""
    param = inspect.signature(pipe.__call__).parameters.get(name)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def accepted(pipe: Any, wanted: dict[str, Any], *, asked: Sequence[str]) -> dict[str, Any]:
    """``wanted`` without ``None`` values, refusing any argument ``pipe`` does not take.

    Args:
        asked: Names the caller asked for explicitly: a missing one is an error; others are dropped.

    Raises:
        ConfigurationError: An explicitly asked argument has no meaning for this pipeline.
    """
    params = inspect.signature(pipe.__call__).parameters
    out = {}
    for key, value in wanted.items():
        if value is None:
            continue
        if key in params:
            out[key] = value
        elif key in asked:
            raise ConfigurationError(
                f"{type(pipe).__name__} takes no {key!r}",
                hint=f"leave it unset for this pipeline; it takes {sorted(params)}",
            )
    return out


@dataclass
class Item:
    """One image to generate: its prompt, source (if any) and seed."""

    prompt: str | None
    source: Image.Image | None
    seed: int


def run_batched(
    pipe: Any,
    items: list[Item],
    common: dict[str, Any],
    *,
    max_batch: int,
    make_generator: Callable[[int], Any],
) -> list[Image.Image]:
    """Generate one image per item, ``max_batch`` at a time, each from its own seeded generator.

    A generator per image makes each output depend on its own seed only, whatever the batch it ran in.
    Items with sources of different sizes run in separate calls (a batch shares one size).
    """
    out: list[Image.Image | None] = [None] * len(items)
    groups: dict[tuple[int, int] | None, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(item.source.size if item.source is not None else None, []).append(index)
    for indices in groups.values():
        for start in range(0, len(indices), max_batch):
            chunk = indices[start : start + max_batch]
            kwargs = dict(common, generator=[make_generator(items[i].seed) for i in chunk], output_type="pil")
            prompts = [items[i].prompt for i in chunk]
            if prompts[0] is not None:
                kwargs["prompt"] = prompts
                negative = kwargs.pop("negative_prompt", None)
                if negative is not None:
                    kwargs["negative_prompt"] = [negative] * len(chunk)
            else:
                kwargs["batch_size"] = len(chunk)
            if items[chunk[0]].source is not None:
                kwargs["image"] = [items[i].source for i in chunk]
            try:
                images = pipe(**kwargs).images
            except ValueError as exc:  # diffusers' own check of sizes, steps and strengths
                raise ConfigurationError(f"{type(pipe).__name__} refused the call: {exc}") from None
            for i, img in zip(chunk, images, strict=True):
                out[i] = img
    return [img for img in out if img is not None]
