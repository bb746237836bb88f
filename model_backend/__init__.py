"""Understanding backends: the protocol, the analysis schema, the evidence-only default, and OpenAI-compatible clients.

The backend error classes (:class:`BackendStatusError` and its per-status subclasses, connection and
timeout errors) are re-exported here for users of :class:`OpenAIBackend` / :class:`AsyncOpenAIBackend`.
"""

from okaflow._errors import (
    BackendAuthenticationError,
    BackendBadRequestError,
    BackendConnectionError,
    BackendError,
    BackendNotFoundError,
    BackendOutputError,
    BackendPermissionDeniedError,
    BackendRateLimitedError,
    BackendServerError,
    BackendStatusError,
    BackendTimeoutError,
)
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
from okaflow.model_backend._openai import AsyncOpenAIBackend, OpenAIBackend, StreamDelta
from okaflow.model_backend._protocol import (
    ChatMessage,
    ModelImage,
    UnderstandingBackend,
    UnderstandRequest,
    UnderstandResult,
    prompt_hash,
)

__all__ = [
    "AsyncOpenAIBackend",
    "BackendAuthenticationError",
    "BackendBadRequestError",
    "BackendConnectionError",
    "BackendError",
    "BackendNotFoundError",
    "BackendOutputError",
    "BackendPermissionDeniedError",
    "BackendRateLimitedError",
    "BackendServerError",
    "BackendStatusError",
    "BackendTimeoutError",
    "ChatMessage",
    "Claim",
    "ClaimKind",
    "EvidenceOnlyAnalyst",
    "ModelAnalysis",
    "ModelImage",
    "OpenAIBackend",
    "Section",
    "StreamDelta",
    "ToolCall",
    "UnderstandRequest",
    "UnderstandResult",
    "UnderstandingBackend",
    "VisualRequest",
    "analysis_json_schema",
    "prompt_hash",
]
