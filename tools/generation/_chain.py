"""Several generators as one: each task goes to the first that can do it.

``GeneratorChain(DiffusersGenerator(...), ClassicalGenerator())`` lets a model-backed generator do what
its pipeline can, while windows, montages and comparisons stay classical, and tasks nobody can do honestly
come back from the classical generator as ``unavailable`` instead of being imitated. Each result names
the generator that made it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from okaflow._errors import ConfigurationError, GenerationTaskError
from okaflow.tools.generation._protocol import GenerationRequest, GenerationResult, GenerationTool
from okaflow.tools.generation._tasks import TaskRequest, as_request
from okaflow.tools.imaging import MedicalImage

__all__ = ["GeneratorChain"]


class GeneratorChain:
    """Generators tried in order. ``name`` joins theirs with ``+``; ``model_id`` is the first one's that has
    one (the model-backed generator's).

    Args:
        generators: At least one generation tool, most capable first.
    """

    def __init__(self, *generators: GenerationTool) -> None:
        if not generators:
            raise ConfigurationError("GeneratorChain needs at least one generator")
        self.generators = generators

    @property
    def name(self) -> str:
        return "+".join(g.name for g in self.generators)

    @property
    def model_id(self) -> str | None:
        return next((g.model_id for g in self.generators if g.model_id), None)

    def supports(self, task: str) -> bool:
        return any(g.supports(task) for g in self.generators)

    def close(self) -> None:
        """Close the generators that hold connections (an image endpoint's HTTP client)."""
        for generator in self.generators:
            close = getattr(generator, "close", None)
            if callable(close):
                close()

    @property
    def rebuild_spec(self) -> dict[str, Any] | None:
        """Each generator's spec, in order (None if one of them has none)."""
        specs = [getattr(g, "rebuild_spec", None) for g in self.generators]
        return {"kind": "chain", "generators": specs} if all(specs) else None

    def generate(
        self, request: GenerationRequest | TaskRequest, images: Mapping[str, MedicalImage]
    ) -> GenerationResult:
        """The first generator that supports the task and does not refuse it as not its kind answers.

        Raises:
            GenerationTaskError: None of them can do it.
        """
        envelope = as_request(request)
        refused: GenerationTaskError | None = None
        for generator in self.generators:
            if generator.supports(envelope.task):
                try:
                    return generator.generate(envelope, images)
                except GenerationTaskError as exc:  # not this one's kind of request: the next may take it
                    refused = exc
        if refused is not None:
            raise refused
        raise GenerationTaskError(
            f"no generator in {self.name} can do {envelope.task!r}",
            task=envelope.task,
            backend=self.name,
            supported=[],
        )
