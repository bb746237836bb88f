"""Analysis tools the agent's analyze step may call; each returns citable evidence."""

from okaflow.tools.analysis._tools import (
    AnalysisTool,
    CompareImagesTool,
    MeasureImageTool,
    ObservationTrendTool,
    RetrieveKnowledgeTool,
    ToolArgumentError,
    ToolContext,
    default_tools,
)

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
