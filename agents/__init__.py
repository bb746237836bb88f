"""The Observation → Knowledge → Analysis agent (LangGraph)."""

from okaflow.agents._graph import create_oka_agent
from okaflow.agents._state import OKAState, RunContext, merge_evidence
from okaflow.agents._verify import verify_claim

__all__ = ["OKAState", "RunContext", "create_oka_agent", "merge_evidence", "verify_claim"]
