"""The classical generation default: honest image operations that need no model.

* ``window`` — renderings of a source image under named display windows (CT presets);
* ``super_resolution`` — Lanczos (or bicubic) upscaling (interpolation, not new detail — the label says
  DERIVED); with ``reference`` (a ground-truth image id) the baseline's PSNR/SSIM is recorded;
* ``comparison`` — a side-by-side of a prior and a current image under the same window;
* ``montage`` — evenly spaced frames of a multi-frame image (cine, multi-slice) on one sheet.

Generative tasks (text-to-image, virtual staining, modality translation, counterfactuals) have no
classical analogue: they return a result with ``unavailable`` set rather than an imitation.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from okaflow._constants import DERIVED_LABEL, GENERATION_MAX_SIDE
from okaflow._errors import ConfigurationError, GenerationSizeError
from okaflow.tools.generation._metrics import score_against_reference
from okaflow.tools.generation._protocol import GenerationRequest, GenerationResult
from okaflow.tools.generation._tasks import (
    Comparison,
    Montage,
    SuperResolution,
    TaskRequest,
    Window,
    as_request,
    parse_task,
)
from okaflow.tools.imaging import (
    CT_WINDOW_PRESETS,
    MedicalImage,
    SizePolicy,
    fit_to_policy,
    render_frame,
    render_montage,
)
from okaflow.tools.reporting import stamp_label

__all__ = ["GENERATION_TASKS", "GENERATIVE_TASKS", "ClassicalGenerator"]

GENERATIVE_TASKS = frozenset(
    {"text_to_image", "virtual_staining", "modality_translation", "counterfactual", "reconstruction"}
)
_CLASSICAL_TASKS = frozenset({"window", "super_resolution", "comparison", "montage"})
# Every task a visual request can name, classical first.
GENERATION_TASKS: tuple[str, ...] = ("window", "super_resolution", "comparison", "montage", *sorted(GENERATIVE_TASKS))


class ClassicalGenerator:
    """Windowed renderings, Lanczos super-resolution and comparisons; labelled DERIVED."""

    name = "classical"
    model_id = None
    rebuild_spec: dict[str, Any] = {"kind": "classical"}  # noqa: RUF012 (read only)

    def supports(self, task: str) -> bool:
        return task in _CLASSICAL_TASKS or task in GENERATIVE_TASKS

    def generate(
        self, request: GenerationRequest | TaskRequest, images: Mapping[str, MedicalImage]
    ) -> GenerationResult:
        started = time.perf_counter()
        request = as_request(request)
        missing = [s for s in request.sources if s not in images]
        if missing:
            raise ConfigurationError(
                f"generation task {request.task!r} names unknown source images {missing}",
                hint=f"use ids from the case: {sorted(images)}",
            )
        sources = [images[s] for s in request.sources]
        if request.task in GENERATIVE_TASKS:
            return self._result(
                request,
                [],
                [],
                {},
                started,
                unavailable=f"{request.task!r} needs a generative model; none is configured",
            )
        # Typed first: parameters a model got wrong ("scale": "four") are a refusal, not a crash.
        typed = parse_task(request) if request.task in _CLASSICAL_TASKS else None
        if isinstance(typed, Window):
            out, captions, used = _windows(sources, typed)
        elif isinstance(typed, SuperResolution):
            out, captions, used = _super_resolution(sources, typed)
            if typed.reference is not None:  # the baseline's score, before the label covers any pixel
                used["metrics"], notes = score_against_reference(out, typed.reference, images)
                captions = [f"{caption}; {note}" for caption, note in zip(captions, notes, strict=True)]
        elif isinstance(typed, Comparison):
            out, captions, used = _comparison(sources, typed)
        elif isinstance(typed, Montage):
            out, captions, used = _montage(sources, typed)
        else:
            raise ConfigurationError(
                f"the classical generator has no task {request.task!r}",
                hint=f"choose one of {sorted(_CLASSICAL_TASKS | GENERATIVE_TASKS)}",
            )
        return self._result(request, [stamp_label(i, DERIVED_LABEL) for i in out], captions, used, started)

    def _result(
        self,
        request: GenerationRequest,
        out: list[Image.Image],
        captions: list[str],
        used: dict[str, Any],
        started: float,
        *,
        unavailable: str | None = None,
    ) -> GenerationResult:
        return GenerationResult(
            task=request.task,
            images=out,
            captions=captions,
            label=DERIVED_LABEL,
            backend=self.name,
            model_id=None,
            ai_generated=False,
            derived_from=list(request.sources),
            params_used=used,
            seed=None,
            elapsed_s=round(time.perf_counter() - started, 6),
            unavailable=unavailable,
        )


def _windows(sources: list[MedicalImage], typed: Window) -> tuple[list[Image.Image], list[str], dict[str, Any]]:
    names = list(typed.windows or ["lung", "mediastinum", "bone"])
    unknown = [n for n in names if n not in CT_WINDOW_PRESETS]
    if unknown:
        raise ConfigurationError(f"unknown window presets {unknown}", hint=f"choose from {sorted(CT_WINDOW_PRESETS)}")
    out, captions = [], []
    for img in sources:
        for n in names:
            w = CT_WINDOW_PRESETS[n]
            # Shown at the size the model sees the source, so a 128 px slice is not a thumbnail.
            out.append(fit_to_policy(render_frame(img, frame="middle", window=w), SizePolicy(pad_to_min=False)))
            captions.append(f"{img.id} in the {n} window (centre {w.center:g}, width {w.width:g} HU)")
    return out, captions, {"windows": names}


_RESAMPLING = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC}


def _super_resolution(
    sources: list[MedicalImage], typed: SuperResolution
) -> tuple[list[Image.Image], list[str], dict[str, Any]]:
    scale, method = typed.scale or 2, typed.method or "lanczos"
    bases = [render_frame(img, frame="middle") for img in sources]
    for img, base in zip(sources, bases, strict=True):
        size = (base.width * scale, base.height * scale)
        if max(size) > GENERATION_MAX_SIDE:  # refused like a model's would be, not quietly scaled less
            largest = GENERATION_MAX_SIDE // max(base.size)
            advice = (
                f"ask for scale {largest} or less"
                if largest >= 2
                else f"an image over {GENERATION_MAX_SIDE // 2} px a side is not upscaled: view it as it is"
            )
            raise GenerationSizeError(
                f"{img.id} ({base.width}×{base.height} px) upscaled {scale}× would be {size[0]}×{size[1]} px, "
                f"over {GENERATION_MAX_SIDE} px a side: {advice}",
                size=size,
                max_side=GENERATION_MAX_SIDE,
                multiple=1,
                hint=advice,
            )
    out, captions = [], []
    for img, base in zip(sources, bases, strict=True):
        size = (base.width * scale, base.height * scale)
        out.append(base.resize(size, _RESAMPLING[method]))
        captions.append(
            f"{img.id} upscaled {scale}× by {method.capitalize()} interpolation "
            f"({base.width}×{base.height} → {size[0]}×{size[1]} px)"
        )
    return out, captions, {"scale": scale, "method": method}


def _comparison(sources: list[MedicalImage], typed: Comparison) -> tuple[list[Image.Image], list[str], dict[str, Any]]:
    if len(sources) != 2:
        raise ConfigurationError("a comparison needs exactly two source images: prior then current")
    prior, current = sources
    window = typed.window
    if window is not None and window not in CT_WINDOW_PRESETS:
        raise ConfigurationError(f"unknown window preset {window!r}", hint=f"choose from {sorted(CT_WINDOW_PRESETS)}")
    win = CT_WINDOW_PRESETS[window] if window else None
    tiles = [render_frame(i, frame="middle", window=win).convert("RGB") for i in (prior, current)]
    height = max(t.height for t in tiles)
    tiles = [t.resize((max(1, t.width * height // t.height), height), Image.Resampling.LANCZOS) for t in tiles]
    gap, caption_h = 8, 22
    canvas = Image.new("RGB", (sum(t.width for t in tiles) + gap, height + caption_h), "black")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=14)
    x = 0
    for tag, img, tile in (("PRIOR", prior, tiles[0]), ("CURRENT", current, tiles[1])):
        canvas.paste(tile, (x, caption_h))
        draw.text((x + 4, 3), f"{tag} {img.study_date or ''}".strip(), fill="white", font=font)
        x += tile.width + gap
    caption = f"Prior {prior.id} beside current {current.id}, same display window"
    return [canvas], [caption], {"window": window}


def _montage(sources: list[MedicalImage], typed: Montage) -> tuple[list[Image.Image], list[str], dict[str, Any]]:
    max_frames = typed.max_frames or 16
    out = [render_montage(img, max_frames=max_frames) for img in sources]
    captions = [f"{img.id}: {min(img.frames, max_frames)} of {img.frames} frames, evenly spaced" for img in sources]
    return out, captions, {"max_frames": max_frames}
