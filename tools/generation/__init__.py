"""Generation tools: the protocol, and the classical default that needs no model."""

from okaflow.tools.generation._classical import GENERATION_TASKS, GENERATIVE_TASKS, ClassicalGenerator
from okaflow.tools.generation._protocol import GenerationRequest, GenerationResult, GenerationTool
from okaflow.tools.generation._replay import GENERATION_CALLS, RecordingGenerator, ReplayGenerator

__all__ = [
    "GENERATION_CALLS",
    "GENERATION_TASKS",
    "GENERATIVE_TASKS",
    "ClassicalGenerator",
    "GenerationRequest",
    "GenerationResult",
    "GenerationTool",
    "RecordingGenerator",
    "ReplayGenerator",
]
