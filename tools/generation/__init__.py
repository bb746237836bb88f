"""Generation tools: the protocol, and the classical default that needs no model."""

from okaflow.tools.generation._classical import GENERATIVE_TASKS, ClassicalGenerator
from okaflow.tools.generation._protocol import GenerationRequest, GenerationResult, GenerationTool

__all__ = [
    "GENERATIVE_TASKS",
    "ClassicalGenerator",
    "GenerationRequest",
    "GenerationResult",
    "GenerationTool",
]
