"""The generation-tool protocol: a task over source images in, labelled images out.

Every output image is labelled in its pixels: ``AI-GENERATED — NOT FOR DIAGNOSIS`` when a generative
model made it, ``DERIVED — NOT FOR DIAGNOSIS`` when a classical operation did. The result records the
backend, model, seed, parameters actually used and the evidence ids of its sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from okaflow._errors import ConfigurationError
from okaflow.tools.imaging import MedicalImage

__all__ = [
    "GenerationRequest",
    "GenerationResult",
    "GenerationTool",
    "require_synchronous",
]


class GenerationRequest(BaseModel):
    """``sources`` are image evidence ids (``Image/...``); ``params`` are task-specific."""

    model_config = ConfigDict(frozen=True)
    task: str
    sources: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    prompt: str | None = None
    seed: int | None = None


@dataclass
class GenerationResult:
    """What a generation call produced. ``images`` are already labelled in their pixels.

    ``unavailable`` is set (and ``images`` empty) when the backend has no honest way to do the task,
    e.g. virtual staining without a generative model. ``text`` is what the model said with its images
    (a counterfactual's explanation), when the backend gives text at all.
    """

    task: str
    images: list[Image.Image]
    captions: list[str]
    label: str
    backend: str
    model_id: str | None
    ai_generated: bool
    derived_from: list[str]
    params_used: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    elapsed_s: float = 0.0
    unavailable: str | None = None
    text: str | None = None


@runtime_checkable
class GenerationTool(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def model_id(self) -> str | None: ...

    def supports(self, task: str) -> bool: ...

    def generate(self, request: GenerationRequest, images: Mapping[str, MedicalImage]) -> GenerationResult: ...


def require_synchronous(generator: object) -> None:
    """Refuse a generation tool that can only be awaited: the agent's generate step calls ``generate``
    (in a worker thread under :func:`okaflow.arun`), so an async-only tool would refuse every request.

    Raises:
        ConfigurationError: ``generator``, or a generator it chains, is async-only.
    """
    members = getattr(generator, "generators", None)
    if members:  # a chain: each generator it holds
        for member in members:
            require_synchronous(member)
    elif getattr(generator, "synchronous", True) is False:
        raise ConfigurationError(
            f"{type(generator).__name__} can only be awaited, and the agent calls generate() synchronously",
            hint="give the agent ImageEndpointGenerator (arun runs the generate step in a worker thread)",
        )
