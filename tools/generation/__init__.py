"""Generation tools: the protocol and typed task requests, the classical default that needs no model, the
in-process diffusers generator, an OpenAI-style image-endpoint client, and image-quality metrics.

``DiffusersGenerator`` needs ``okaflow[generation]`` and loads torch/diffusers only when constructed.
"""

from okaflow.tools.generation._chain import GeneratorChain
from okaflow.tools.generation._classical import GENERATION_TASKS, GENERATIVE_TASKS, ClassicalGenerator
from okaflow.tools.generation._diffusers import DiffusersGenerator
from okaflow.tools.generation._endpoint_client import AsyncImageEndpointGenerator, ImageEndpointGenerator
from okaflow.tools.generation._limits import UNIMEDVL_LIMITS, GenerationLimits
from okaflow.tools.generation._metrics import (
    ImageScore,
    frechet_distance,
    frechet_inception_distance,
    score_against_reference,
    score_image,
)
from okaflow.tools.generation._protocol import (
    GenerationRequest,
    GenerationResult,
    GenerationTool,
    require_synchronous,
)
from okaflow.tools.generation._replay import GENERATION_CALLS, RecordingGenerator, ReplayGenerator
from okaflow.tools.generation._tasks import (
    MODALITY_PHRASES,
    TASK_TYPES,
    BagelKnobs,
    Comparison,
    Counterfactual,
    ImageToImageRequest,
    ModalityTranslation,
    Montage,
    Reconstruction,
    SuperResolution,
    TaskRequest,
    TextToImage,
    VirtualStaining,
    Window,
    as_request,
    parse_task,
)

__all__ = [
    "GENERATION_CALLS",
    "GENERATION_TASKS",
    "GENERATIVE_TASKS",
    "MODALITY_PHRASES",
    "TASK_TYPES",
    "UNIMEDVL_LIMITS",
    "AsyncImageEndpointGenerator",
    "BagelKnobs",
    "ClassicalGenerator",
    "Comparison",
    "Counterfactual",
    "DiffusersGenerator",
    "GenerationLimits",
    "GenerationRequest",
    "GenerationResult",
    "GenerationTool",
    "GeneratorChain",
    "ImageEndpointGenerator",
    "ImageScore",
    "ImageToImageRequest",
    "ModalityTranslation",
    "Montage",
    "Reconstruction",
    "RecordingGenerator",
    "ReplayGenerator",
    "SuperResolution",
    "TaskRequest",
    "TextToImage",
    "VirtualStaining",
    "Window",
    "as_request",
    "frechet_distance",
    "frechet_inception_distance",
    "parse_task",
    "require_synchronous",
    "score_against_reference",
    "score_image",
]
