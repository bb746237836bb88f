"""Small value types shared by every room: evidence, provenance, modality."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Evidence",
    "EvidenceKind",
    "Modality",
    "Provenance",
    "content_hash",
    "utc_now",
]

EvidenceKind = Literal[
    "patient",
    "condition",
    "medication",
    "allergy",
    "procedure",
    "encounter",
    "observation",
    "imaging_study",
    "diagnostic_report",
    "image",
    "measurement",
    "knowledge",
    "tool_output",
    "generated_image",
]


class Modality(StrEnum):
    """The eight modalities UniMedVL understands and generates, plus OTHER."""

    CFP = "CFP"  # colour fundus photography
    CXR = "CXR"  # chest X-ray (CR/DX of the chest)
    CT = "CT"
    HIS = "HIS"  # histopathology (whole-slide / microscopy)
    MRI = "MRI"
    OCT = "OCT"
    US = "US"
    ENDOSCOPY = "ENDOSCOPY"
    OTHER = "OTHER"


class Evidence(BaseModel):
    """One citable fact. Every model claim must cite evidence ids that exist.

    ``id`` is stable across runs for the same input: FHIR facts use ``ResourceType/id``,
    images ``Image/<SOPInstanceUID or file stem>``, measurements ``Measurement/<image>/<name>``.
    ``summary`` is the one line a reader sees and the text the verify step checks claims against.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    kind: EvidenceKind
    summary: str
    source: str | None = None
    time: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class Provenance(BaseModel):
    """Where a model-written (or tool-written) piece of output came from."""

    model_config = ConfigDict(frozen=True)

    backend: str
    model_id: str | None = None
    prompt_hash: str | None = None
    seed: int | None = None
    latency_s: float | None = None
    created: str = Field(default_factory=lambda: utc_now())
    usage: dict[str, int] = Field(default_factory=dict)
    is_model: bool = Field(default=True, description="False for okaflow's evidence-only analyst and classical tools.")


def utc_now() -> str:
    """The current UTC time as an ISO 8601 string with seconds precision."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def content_hash(data: bytes | str | dict[str, Any] | list[Any]) -> str:
    """SHA-256 hex of bytes, text, or canonical JSON (sorted keys, no whitespace)."""
    if isinstance(data, dict | list):
        data = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()
