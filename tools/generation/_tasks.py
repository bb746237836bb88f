"""Typed requests for every generation task, and the envelope they travel in.

A :class:`~okaflow.tools.generation.GenerationRequest` is the one form a request is sent, recorded and
replayed in: ``task``, ``sources``, ``params``, ``prompt``, ``seed``. The classes here are typed views of
it, one per task, validated by pydantic::

    TextToImage(prompt="frontal chest X-ray, right lower lobe consolidation", modality="CXR", seed=3)
    SuperResolution(sources=["Image/mr-1"], scale=4)
    VirtualStaining(sources=["Image/he-1"], target_stain="HER2", expression_level="3+")
    ModalityTranslation(sources=["Image/t2"], source_domain="T2", target="FLAIR")
    Counterfactual(sources=["Image/cxr"], edit="this chest X-ray without the pneumonia")
    Reconstruction(sources=["Image/cxr"], question="Is there an effusion?", answer="Yes, on the left.")

``to_request()`` gives the envelope (fields left unset are left out, so a typed request and the same
request written by hand are the same record); :func:`parse_task` reads an envelope back into its typed
form, naming the field that does not fit.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from okaflow._errors import ConfigurationError, GenerationTaskError
from okaflow._types import Modality
from okaflow.tools.generation._protocol import GenerationRequest

__all__ = [
    "MODALITY_PHRASES",
    "TASK_TYPES",
    "BagelKnobs",
    "Comparison",
    "Counterfactual",
    "ImageToImageRequest",
    "ModalityTranslation",
    "Montage",
    "Reconstruction",
    "SuperResolution",
    "TaskRequest",
    "TextToImage",
    "VirtualStaining",
    "Window",
    "as_request",
    "parse_task",
    "refuse_interpolation",
]

# How each of UniMedVL's eight generation modalities is named in a prompt.
MODALITY_PHRASES: dict[Modality, str] = {
    Modality.CFP: "colour fundus photograph",
    Modality.CXR: "chest X-ray",
    Modality.CT: "CT slice",
    Modality.HIS: "histopathology image",
    Modality.MRI: "MRI slice",
    Modality.OCT: "optical coherence tomography B-scan",
    Modality.US: "ultrasound image",
    Modality.ENDOSCOPY: "endoscopy image",
}


class BagelKnobs(BaseModel):
    """BAGEL / UniMedVL sampling settings an image endpoint (vllm-omni) takes besides steps and guidance.

    ``guidance`` is sent as ``cfg_text_scale``, ``image_guidance`` as ``cfg_img_scale`` and ``steps`` as
    ``num_inference_steps``; these are the rest. ``None`` leaves a knob to the generator's defaults.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    cfg_interval: tuple[float, float] | None = Field(None, description="Guidance window, [0.4, 1] T2I, [0, 1] edit.")
    cfg_renorm_type: Literal["global", "channel", "text_channel"] | None = None
    cfg_renorm_min: float | None = Field(None, ge=0.0, le=1.0)
    timestep_shift: float | None = Field(None, gt=0.0, le=20.0)


