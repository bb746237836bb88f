"""How the analyze step turns state into chat messages for a model backend."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from okaflow._types import Evidence
from okaflow.model_backend import ChatMessage
from okaflow.tools.analysis import AnalysisTool
from okaflow.workflows import Workflow

__all__ = ["analysis_messages"]

# Free-text knowledge passages can be long; the evidence table shows each row on one line.
_MAX_SUMMARY = 300


def _evidence_table(evidence: Iterable[Evidence]) -> str:
    lines = []
    for e in evidence:
        summary = e.summary if len(e.summary) <= _MAX_SUMMARY else e.summary[: _MAX_SUMMARY - 3] + "..."
        lines.append(f"- [{e.id}] ({e.kind}) {summary}")
    return "\n".join(lines) or "- (no evidence)"


def analysis_messages(
    workflow: Workflow,
    task: str,
    evidence: list[Evidence],
    tools: Mapping[str, AnalysisTool],
    image_ids: list[str],
    tool_errors: list[str],
    *,
    final: bool,
    visual_tasks: Sequence[str] = (),
) -> list[ChatMessage]:
    """The system and user messages for one analyze call.

    Args:
        final: True on the last allowed step: the model is told to answer without tools.
        visual_tasks: Generation tasks the configured generator can do, offered as ``visual_requests``.
    """
    parts = [
        f"Task: {task}",
        f"Workflow: {workflow.title}. {workflow.instructions}",
        f"Sections to write: {', '.join(workflow.sections)}.",
        "Evidence table (cite ids in square brackets exactly):",
        _evidence_table(evidence),
    ]
    if image_ids:
        parts.append("Images attached, in order: " + ", ".join(image_ids) + ".")
    if tools and not final:
        spec: list[dict[str, Any]] = [
            {"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools.values()
        ]
        parts.append(
            "Tools you may call first (put them in tool_calls and set done=false; results arrive as new "
            "evidence):\n" + json.dumps(spec, sort_keys=True)
        )
    else:
        parts.append("No more tool calls: write your claims now with done=true.")
    if visual_tasks and not final:
        parts.append(
            "Visual outputs you may ask for in visual_requests (shown beside their source image, labelled as "
            f"generated): {', '.join(visual_tasks)}. Name the source image ids; ask only where an image helps."
        )
    if tool_errors:
        parts.append("Tool errors from your last calls:\n" + "\n".join(f"- {e}" for e in tool_errors))
    return [
        ChatMessage(role="system", content=workflow.system_prompt),
        ChatMessage(role="user", content="\n\n".join(parts)),
    ]
