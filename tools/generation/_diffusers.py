"""The in-process generator: a local diffusers pipeline, loaded once, seeded, every output labelled.

Needs ``pip install 'okaflow[generation]'``. Each task goes to the pipeline kind that can do it:

==========================  =======================================================================
task                        pipeline kinds, in order of preference
==========================  =======================================================================
``text_to_image``           text-to-image (prompt), unconditional (DDPM/DDIM: no prompt)
``super_resolution``        upscaler (SD x4 upscaler, LDM super-resolution, latent upscaler)
staining, translation,      instruction edit (InstructPix2Pix), img2img (derived from a text-to-image
counterfactual,             pipeline with ``AutoPipelineForImage2Image.from_pipe``: no second copy of
reconstruction              the weights)
==========================  =======================================================================

Any other pairing raises :class:`~okaflow.GenerationTaskError`.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from okaflow._constants import GENERATION_MAX_BATCH, SYNTHETIC_LABEL
from okaflow._errors import ConfigurationError, GenerationTaskError, MissingExtraError
from okaflow.tools.generation._limits import UNIMEDVL_LIMITS, GenerationLimits, fit_sources
from okaflow.tools.generation._metrics import score_against_reference
from okaflow.tools.generation._pipelines import (
    IMAGE_TASKS,
    Item,
    accepted,
    call_default,
    call_params,
    pipeline_route,
    read_upscale_factor,
    run_batched,
)
from okaflow.tools.generation._protocol import GenerationRequest, GenerationResult
from okaflow.tools.generation._tasks import (
    MODALITY_PHRASES,
    ImageToImageRequest,
    SuperResolution,
    TaskRequest,
    TextToImage,
    as_request,
    parse_task,
    refuse_interpolation,
)
from okaflow.tools.imaging import MedicalImage
from okaflow.tools.reporting import stamp_label

__all__ = ["DiffusersGenerator"]

_DTYPES = ("float32", "float16", "bfloat16")
_TITLES = {
    "virtual_staining": "Virtual staining",
    "modality_translation": "Modality translation",
    "counterfactual": "Counterfactual",
    "reconstruction": "Answer-conditioned reconstruction",
}


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise MissingExtraError("generation", feature="the diffusers generator", missing=module) from None


class DiffusersGenerator:
    """Generation with a local diffusers pipeline folder (``save_pretrained`` output), in this process.

    Args:
        pipeline: The pipeline folder (``model_index.json`` and its components); nothing is downloaded.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` … — never guessed.
        dtype: ``"float32"`` (CPU), ``"bfloat16"`` or ``"float16"`` (GPU; float16 is refused on CPU).
        model_name: The model id recorded in every result; default: the folder name.
        limits: Sizes the model can generate; default UniMedVL's (≤ 1024 px a side, multiples of 16).
            Pass the pipeline's real limits for another model.
        attention_slicing: Compute attention in slices (less memory, a little slower).
        cpu_offload: Keep components on the CPU and move each to ``device`` while it runs (accelerate's
            model offload; for GPUs with little memory).
        steps: Default denoising steps when a request sets none (default: the pipeline's own).
        guidance: Default guidance scale when a request sets none (default: the pipeline's own).
        max_batch: Most images per pipeline call; larger requests are split.
        modality: What an unconditional pipeline was trained to generate (a text-to-image request for
            another modality is then refused).
        upscale_factor: An upscaler's factor, when okaflow cannot read it from the pipeline.

    Raises:
        ConfigurationError: The folder is not a pipeline, the dtype is unknown or unfit for the device,
            or the pipeline is of a kind okaflow does not drive.
        MissingExtraError: torch or diffusers is not installed.
    """

    name = "diffusers"

    def __init__(
        self,
        pipeline: str | Path,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        model_name: str | None = None,
        limits: GenerationLimits | None = UNIMEDVL_LIMITS,
        attention_slicing: bool = False,
        cpu_offload: bool = False,
        steps: int | None = None,
        guidance: float | None = None,
        max_batch: int = GENERATION_MAX_BATCH,
        modality: str | None = None,
        upscale_factor: int | None = None,
    ) -> None:
        path = Path(pipeline)
        if not (path / "model_index.json").is_file():
            raise ConfigurationError(
                f"{path} is not a diffusers pipeline folder (no model_index.json)",
                hint="pass the folder that DiffusionPipeline.save_pretrained() wrote",
            )
        if dtype not in _DTYPES:
            raise ConfigurationError(f"dtype must be one of {_DTYPES}, not {dtype!r}")
        if device == "cpu" and dtype == "float16":
            raise ConfigurationError("float16 is not supported on the CPU", hint="use dtype='float32' on the CPU")
        if cpu_offload and device == "cpu":
            raise ConfigurationError("cpu_offload needs an accelerator device", hint="pass device='cuda'")
        if max_batch < 1:
            raise ConfigurationError(f"max_batch must be 1 or more, not {max_batch}")
        self._torch = _require("torch")
        diffusers = _require("diffusers")
        self.path = path
        self.device = device
        self.dtype = dtype
        self.limits = limits
        self.steps = steps
        self.guidance = guidance
        self.max_batch = max_batch
        self.modality = modality
        self._name = model_name or path.name
        self._lock = threading.Lock()
        self._spec: dict[str, Any] = {
            "kind": "diffusers",
            "pipeline": str(path.resolve()),
            "device": device,
            "dtype": dtype,
            "model_name": model_name,
            "attention_slicing": attention_slicing,
            "cpu_offload": cpu_offload,
            "steps": steps,
            "guidance": guidance,
            "max_batch": max_batch,
            "modality": modality,
            "upscale_factor": upscale_factor,
        }
        pipe = diffusers.DiffusionPipeline.from_pretrained(
            path, dtype=getattr(self._torch, dtype), local_files_only=True
        )
        if cpu_offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        if attention_slicing:
            pipe.enable_attention_slicing()
        route = pipeline_route(pipe)
        if route is None:
            raise ConfigurationError(
                f"{path} holds a {type(pipe).__name__}, which okaflow does not drive",
                hint="use a text-to-image, img2img, instruction-edit, upscaler or unconditional pipeline",
            )
        self.pipeline_class = type(pipe).__name__
        self._pipes: dict[str, Any] = {route: pipe}
        if route == "text_to_image":
            # The same components as an img2img pipeline: no second copy of the weights.
            with contextlib.suppress(ValueError):
                self._pipes["image_to_image"] = diffusers.AutoPipelineForImage2Image.from_pipe(pipe)
        for each in self._pipes.values():
            each.set_progress_bar_config(disable=True)
        self._factor = upscale_factor or (read_upscale_factor(pipe) if route == "upscaler" else None)

    @property
    def model_id(self) -> str:
        return self._name

    @property
    def rebuild_spec(self) -> dict[str, Any] | None:
        """How a run records this generator so resume and rerun can load it again (None: size limits are
        custom and cannot be recorded)."""
        return self._spec if self.limits is UNIMEDVL_LIMITS else None

    @property
    def pipeline(self) -> Any:
        """The loaded diffusers pipeline (for direct calls; okaflow's own calls go through :meth:`generate`)."""
        return next(iter(self._pipes.values()))

    @property
    def routes(self) -> list[str]:
        """The pipeline kinds this generator has (``text_to_image``, ``image_to_image``, ``upscaler`` …)."""
        return sorted(self._pipes)

    def __repr__(self) -> str:
        return f"DiffusersGenerator({str(self.path)!r}, device={self.device!r}, dtype={self.dtype!r})"

    def supports(self, task: str) -> bool:
        return self._route(task) is not None

    def _route(self, task: str) -> str | None:
        if task == "text_to_image":
            preferred: tuple[str, ...] = ("text_to_image", "unconditional")
        elif task == "super_resolution":
            preferred = ("upscaler",)
        elif task in IMAGE_TASKS:
            preferred = ("instruction_edit", "image_to_image")
        else:
            return None
        return next((r for r in preferred if r in self._pipes), None)

    def generate(
        self, request: GenerationRequest | TaskRequest, images: Mapping[str, MedicalImage]
    ) -> GenerationResult:
        """Run one request through the pipeline that can do it.

        Raises:
            GenerationTaskError: No loaded pipeline can do the task.
            GenerationSizeError: The requested (or implied) size breaks ``limits``.
            ConfigurationError: Unknown sources, parameters the pipeline does not take, or a bad request.
        """
        started = time.perf_counter()
        typed = parse_task(as_request(request))
        route = self._route(typed.task)
        supported = [t for t in ("text_to_image", "super_resolution", *sorted(IMAGE_TASKS)) if self.supports(t)]
        if route is None:
            raise GenerationTaskError(
                f"{self.pipeline_class} ({self._name}) cannot do {typed.task!r}",
                task=typed.task,
                backend=self.name,
                supported=supported,
            )
        if typed.bagel is not None:
            raise ConfigurationError("BAGEL knobs apply to an image endpoint, not to a diffusers pipeline")
        refuse_interpolation(typed, backend=self.name, supported=supported)
        missing = [s for s in typed.sources if s not in images]
        if missing:
            raise ConfigurationError(
                f"generation task {typed.task!r} names unknown source images {missing}",
                hint=f"use ids from the case: {sorted(images)}",
            )
        seed = typed.seed if typed.seed is not None else secrets.randbelow(2**31)
        pipe = self._pipes[route]
        with self._lock:
            if isinstance(typed, TextToImage):
                out, captions, used = self._text_to_image(pipe, route, typed, seed)
            elif isinstance(typed, SuperResolution):
                out, captions, used = self._super_resolution(pipe, typed, images, seed)
            else:
                assert isinstance(typed, ImageToImageRequest)
                out, captions, used = self._image_to_image(pipe, route, typed, images, seed)
        used = {"pipeline": type(pipe).__name__, "device": self.device, "dtype": self.dtype, **used}
        reference = getattr(typed, "reference", None)
        if reference is not None:  # scored before the label covers any pixel
            used["metrics"], notes = score_against_reference(out, reference, images)
            captions = [f"{caption}; {note}" for caption, note in zip(captions, notes, strict=True)]
        return GenerationResult(
            task=typed.task,
            images=[stamp_label(img, SYNTHETIC_LABEL) for img in out],
            captions=captions,
            label=SYNTHETIC_LABEL,
            backend=self.name,
            model_id=self._name,
            ai_generated=True,
            derived_from=list(typed.sources),
            params_used=used,
            seed=seed,
            elapsed_s=round(time.perf_counter() - started, 6),
        )

    def _common(self, pipe: Any, typed: TaskRequest, extra: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Pipeline arguments shared by every image of the request, and what was used (defaults resolved)."""
        wanted = {
            "num_inference_steps": typed.steps or self.steps,
            "guidance_scale": typed.guidance if typed.guidance is not None else self.guidance,
            "negative_prompt": typed.negative_prompt,
            **extra,
        }
        # Asked explicitly: a pipeline that cannot take it refuses (guidance 0.0 is asked too, not dropped).
        asked = [
            k
            for k, v in {
                "guidance_scale": typed.guidance is not None,
                "negative_prompt": bool(typed.negative_prompt),
            }.items()
            if v
        ]
        asked += [k for k, v in extra.items() if v is not None]
        kwargs = accepted(pipe, wanted, asked=asked)
        used = {k: kwargs.get(k, call_default(pipe, k)) for k in ("num_inference_steps", "guidance_scale", *extra)}
        used = {k: v for k, v in used.items() if v is not None}
        if typed.negative_prompt:
            used["negative_prompt"] = typed.negative_prompt
        renamed = {
            "num_inference_steps": "steps",
            "guidance_scale": "guidance",
            "image_guidance_scale": "image_guidance",
        }
        return kwargs, {renamed.get(k, k): v for k, v in used.items()}

    def _generator(self, seed: int) -> Any:
        # CPU generators make a seed mean the same image on any device (diffusers' advice for reproducibility).
        return self._torch.Generator("cpu").manual_seed(seed)

    def _text_to_image(
        self, pipe: Any, route: str, typed: TextToImage, seed: int
    ) -> tuple[list[Image.Image], list[str], dict[str, Any]]:
        prompt = typed.composed_prompt()
        phrase = MODALITY_PHRASES.get(typed.modality, typed.modality.value)
        if route == "unconditional":
            if prompt is not None:
                raise ConfigurationError(
                    f"{self.pipeline_class} is unconditional: it cannot follow a prompt", hint="leave prompt unset"
                )
            if self.modality is not None and typed.modality != self.modality:
                raise GenerationTaskError(
                    f"{self._name} generates {self.modality} images only, not {typed.modality}",
                    task=typed.task,
                    backend=self.name,
                    supported=["text_to_image"],
                )
            side = _sample_size(pipe)
            size = (side, side)
            if (typed.width, typed.height) not in ((None, None), size):
                raise ConfigurationError(f"{self.pipeline_class} generates {side}×{side} images only")
        else:
            if prompt is None:
                raise ConfigurationError(f"text-to-image with {self.pipeline_class} needs a prompt")
            size = typed.requested_size() or _default_size(pipe)
        if self.limits is not None:
            self.limits.check(size, what="the requested text-to-image size")
        kwargs, used = self._common(
            pipe, typed, {} if route == "unconditional" else {"width": size[0], "height": size[1]}
        )
        n = typed.num_images or 1
        items = [Item(prompt, None, seed + i) for i in range(n)]
        out = run_batched(pipe, items, kwargs, max_batch=self.max_batch, make_generator=self._generator)
        what = f"unconditional sample of {self._name}" if prompt is None else f"from the prompt {prompt!r}"
        captions = [
            f"Synthetic {phrase} {what} ({self.pipeline_class}, seed {item.seed}, {img.width}×{img.height} px)"
            for item, img in zip(items, out, strict=True)
        ]
        used.update(
            prompt=prompt, modality=typed.modality.value, size=list(size), num_images=n, seeds=[i.seed for i in items]
        )
        used = {k: v for k, v in used.items() if k not in ("width", "height")}  # said once, as size
        return out, captions, used

    def _sources(
        self, typed: TaskRequest, images: Mapping[str, MedicalImage], factor: int
    ) -> list[tuple[str, Image.Image, Image.Image]]:
        """Each source as (id, rendered 8-bit RGB, fitted onto the generation grid)."""
        if not typed.sources:
            raise ConfigurationError(f"{typed.task} needs at least one source image")
        return [(f.id, f.shown, f.fitted) for f in fit_sources(typed.sources, images, self.limits, factor=factor)]

    def _super_resolution(
        self, pipe: Any, typed: SuperResolution, images: Mapping[str, MedicalImage], seed: int
    ) -> tuple[list[Image.Image], list[str], dict[str, Any]]:
        factor = int(self._factor or 1)
        if typed.scale is not None and typed.scale != factor:
            raise ConfigurationError(
                f"{self.pipeline_class} upscales {factor}×, not {typed.scale}×", hint=f"ask for scale={factor} or none"
            )
        sources = self._sources(typed, images, factor)
        prompt = typed.composed_prompt() if "prompt" in call_params(pipe) else None
        kwargs, used = self._common(pipe, typed, {})
        n = typed.num_images or 1
        items = [
            Item(prompt, fitted, seed + k) for k, (_, _, fitted) in enumerate(s for s in sources for _ in range(n))
        ]
        out = run_batched(pipe, items, kwargs, max_batch=self.max_batch, make_generator=self._generator)
        owners = [s for s in sources for _ in range(n)]
        captions = [
            f"{sid} upscaled {factor}× by {self._name} ({self.pipeline_class}, seed {item.seed}; "
            f"{fitted.width}×{fitted.height} → {img.width}×{img.height} px): generated detail, not measured"
            for (sid, _, fitted), item, img in zip(owners, items, out, strict=True)
        ]
        used.update(
            scale=factor,
            prompt=prompt,
            source_sizes=[list(shown.size) for _, shown, _ in sources],
            input_sizes=[list(fitted.size) for _, _, fitted in sources],
            num_images=n,
            seeds=[i.seed for i in items],
        )
        return out, captions, used

    def _image_to_image(
        self, pipe: Any, route: str, typed: ImageToImageRequest, images: Mapping[str, MedicalImage], seed: int
    ) -> tuple[list[Image.Image], list[str], dict[str, Any]]:
        sources = self._sources(typed, images, 1)
        extra = {"strength": typed.strength, "image_guidance_scale": typed.image_guidance}
        kwargs, used = self._common(pipe, typed, extra)
        prompt = typed.composed_prompt()
        n = typed.num_images or 1
        owners = [s for s in sources for _ in range(n)]
        items = [Item(prompt, fitted, seed + k) for k, (_, _, fitted) in enumerate(owners)]
        out = run_batched(pipe, items, kwargs, max_batch=self.max_batch, make_generator=self._generator)
        note = "; this pipeline gives no explanation" if typed.task == "counterfactual" else ""
        captions = [
            f"{_TITLES[typed.task]} of {sid}: {prompt!r} by {self._name} "
            f"({type(pipe).__name__}, seed {item.seed}){note}"
            for (sid, _, _), item in zip(owners, items, strict=True)
        ]
        used.update(
            prompt=prompt,
            route=route,
            source_sizes=[list(shown.size) for _, shown, _ in sources],
            size_per_source=[list(fitted.size) for _, _, fitted in sources],
            num_images=n,
            seeds=[i.seed for i in items],
        )
        return out, captions, used


def _default_size(pipe: Any) -> tuple[int, int]:
    """The pixel size a latent pipeline generates when none is asked: its sample size times the VAE's scale."""
    side = _sample_size(pipe) * int(getattr(pipe, "vae_scale_factor", 8))
    return side, side


def _sample_size(pipe: Any) -> int:
    """The denoiser's native sample size (latent side for latent pipelines, pixel side for DDPM): a UNet's or
    a transformer's config (SD3, PixArt, Flux), else the pipeline's ``default_sample_size``."""
    for part in ("unet", "transformer"):
        size = getattr(getattr(getattr(pipe, part, None), "config", None), "sample_size", None)
        if size:
            return int(size)
    size = getattr(pipe, "default_sample_size", None)
    if size:
        return int(size)
    raise ConfigurationError(
        f"{type(pipe).__name__} does not say the size it generates", hint="pass width= and height= with the request"
    )
