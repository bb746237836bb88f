"""Understanding backends: the protocol, the analysis schema, and the evidence-only default."""

from okaflow.model_backend._analysis import (
    Claim,
    ClaimKind,
    ModelAnalysis,
    Section,
    ToolCall,
    VisualRequest,
    analysis_json_schema,
)
from okaflow.model_backend._evidence_only import EvidenceOnlyAnalyst
from okaflow.model_backend._protocol import (
    ChatMessage,
    ModelImage,
    UnderstandingBackend,
    UnderstandRequest,
    UnderstandResult,
    prompt_hash,
)

__all__ = [
    "ChatMessage",
    "Claim",
    "ClaimKind",
    "EvidenceOnlyAnalyst",
    "ModelAnalysis",
    "ModelImage",
    "Section",
    "ToolCall",
    "UnderstandRequest",
    "UnderstandResult",
    "UnderstandingBackend",
    "VisualRequest",
    "analysis_json_schema",
    "prompt_hash",
]
