"""The structured answer the analyze step asks of every understanding backend.

A VLM receives :func:`analysis_json_schema` as ``response_format``; okaflow validates the reply
into :class:`ModelAnalysis`. Every claim cites evidence ids; the verify step checks them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from okaflow._constants import (
    ANALYSIS_MAX_CITES,
    ANALYSIS_MAX_CLAIM_CHARS,
    ANALYSIS_MAX_CLAIMS,
    ANALYSIS_MAX_TOOL_CALLS,
    ANALYSIS_MAX_VISUALS,
)

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


def analysis_json_schema(
    *,
    evidence_ids: Sequence[str] | None = None,
    sections: Sequence[str] | None = None,
    tools: Mapping[str, Mapping[str, Any]] | None = None,
    visual_tasks: Sequence[str] | None = None,
    image_ids: Sequence[str] | None = None,
    max_claims: int = ANALYSIS_MAX_CLAIMS,
    max_claim_chars: int = ANALYSIS_MAX_CLAIM_CHARS,
    max_tool_calls: int = ANALYSIS_MAX_TOOL_CALLS,
) -> dict[str, Any]:
    """The JSON Schema sent as ``response_format``, narrowed to what this step can honestly say.

    With no arguments it is :class:`ModelAnalysis`'s schema with every property required and every
    string and list bounded. Each argument narrows it further, so a server with guided decoding
    (vLLM's xgrammar) cannot produce an answer okaflow would have to reject:

    Args:
        evidence_ids: ``cites`` items must be one of these ids (a model cannot cite what does not exist).
        sections: The report sections this workflow writes.
        tools: Offered analysis tools, name → JSON Schema of their arguments; ``{}`` offers none.
        visual_tasks: Generation tasks the configured generator supports; empty offers none.
        image_ids: Images a visual request may name.
        max_claims: Most claims per answer. max_claim_chars: Longest claim text.
        max_tool_calls: Most tool calls per answer.

    Every answer valid under the narrowed schema is valid :class:`ModelAnalysis`.
    """
    claim: dict[str, Any] = {
        "type": "object",
        "properties": {
            "section": _enum(sections if sections is not None else get_args(Section)),
            "kind": _enum(get_args(ClaimKind)),
            "text": {"type": "string", "minLength": 1, "maxLength": max_claim_chars},
            "cites": {
                "type": "array",
                "items": _enum(evidence_ids) if evidence_ids else {"type": "string", "maxLength": 200},
                "maxItems": ANALYSIS_MAX_CITES,
            },
        },
        "required": ["section", "kind", "text", "cites"],
        "additionalProperties": False,
    }
    if tools is None:
        call: dict[str, Any] = {
            "type": "object",
            "properties": {"tool": {"type": "string", "maxLength": 64}, "arguments": {"type": "object"}},
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        calls: dict[str, Any] = {"type": "array", "items": call, "maxItems": max_tool_calls}
    elif tools:
        variants = [
            {
                "type": "object",
                "properties": {"tool": {"const": name}, "arguments": _bounded(params, max_claim_chars)},
                "required": ["tool", "arguments"],
                "additionalProperties": False,
            }
            for name, params in sorted(tools.items())
        ]
        calls = {"type": "array", "items": {"anyOf": variants}, "maxItems": max_tool_calls}
    else:
        calls = {"type": "array", "maxItems": 0}
    visual: dict[str, Any] = {
        "type": "object",
        "properties": {
            "task": _enum(visual_tasks) if visual_tasks else {"type": "string", "maxLength": 64},
            "image_ids": {
                "type": "array",
                "items": _enum(image_ids) if image_ids else {"type": "string", "maxLength": 200},
                "minItems": 1,
                "maxItems": 4,
            },
            "params": _VISUAL_PARAMS,
            "reason": {"type": "string", "maxLength": max_claim_chars},
        },
        "required": ["task", "image_ids", "params", "reason"],
        "additionalProperties": False,
    }
    no_visuals = visual_tasks is not None and not visual_tasks
    return {
        "title": "ModelAnalysis",
        "type": "object",
        "properties": {
            "claims": {"type": "array", "items": claim, "maxItems": max_claims},
            "tool_calls": calls,
            "visual_requests": {"type": "array", "maxItems": 0}
            if no_visuals
            else {"type": "array", "items": visual, "maxItems": ANALYSIS_MAX_VISUALS},
            "done": {"type": "boolean"},
        },
        "required": ["claims", "tool_calls", "visual_requests", "done"],
        "additionalProperties": False,
    }


def _bounded(schema: Mapping[str, Any], max_chars: int) -> dict[str, Any]:
    """A copy of a tool's argument schema with every open string and list given an upper bound."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if isinstance(value, Mapping):
            out[key] = _bounded(value, max_chars)
        elif isinstance(value, list):
            out[key] = [_bounded(v, max_chars) if isinstance(v, Mapping) else v for v in value]
        else:
            out[key] = value
    if out.get("type") == "string" and not {"enum", "const", "maxLength"} & out.keys():
        out["maxLength"] = max_chars
    if out.get("type") == "array" and "maxItems" not in out:
        out["maxItems"] = ANALYSIS_MAX_CITES
    return out


def _enum(values: Iterable[str]) -> dict[str, Any]:
    return {"type": "string", "enum": sorted(set(values))}


# The generation knobs a visual request may set: the classical generator reads the first four, generative
# ones the rest (see okaflow.tools.generation's typed requests); every string is bounded.
_TEXT = {"type": "string", "maxLength": 300}
_VISUAL_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "scale": {"type": "integer", "minimum": 2, "maximum": 4},
        "window": {"type": "string", "maxLength": 32},
        "windows": {"type": "array", "items": {"type": "string", "maxLength": 32}, "maxItems": 4},
        "max_frames": {"type": "integer", "minimum": 1, "maximum": 64},
        "method": {"type": "string", "enum": ["bicubic", "lanczos"]},
        "prompt": _TEXT,
        "modality": {"type": "string", "enum": ["CFP", "CT", "CXR", "ENDOSCOPY", "HIS", "MRI", "OCT", "US"]},
        "target_stain": {"type": "string", "maxLength": 64},
        "expression_level": {"type": "string", "maxLength": 64},
        "target": {"type": "string", "maxLength": 64},
        "source_domain": {"type": "string", "maxLength": 64},
        "edit": _TEXT,
        "question": _TEXT,
        "answer": _TEXT,
        "reference": {"type": "string", "maxLength": 200},
    },
    "additionalProperties": False,
}
