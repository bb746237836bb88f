"""Tools the analyze step may call in its loop. Each returns new, citable evidence.

A tool is any object with ``name``, ``description``, ``parameters`` (JSON Schema of its arguments)
and ``run(arguments, context) -> list[Evidence]``. Bad arguments raise :class:`ToolArgumentError`;
the agent records the error as a tool output the model can read, instead of crashing the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from okaflow._case import study_day
from okaflow._errors import OkaflowError
from okaflow._types import Evidence

if TYPE_CHECKING:
    from okaflow._case import Case
    from okaflow.tools.imaging import MedicalImage
    from okaflow.tools.knowledge import KnowledgeRetriever

__all__ = [
    "AnalysisTool",
    "CompareImagesTool",
    "MeasureImageTool",
    "ObservationTrendTool",
    "RetrieveKnowledgeTool",
    "ToolArgumentError",
    "ToolContext",
    "default_tools",
]


class ToolArgumentError(OkaflowError):
    """A tool was called with arguments it cannot use (unknown image id, missing key...)."""


@dataclass
class ToolContext:
    case: Case
    knowledge: KnowledgeRetriever | None = None
    evidence: dict[str, Evidence] = field(default_factory=dict)


@runtime_checkable
class AnalysisTool(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str:
        """One line the model reads to decide whether to call the tool."""
        ...

    @property
    def parameters(self) -> dict[str, Any]:
        """JSON Schema of the ``arguments`` object."""
        ...

    def run(self, arguments: dict[str, Any], context: ToolContext) -> list[Evidence]: ...


def _string_arg(arguments: dict[str, Any], key: str, tool: str) -> str:
    value = arguments.get(key)
    if not isinstance(value, str) or not value:
        raise ToolArgumentError(f"{tool} needs a string argument {key!r}, got {value!r}")
    return value


def _image(context: ToolContext, image_id: str, tool: str) -> MedicalImage:
    for img in context.case.images:
        if img.id == image_id:
            return img
    raise ToolArgumentError(f"{tool}: no image {image_id!r}", hint=f"ids: {[i.id for i in context.case.images]}")


class MeasureImageTool:
    name = "measure_image"
    description = "Measure an image's size, physical extent and intensity statistics (HU bands for CT)."
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"image_id": {"type": "string"}},
        "required": ["image_id"],
    }

    def run(self, arguments: dict[str, Any], context: ToolContext) -> list[Evidence]:
        from okaflow.tools.imaging import measure_image, measurement_evidence

        img = _image(context, _string_arg(arguments, "image_id", self.name), self.name)
        return measurement_evidence(img, measure_image(img))


class ObservationTrendTool:
    name = "observation_trend"
    description = "Summarise a repeated laboratory or vital-sign observation over time (key: code or name)."
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"key": {"type": "string"}},
        "required": ["key"],
    }

    def run(self, arguments: dict[str, Any], context: ToolContext) -> list[Evidence]:
        key = _string_arg(arguments, "key", self.name)
        series = context.case.patient.observation_series()
        points = series.get(key) or next(
            (s for k, s in series.items() if s[0].text.lower() == key.lower() or k.endswith(f"|{key}")), None
        )
        if not points:
            raise ToolArgumentError(f"{self.name}: no repeated observation {key!r}", hint=f"keys: {sorted(series)}")
        units = sorted({p.unit or "" for p in points})
        if len(units) > 1:
            raise ToolArgumentError(
                f"{self.name}: {key!r} is recorded in different units {units}; a trend across them would mislead",
                hint="convert the observations to one unit in the record",
            )
        first, last = points[0], points[-1]
        unit = f" {last.unit}" if last.unit else ""
        values = " → ".join(f"{p.value:g}" for p in points if p.value is not None)
        assert first.value is not None and last.value is not None  # observation_series keeps numeric points
        direction = "rising" if last.value > first.value else "falling" if last.value < first.value else "unchanged"
        summary = (
            f"{last.text}: {values}{unit} from {first.effective} to {last.effective} "
            f"({len(points)} values, {direction})"
        )
        if last.interpretation:
            summary += f"; latest flagged {last.interpretation}"
        code = next((c.code for c in first.coding if c.code), last.text)
        slug = re.sub(r"[^0-9a-z]+", "-", code.lower()).strip("-")
        return [
            Evidence(
                id=f"Trend/{slug}",
                kind="tool_output",
                summary=summary,
                source=context.case.patient.source,
                data={
                    "trend_key": points[0].trend_key,
                    "points": [p.id for p in points],
                    "direction": direction,
                },
            )
        ]


class CompareImagesTool:
    name = "compare_images"
    description = "Compare a current and a prior image: interval between studies, extent and intensity statistics."
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"current": {"type": "string"}, "prior": {"type": "string"}},
        "required": ["current", "prior"],
    }

    def run(self, arguments: dict[str, Any], context: ToolContext) -> list[Evidence]:
        from okaflow.tools.imaging import measure_image

        cur = _image(context, _string_arg(arguments, "current", self.name), self.name)
        pri = _image(context, _string_arg(arguments, "prior", self.name), self.name)
        d_cur, d_pri = (study_day(context.case, i) for i in (cur, pri))
        parts = [f"current {cur.id} vs prior {pri.id}"]
        data: dict[str, Any] = {"current": cur.id, "prior": pri.id}
        if d_cur and d_pri:
            days = (d_cur - d_pri).days
            parts.append(f"studies {d_pri.isoformat()} and {d_cur.isoformat()}, interval {days} days")
            data["interval_days"] = days
        else:
            parts.append("interval unknown (a study date is missing)")
        m_cur, m_pri = measure_image(cur), measure_image(pri)
        parts.append(f"size {cur.columns}×{cur.rows} px vs {pri.columns}×{pri.rows} px")
        unit = f" {cur.units}" if cur.units and cur.units == pri.units else ""
        parts.append(f"mean intensity {m_cur.mean:.1f}{unit} vs {m_pri.mean:.1f}{unit}")
        data.update(mean_current=round(m_cur.mean, 1), mean_prior=round(m_pri.mean, 1))
        return [
            Evidence(
                id=f"Comparison/{cur.id.removeprefix('Image/')}--{pri.id.removeprefix('Image/')}",
                kind="tool_output",
                summary="Comparison: " + "; ".join(parts),
                data=data,
            )
        ]


class RetrieveKnowledgeTool:
    name = "retrieve_knowledge"
    description = "Search the knowledge sources (patient history, supplied documents) for passages."
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"query": {"type": "string"}, "k": {"type": "integer", "minimum": 1, "maximum": 10}},
        "required": ["query"],
    }

    def run(self, arguments: dict[str, Any], context: ToolContext) -> list[Evidence]:
        query = _string_arg(arguments, "query", self.name)
        if context.knowledge is None:
            return []
        k = arguments.get("k", 5)
        return context.knowledge.search(query, k=k if isinstance(k, int) and 1 <= k <= 10 else 5)


def default_tools() -> dict[str, AnalysisTool]:
    """The built-in analysis tools, by name."""
    tools: list[AnalysisTool] = [
        MeasureImageTool(),
        ObservationTrendTool(),
        CompareImagesTool(),
        RetrieveKnowledgeTool(),
    ]
    return {t.name: t for t in tools}