class TaskRequest(BaseModel):
    """What every task takes. ``sources`` are image evidence ids; ``seed`` ``None`` lets the generator pick
    one (and record it); ``steps``/``guidance`` ``None`` use the generator's defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    task: ClassVar[str]

    sources: list[str] = Field(default_factory=list)
    prompt: str | None = Field(None, max_length=2000, description="Overrides the prompt okaflow composes.")
    negative_prompt: str | None = Field(None, max_length=2000)
    seed: int | None = Field(None, ge=0, lt=2**63)
    steps: int | None = Field(None, ge=1, le=1000)
    guidance: float | None = Field(None, ge=0.0, le=50.0)
    num_images: int | None = Field(None, ge=1, le=16, description="Images per source (per prompt when none).")
    bagel: BagelKnobs | None = None

    def to_request(self) -> GenerationRequest:
        """The envelope form (what generators take and runs record)."""
        params = self.model_dump(mode="json", exclude={"sources", "prompt", "seed"}, exclude_none=True)
        return GenerationRequest(
            task=self.task, sources=list(self.sources), params=params, prompt=self.prompt, seed=self.seed
        )

    @classmethod
    def from_request(cls, request: GenerationRequest) -> Self:
        """The typed form of an envelope for this task.

        Raises:
            ConfigurationError: The envelope is for another task, or a parameter does not fit (named).
        """
        if request.task != cls.task:
            raise ConfigurationError(f"a {request.task!r} request is not a {cls.task!r} request")
        clash = {"sources", "prompt", "seed"} & request.params.keys()
        if clash:
            raise ConfigurationError(
                f"{request.task} params may not set {sorted(clash)}", hint="set them on the request itself"
            )
        data = {**request.params, "sources": request.sources, "prompt": request.prompt, "seed": request.seed}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in exc.errors())
            raise ConfigurationError(
                f"{request.task} request does not fit: {problems}",
                hint=f"see okaflow.tools.generation.{cls.__name__} for the fields and their ranges",
            ) from None

    def composed_prompt(self) -> str | None:
        """The text prompt a model gets: ``prompt`` when given, else one composed from the typed fields."""
        return self.prompt


class TextToImage(TaskRequest):
    """A synthetic image of one of UniMedVL's eight modalities from text (no source image).

    An unconditional pipeline (DDPM) takes no prompt: leave ``prompt`` unset for it.
    """

    task: ClassVar[str] = "text_to_image"
    modality: Modality
    width: int | None = Field(None, ge=8, le=4096)
    height: int | None = Field(None, ge=8, le=4096)

    def requested_size(self) -> tuple[int, int] | None:
        """``(width, height)`` as asked, or ``None`` for the generator's own size.

        Raises:
            ConfigurationError: only one of the two is given (it is not squared behind the caller's back).
        """
        if self.width is None and self.height is None:
            return None
        if self.width is None or self.height is None:
            raise ConfigurationError(
                "a text-to-image request names its width and its height, or neither",
                hint="give both (e.g. width=512, height=512), or neither for the generator's own size",
            )
        return self.width, self.height

    def composed_prompt(self) -> str | None:
        if self.prompt is None:
            return None
        phrase = MODALITY_PHRASES.get(self.modality)
        # The modality is named in the prompt unless the prompt already says it.
        if phrase is None or phrase.lower() in self.prompt.lower():
            return self.prompt
        return f"{phrase}: {self.prompt}"


class SuperResolution(TaskRequest):
    """Each source upscaled by ``scale`` (``None``: the upscaler's own factor; MRI 4× in the paper)."""

    task: ClassVar[str] = "super_resolution"
    scale: int | None = Field(None, ge=2, le=8)
    method: Literal["lanczos", "bicubic"] | None = Field(None, description="Classical interpolation only.")
    reference: str | None = Field(None, max_length=200, description="A ground-truth image id: PSNR/SSIM recorded.")

    def composed_prompt(self) -> str | None:
        return self.prompt if self.prompt is not None else "high resolution medical image, sharp anatomical detail"


class ImageToImageRequest(TaskRequest):
    """Tasks that re-generate a source image: how far from it (``strength``) and how closely it is kept
    (``image_guidance``, for instruction-edit pipelines and BAGEL's ``cfg_img_scale``)."""

    strength: float | None = Field(None, gt=0.0, le=1.0, description="img2img: 1.0 ignores the source entirely.")
    image_guidance: float | None = Field(None, ge=0.0, le=20.0)
    reference: str | None = Field(None, max_length=200, description="A ground-truth image id: PSNR/SSIM recorded.")


class VirtualStaining(ImageToImageRequest):
    """H&E (``source_stain``) to a target stain such as IHC / HER2 / Ki-67, optionally at an expression level."""

    task: ClassVar[str] = "virtual_staining"
    target_stain: str = Field(min_length=1, max_length=64)
    expression_level: str | None = Field(None, max_length=64)
    source_stain: str = Field("H&E", min_length=1, max_length=64)

    def composed_prompt(self) -> str | None:
        if self.prompt is not None:
            return self.prompt
        level = f", {self.expression_level} expression" if self.expression_level else ""
        return f"virtual {self.target_stain} stain of this {self.source_stain} histopathology image{level}"


class ModalityTranslation(ImageToImageRequest):
    """One contrast or modality into another, e.g. MRI T2 → FLAIR."""

    task: ClassVar[str] = "modality_translation"
    target: str = Field(min_length=1, max_length=64)
    source_domain: str | None = Field(None, max_length=64)

    def composed_prompt(self) -> str | None:
        if self.prompt is not None:
            return self.prompt
        source = f" from {self.source_domain}" if self.source_domain else ""
        return f"translate this image{source} to {self.target}"


class Counterfactual(ImageToImageRequest):
    """The source as it would look under ``edit`` ("this chest X-ray without the pneumonia"), with the
    model's explanation where the backend gives one (``GenerationResult.text``)."""

    task: ClassVar[str] = "counterfactual"
    edit: str = Field(min_length=1, max_length=500)

    def composed_prompt(self) -> str | None:
        return self.prompt if self.prompt is not None else self.edit


class Reconstruction(ImageToImageRequest):
    """Re-generation of the source conditioned on a visual question and its answer (VQA, then reconstruct)."""

    task: ClassVar[str] = "reconstruction"
    question: str = Field(min_length=1, max_length=500)
    answer: str = Field(min_length=1, max_length=500)

    def composed_prompt(self) -> str | None:
        if self.prompt is not None:
            return self.prompt
        return f"reconstruct this image consistent with the answer. question: {self.question} answer: {self.answer}"


class Window(TaskRequest):
    """Classical: renderings under named CT display windows."""

    task: ClassVar[str] = "window"
    windows: list[str] | None = None


class Comparison(TaskRequest):
    """Classical: a prior and a current image side by side under one window."""

    task: ClassVar[str] = "comparison"
    window: str | None = None


class Montage(TaskRequest):
    """Classical: evenly spaced frames of a multi-frame image on one sheet."""

    task: ClassVar[str] = "montage"
    max_frames: int | None = Field(None, ge=1, le=64)


TASK_TYPES: dict[str, type[TaskRequest]] = {
    cls.task: cls
    for cls in (
        Window,
        SuperResolution,
        Comparison,
        Montage,
        TextToImage,
        VirtualStaining,
        ModalityTranslation,
        Counterfactual,
        Reconstruction,
    )
}


def parse_task(request: GenerationRequest) -> TaskRequest:
    """The typed form of ``request``.

    Raises:
        ConfigurationError: The task is unknown, or its parameters do not fit (the message names them).
    """
    cls = TASK_TYPES.get(request.task)
    if cls is None:
        raise ConfigurationError(f"no generation task {request.task!r}", hint=f"choose one of {sorted(TASK_TYPES)}")
    return cls.from_request(request)


def as_request(request: GenerationRequest | TaskRequest) -> GenerationRequest:
    """The envelope of a typed or envelope request."""
    return request.to_request() if isinstance(request, TaskRequest) else request


def refuse_interpolation(typed: TaskRequest, *, backend: str, supported: list[str]) -> None:
    """A model-backed generator's refusal of a super-resolution that names a classical ``method``: a
    :class:`GenerationTaskError`, on which a :class:`GeneratorChain` hands the request to the next generator.

    Raises:
        GenerationTaskError: ``typed`` asks for interpolation.
    """
    if isinstance(typed, SuperResolution) and typed.method is not None:
        raise GenerationTaskError(
            f"method={typed.method!r} is classical interpolation, which {backend} does not do",
            task=typed.task,
            backend=backend,
            supported=supported,
            hint="use the classical generator for it (a GeneratorChain with it falls through to it)",
        )
