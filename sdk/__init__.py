"""okaflow: an agentic clinical-workflow SDK.

A LangGraph agent runs Observation → Knowledge → Analysis over a patient's FHIR record and images,
asks an understanding backend (a served VLM, or the evidence-only default) for traceable claims,
and writes one interleaved report.

    >>> import okaflow
    >>> result = okaflow.run("examples/cases/brain-mri", out="runs/brain")  # doctest: +SKIP
    >>> result.report.blocks  # doctest: +SKIP

``import okaflow`` stays light: the agent, FHIR and DICOM stacks load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from okaflow._audit import AuditTrail, auditing, read_audit
from okaflow._errors import (
    AgentError,
    AssociationError,
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
    CaseError,
    ClinicalAuthenticationError,
    ClinicalConnectionError,
    ClinicalNotFoundError,
    ClinicalPermissionDeniedError,
    ClinicalRejectedError,
    ClinicalResponseError,
    ClinicalStatusError,
    ClinicalSystemError,
    ClinicalTimeoutError,
    ConfigurationError,
    DeidentificationError,
    DICOMError,
    DIMSEStatusError,
    FHIRError,
    FHIRParseError,
    FHIRReferenceError,
    GenerationSizeError,
    GenerationTaskError,
    ImageError,
    ImageTooLargeError,
    InputError,
    MissingExtraError,
    MissingPixelDataError,
    MissingWeightsError,
    OkaflowError,
    PatientNotFoundError,
    PublishError,
    ReplayError,
    ReplayInputsChangedError,
    ReplayMismatchError,
    RunAwaitingApprovalError,
    RunDirectoryError,
    TokenRequestError,
    UnsupportedImageError,
    UnsupportedTransferSyntaxError,
)
from okaflow._types import Evidence, Modality, Provenance
from okaflow._version import __version__

if TYPE_CHECKING:
    from okaflow._batch import BatchResult, CaseOutcome, abatch, batch
    from okaflow._case import Case
    from okaflow._diff import RunDiff, diff_runs
    from okaflow._export import export_run, import_run
    from okaflow._listen import Job, ListenService, read_jobs
    from okaflow._pull import pull_case, pull_study
    from okaflow._replay import ReplayResult, replay
    from okaflow._rerun import rerun
    from okaflow._resume import resume
    from okaflow._run import RunResult, approve, arun, run
    from okaflow.agents import create_oka_agent
    from okaflow.model_backend import (
        AsyncOpenAIBackend,
        EvidenceOnlyAnalyst,
        OpenAIBackend,
        TransformersBackend,
        VLLMServer,
    )
    from okaflow.tools.generation import AsyncImageEndpointGenerator, DiffusersGenerator, ImageEndpointGenerator
    from okaflow.tools.reporting import Report
    from okaflow.workflows import Workflow, get_workflow, list_workflows, register_workflow

__all__ = [
    "AgentError",
    "AssociationError",
    "AsyncImageEndpointGenerator",
    "AsyncOpenAIBackend",
    "AuditTrail",
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
    "BatchResult",
    "Case",
    "CaseError",
    "CaseOutcome",
    "ClinicalAuthenticationError",
    "ClinicalConnectionError",
    "ClinicalNotFoundError",
    "ClinicalPermissionDeniedError",
    "ClinicalRejectedError",
    "ClinicalResponseError",
    "ClinicalStatusError",
    "ClinicalSystemError",
    "ClinicalTimeoutError",
    "ConfigurationError",
    "DICOMError",
    "DIMSEStatusError",
    "DeidentificationError",
    "DiffusersGenerator",
    "Evidence",
    "EvidenceOnlyAnalyst",
    "FHIRError",
    "FHIRParseError",
    "FHIRReferenceError",
    "GenerationSizeError",
    "GenerationTaskError",
    "ImageEndpointGenerator",
    "ImageError",
    "ImageTooLargeError",
    "InputError",
    "Job",
    "ListenService",
    "MissingExtraError",
    "MissingPixelDataError",
    "MissingWeightsError",
    "Modality",
    "OkaflowError",
    "OpenAIBackend",
    "PatientNotFoundError",
    "Provenance",
    "PublishError",
    "ReplayError",
    "ReplayInputsChangedError",
    "ReplayMismatchError",
    "ReplayResult",
    "Report",
    "RunAwaitingApprovalError",
    "RunDiff",
    "RunDirectoryError",
    "RunResult",
    "TokenRequestError",
    "TransformersBackend",
    "UnsupportedImageError",
    "UnsupportedTransferSyntaxError",
    "VLLMServer",
    "Workflow",
    "__version__",
    "abatch",
    "approve",
    "arun",
    "auditing",
    "batch",
    "create_oka_agent",
    "diff_runs",
    "export_run",
    "get_workflow",
    "import_run",
    "list_workflows",
    "pull_case",
    "pull_study",
    "read_audit",
    "read_jobs",
    "register_workflow",
    "replay",
    "rerun",
    "resume",
    "run",
]

# Public names that load heavier modules, imported on first attribute access.
_LAZY = {
    "Case": "okaflow._case",
    "pull_case": "okaflow._pull",
    "ListenService": "okaflow._listen",
    "Job": "okaflow._listen",
    "read_jobs": "okaflow._listen",
    "pull_study": "okaflow._pull",
    "RunResult": "okaflow._run",
    "approve": "okaflow._run",
    "arun": "okaflow._run",
    "run": "okaflow._run",
    "diff_runs": "okaflow._diff",
    "export_run": "okaflow._export",
    "import_run": "okaflow._export",
    "RunDiff": "okaflow._diff",
    "batch": "okaflow._batch",
    "abatch": "okaflow._batch",
    "BatchResult": "okaflow._batch",
    "CaseOutcome": "okaflow._batch",
    "replay": "okaflow._replay",
    "resume": "okaflow._resume",
    "rerun": "okaflow._rerun",
    "ReplayResult": "okaflow._replay",
    "create_oka_agent": "okaflow.agents",
    "EvidenceOnlyAnalyst": "okaflow.model_backend",
    "AsyncOpenAIBackend": "okaflow.model_backend",
    "OpenAIBackend": "okaflow.model_backend",
    "VLLMServer": "okaflow.model_backend",
    "TransformersBackend": "okaflow.model_backend",
    "Report": "okaflow.tools.reporting",
    "DiffusersGenerator": "okaflow.tools.generation",
    "ImageEndpointGenerator": "okaflow.tools.generation",
    "AsyncImageEndpointGenerator": "okaflow.tools.generation",
    "Workflow": "okaflow.workflows",
    "get_workflow": "okaflow.workflows",
    "list_workflows": "okaflow.workflows",
    "register_workflow": "okaflow.workflows",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'okaflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
