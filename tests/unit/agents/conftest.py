"""A small synthetic case built from Python objects (no FHIR parsing), and scripted backends."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from okaflow import Case, Provenance
from okaflow._case import resolve_image_path
from okaflow.model_backend import UnderstandRequest, UnderstandResult, prompt_hash
from okaflow.tools.fhir import (
    Coding,
    ConditionFact,
    DiagnosticReportFact,
    Identifier,
    ImagingStudyFact,
    ObservationFact,
    PatientContext,
    PatientFact,
)
from okaflow.tools.imaging import load_image

CT_SMALL_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
CT_J2K_STUDY = "1.2.276.0.7230010.3.1.2.296485376.1.1521713414.1800996"


def pydicom_file(name: str) -> Path:
    """A pydicom test file shipped in its wheel (CaseError if it does not ship one)."""
    return resolve_image_path(f"pydicom:{name}", Path.cwd())


def _creatinine(n: int, value: float, day: str) -> ObservationFact:
    return ObservationFact(
        id=f"Observation/cr-{n}",
        text="Creatinine",
        coding=[Coding(system="http://loinc.org", code="2160-0", display="Creatinine")],
        value=value,
        unit="mg/dL",
        effective=day,
        reference_low=0.6,
        reference_high=1.2,
        interpretation="H" if value > 1.2 else "N",
        interpretation_computed=True,
    )


@pytest.fixture(scope="session")
def patient() -> PatientContext:
    return PatientContext(
        fhir_version="R4",
        source="synthetic",
        patient=PatientFact(
            id="Patient/p1",
            name="Test Synthetic",
            gender="female",
            birth_date="1961-04-02",
            identifiers=[Identifier(value="1CT1"), Identifier(value="CQ500-CT-310")],
        ),
        conditions=[
            ConditionFact(id="Condition/c1", text="Pulmonary nodule", clinical_status="active", onset="2003-11-02")
        ],
        observations=[
            _creatinine(1, 1.0, "2003-12-01"),
            _creatinine(2, 1.3, "2004-01-10"),
            _creatinine(3, 1.6, "2018-03-01"),
        ],
        imaging_studies=[
            ImagingStudyFact(id="ImagingStudy/s-prior", study_uid=CT_SMALL_STUDY, started="2004-01-19"),
            ImagingStudyFact(id="ImagingStudy/s-current", study_uid=CT_J2K_STUDY, started="2018-03-22"),
        ],
        reports=[
            DiagnosticReportFact(
                id="DiagnosticReport/r1",
                text="CT chest",
                conclusion="Solitary 6 mm nodule in the right upper lobe.",
                effective="2004-01-19",
            )
        ],
    )


@pytest.fixture(scope="session")
def ct_pair_case(patient: PatientContext) -> Case:
    prior = load_image(pydicom_file("CT_small.dcm"))
    current = load_image(pydicom_file("693_J2KI.dcm"))
    return Case.from_objects(patient, [prior, current], task="Compare with the prior CT.", case_id="ct-pair")


class ScriptedBackend:
    """A deterministic chat model: answers each analyze call from a list of scripted replies."""

    is_model = True
    name = "scripted"
    model_id = "scripted-1"

    def __init__(self, replies: list[dict[str, Any] | str | Callable[[UnderstandRequest], dict[str, Any]]]) -> None:
        self.replies = replies
        self.requests: list[UnderstandRequest] = []

    def understand(self, request: UnderstandRequest) -> UnderstandResult:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if callable(reply):
            reply = reply(request)
        text = reply if isinstance(reply, str) else json.dumps(reply)
        return UnderstandResult(
            text=text,
            provenance=Provenance(
                backend=self.name, model_id=self.model_id, prompt_hash=prompt_hash(request), seed=request.seed
            ),
        )

    async def aunderstand(self, request: UnderstandRequest) -> UnderstandResult:
        return self.understand(request)
