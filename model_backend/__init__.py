"""Understanding backends: the protocol, the analysis schema, the evidence-only default, OpenAI-compatible
clients, an in-process transformers backend, and a launcher for vLLM servers.

The backend error classes (:class:`BackendStatusError` and its per-status subclasses, connection and
timeout errors) are re-exported here for users of :class:`OpenAIBackend` / :class:`AsyncOpenAIBackend`.
"""

from okaflow._errors import (
    BackendAuthenticationError,
    BackendBadRequestError,
    BackendConnectionError,
    BackendContextLengthError,
    BackendError,
    BackendImageLimitError,
    BackendNotFoundError,
    BackendOutputError,
    BackendPermissionDeniedError,
    BackendRateLimitedError,
    BackendSchemaError,
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
from okaflow.model_backend._openai import UNIMEDVL_CHAT_TEMPLATE, AsyncOpenAIBackend, OpenAIBackend, StreamDelta
from okaflow.model_backend._protocol import (
    ChatMessage,
    ModelImage,
    UnderstandingBackend,
    UnderstandRequest,
    UnderstandResult,
    json_schema_for,
    prompt_hash,
)
from okaflow.model_backend._replay import MODEL_CALLS, RecordingBackend, ReplayBackend
from okaflow.model_backend._server import VLLMServer, free_port
from okaflow.model_backend._transformers import TransformersBackend

__all__ = [
    "MODEL_CALLS",
    "UNIMEDVL_CHAT_TEMPLATE",
    "AsyncOpenAIBackend",
    "BackendAuthenticationError",
    "BackendBadRequestError",
    "BackendConnectionError",
    "BackendContextLengthError",
    "BackendError",
    "BackendImageLimitError",
    "BackendNotFoundError",
    "BackendOutputError",
    "BackendPermissionDeniedError",
    "BackendRateLimitedError",
    "BackendSchemaError",
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
    "RecordingBackend",
    "ReplayBackend",
    "Section",
    "StreamDelta",
    "ToolCall",
    "TransformersBackend",
    "UnderstandRequest",
    "UnderstandResult",
    "UnderstandingBackend",
    "VLLMServer",
    "VisualRequest",
    "analysis_json_schema",
    "free_port",
    "json_schema_for",
    "prompt_hash",
]
