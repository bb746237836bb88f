"""The understanding-backend protocol: messages + images (+ a JSON schema) in, a typed result out.

Every backend — a served VLM, an in-process model, a replay of recorded answers, or okaflow's
evidence-only analyst — implements :class:`UnderstandingBackend`. A request carries both the chat
messages a VLM reads and the structured evidence table, so a backend that does not read prose
(the evidence-only analyst) answers from the same request honestly.
"""

from __future__ import annotations

import base64
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from okaflow._errors import BackendSchemaError
from okaflow._types import Evidence, Provenance, content_hash

M = TypeVar("M", bound=BaseModel)

__all__ = [
    "ChatMessage",
    "ModelImage",
    "UnderstandRequest",
    "UnderstandResult",
    "UnderstandingBackend",
    "json_schema_for",
    "prompt_hash",
]


class ChatMessage(BaseModel):
    model_config = ConfigDict(frozen=True)
    role: Literal["system", "user", "assistant"]
    content: str


class ModelImage(BaseModel):
    """An image prepared for a model: PNG bytes already fitted to the backend's size policy."""

    model_config = ConfigDict(frozen=True)
    evidence_id: str
    png: bytes = Field(repr=False)
    width: int
    height: int

    def data_url(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


class UnderstandRequest(BaseModel):
    """One understanding call.

    ``purpose`` names what the call is for (``"analysis"``, ``"answer"``, …) so a backend and a
    recorded run can tell calls apart. ``response_schema`` is a JSON Schema the answer must satisfy.
    """

    model_config = ConfigDict(frozen=True)
    purpose: str
    messages: list[ChatMessage]
    images: list[ModelImage] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    response_schema: dict[str, Any] | None = None
    schema_name: str | None = None
    task: str | None = None
    workflow: str | None = None
    seed: int | None = 0
    temperature: float = 0.0
    max_tokens: int = 1024
    stop: list[str] = Field(default_factory=list, description="Stop sequences; none of them is in the answer.")
    context: dict[str, Any] = Field(
        default_factory=dict, description="Structured hints for non-prose backends (e.g. tool results)."
    )


class UnderstandResult(BaseModel):
    """A backend's answer: the text (``<think>`` reasoning split off), the parsed JSON, and provenance."""

    model_config = ConfigDict(frozen=True)
    text: str
    parsed: dict[str, Any] | None = None
    reasoning: str | None = None
    provenance: Provenance

    def as_model(self, model: type[M]) -> M:
        """Validate the answer into ``model`` (the pydantic model whose schema was asked for).

        Raises:
            BackendSchemaError: The answer does not validate; ``raw`` holds the text, ``errors`` the details.
        """
        try:
            if self.parsed is not None:
                return model.model_validate(self.parsed)
            return model.model_validate_json(self.text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "the top level"
            raise BackendSchemaError(
                f"the answer does not match {model.__name__}: {first['msg']} at {where}",
                backend=self.provenance.backend,
                raw=self.text,
                errors=[dict(e) for e in exc.errors()],
                hint="serve the model with structured output (vLLM --structured-outputs-config) and send the schema",
            ) from None


def json_schema_for(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON Schema in the strict form structured-output servers want.

    Every object lists all its properties as required and forbids others (OpenAI's strict mode;
    vLLM's guided decoding then never leaves a field out). Send it as ``response_schema`` and read
    the answer back with :meth:`UnderstandResult.as_model`.
    """
    schema = model.model_json_schema()
    _strictify(schema)
    return schema


def _strictify(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "object" and isinstance(node.get("properties"), dict):
            node["required"] = list(node["properties"])
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _strictify(value)
    elif isinstance(node, list):
        for item in node:
            _strictify(item)


@runtime_checkable
class UnderstandingBackend(Protocol):
    """What the analyze step calls. ``is_model`` is False for backends that cannot see images."""

    @property
    def name(self) -> str: ...

    @property
    def model_id(self) -> str | None: ...

    @property
    def is_model(self) -> bool: ...

    def understand(self, request: UnderstandRequest) -> UnderstandResult: ...

    async def aunderstand(self, request: UnderstandRequest) -> UnderstandResult: ...


def prompt_hash(request: UnderstandRequest) -> str:
    """A stable hash of everything that determines the answer: messages, image bytes, schema, sampling, stops."""
    payload = {
        "messages": [m.model_dump() for m in request.messages],
        "images": [content_hash(i.png) for i in request.images],
        "schema": request.response_schema,
        "seed": request.seed,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }
    if request.stop:  # only when set, so hashes (and recorded runs) without stop sequences stay the same
        payload["stop"] = request.stop
    return content_hash(payload)
