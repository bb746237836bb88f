"""The structured answer the analyze step asks of every understanding backend.

A VLM receives :func:`analysis_json_schema` as ``response_format``; okaflow validates the reply
into :class:`ModelAnalysis`. Every claim cites evidence ids; the verify step checks them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Claim",
    "ClaimKind",
    "ModelAnalysis",
    "Section",
    "ToolCall",
    "VisualRequest",
    "analysis_json_schema",
]

Section = Literal["findings", "comparison", "impression", "answer"]
ClaimKind = Literal["fact", "measurement", "image_finding", "assessment"]


class Claim(BaseModel):
    """One sentence of the report, with the evidence it rests on."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    section: Section
    kind: ClaimKind
    text: str
    cites: list[str] = Field(default_factory=list, description="Evidence ids, e.g. 'Observation/cr-3'.")


class ToolCall(BaseModel):
    """A request to run one of the analysis tools offered in the prompt."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class VisualRequest(BaseModel):
    """A visual output the analysis wants in the report (a derived or generated image)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    task: str = Field(description="A generation task, e.g. 'window', 'super_resolution', 'comparison'.")
    image_ids: list[str]
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""


class ModelAnalysis(BaseModel):
    """What one analyze step returns: claims, or tool calls to make first, plus visual requests."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    claims: list[Claim] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    visual_requests: list[VisualRequest] = Field(default_factory=list)
    done: bool = Field(default=True, description="False while tool calls are pending.")


def analysis_json_schema() -> dict[str, Any]:
    """The JSON Schema sent as ``response_format`` to structured-output backends."""
    return ModelAnalysis.model_json_schema()
