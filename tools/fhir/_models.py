"""The typed patient context built from a FHIR bundle.

These models are okaflow's own, version-neutral view of the record: the same shape whether the bundle
was R4, R4B or R5. Every fact has ``id`` = ``ResourceType/logical-id`` (its evidence id).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from okaflow._types import Evidence

__all__ = [
    "ABNORMAL_INTERPRETATIONS",
    "AllergyFact",
    "Coding",
    "ConditionFact",
    "DiagnosticReportFact",
    "EncounterFact",
    "FHIRVersion",
    "Identifier",
    "ImagingSeriesFact",
    "ImagingStudyFact",
    "MedicationFact",
    "ObservationFact",
    "PatientContext",
    "PatientFact",
    "ProcedureFact",
]

FHIRVersion = Literal["R4", "R4B", "R5"]

# v3 ObservationInterpretation codes that mean "outside normal": high, low, critical, abnormal, off scale,
# positive/detected. One definition for the report's table and the evidence-only analyst.
ABNORMAL_INTERPRETATIONS = frozenset({"H", "HH", "HU", "L", "LL", "LU", "A", "AA", ">", "<", "POS", "DET"})

_FROZEN = ConfigDict(frozen=True)


class Coding(BaseModel):
    model_config = _FROZEN
    system: str | None = None
    code: str | None = None
    display: str | None = None


class Identifier(BaseModel):
    model_config = _FROZEN
    system: str | None = None
    value: str
    type: str | None = None


class PatientFact(BaseModel):
    model_config = _FROZEN
    id: str
    name: str | None = None
    gender: str | None = None
    birth_date: str | None = None
    deceased: bool | str | None = None
    identifiers: list[Identifier] = Field(default_factory=list)


class ConditionFact(BaseModel):
    model_config = _FROZEN
    id: str
    text: str
    coding: list[Coding] = Field(default_factory=list)
    clinical_status: str | None = None
    verification_status: str | None = None
    onset: str | None = None
    recorded: str | None = None
    body_site: str | None = None
    note: str | None = Field(default=None, description="Condition.note texts, joined.")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def is_active(self) -> bool:
        """Active unless the bundle says otherwise (resolved, inactive, remission, refuted, error)."""
        if self.verification_status in {"refuted", "entered-in-error"}:
            return False
        return self.clinical_status in {None, "active", "recurrence", "relapse"}


class MedicationFact(BaseModel):
    model_config = _FROZEN
    id: str
    text: str
    coding: list[Coding] = Field(default_factory=list)
    status: str | None = None
    dosage: str | None = None
    date: str | None = None
    resource_type: str = "MedicationRequest"


class AllergyFact(BaseModel):
    model_config = _FROZEN
    id: str
    substance: str
    clinical_status: str | None = None
    criticality: str | None = None
    reactions: list[str] = Field(default_factory=list)
    recorded: str | None = None


class ProcedureFact(BaseModel):
    model_config = _FROZEN
    id: str
    text: str
    coding: list[Coding] = Field(default_factory=list)
    status: str | None = None
    performed: str | None = None


class EncounterFact(BaseModel):
    model_config = _FROZEN
    id: str
    text: str
    encounter_class: str | None = None
    status: str | None = None
    start: str | None = None
    end: str | None = None
    reasons: list[str] = Field(default_factory=list)


class ObservationFact(BaseModel):
    """One observation (or one component of a multi-component observation).

    ``interpretation`` is the bundle's own code (H, L, HH, LL, N, A, ...) when present; otherwise it is
    computed from the reference range (``interpretation_computed`` is then True).
    """

    model_config = _FROZEN
    id: str
    text: str
    coding: list[Coding] = Field(default_factory=list)
    category: str | None = None
    status: str | None = None
    value: float | None = None
    value_as_written: str | None = Field(
        default=None, description="The numeric value exactly as the bundle wrote it ('8.0', not 8.0 -> '8')."
    )
    value_text: str | None = None
    unit: str | None = None
    comparator: str | None = None
    effective: str | None = None
    effective_end: str | None = Field(
        default=None, description="End of an effectivePeriod; ``effective`` then holds its start."
    )
    reference_low: float | None = None
    reference_high: float | None = None
    reference_text: str | None = None
    interpretation: str | None = None
    interpretation_computed: bool = False
    note: str | None = Field(default=None, description="Observation.note texts, joined.")
    components: list[ObservationFact] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def is_abnormal(self) -> bool:
        """The interpretation (given or computed) says the value is outside normal."""
        return (self.interpretation or "").upper() in ABNORMAL_INTERPRETATIONS

    @computed_field  # type: ignore[prop-decorator]
    @property
    def trend_key(self) -> str:
        """Key that groups repeated measurements of the same thing (first code, else text)."""
        for c in self.coding:
            if c.code:
                return f"{c.system or ''}|{c.code}"
        return self.text.strip().lower()


class ImagingSeriesFact(BaseModel):
    model_config = _FROZEN
    uid: str
    modality: str | None = None
    body_site: str | None = None
    description: str | None = None
    number_of_instances: int | None = None
    instance_uids: list[str] = Field(default_factory=list)


class ImagingStudyFact(BaseModel):
    model_config = _FROZEN
    id: str
    study_uid: str | None = None
    started: str | None = None
    status: str | None = None
    description: str | None = None
    modalities: list[str] = Field(default_factory=list)
    series: list[ImagingSeriesFact] = Field(default_factory=list)
    reason: str | None = None


class DiagnosticReportFact(BaseModel):
    model_config = _FROZEN
    id: str
    text: str
    status: str | None = None
    category: str | None = None
    effective: str | None = None
    issued: str | None = None
    conclusion: str | None = None
    presented_text: str | None = Field(
        default=None, description="The report body when presentedForm carries it as plain text."
    )
    study_ids: list[str] = Field(default_factory=list)
    result_ids: list[str] = Field(default_factory=list)


class PatientContext(BaseModel):
    """Everything okaflow took from a bundle, plus the warnings it raised while doing so."""

    model_config = _FROZEN
    fhir_version: FHIRVersion
    source: str | None = None
    patient: PatientFact | None = None
    conditions: list[ConditionFact] = Field(default_factory=list)
    medications: list[MedicationFact] = Field(default_factory=list)
    allergies: list[AllergyFact] = Field(default_factory=list)
    procedures: list[ProcedureFact] = Field(default_factory=list)
    encounters: list[EncounterFact] = Field(default_factory=list)
    observations: list[ObservationFact] = Field(default_factory=list)
    imaging_studies: list[ImagingStudyFact] = Field(default_factory=list)
    reports: list[DiagnosticReportFact] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    @property
    def active_conditions(self) -> list[ConditionFact]:
        return [c for c in self.conditions if c.is_active]

    def observation_series(self, *, min_points: int = 2) -> dict[str, list[ObservationFact]]:
        """Numeric observations grouped by ``trend_key``, oldest first, keeping series with enough points."""
        groups: dict[str, list[ObservationFact]] = {}
        for obs in self.observations:
            if obs.value is not None and obs.effective:
                groups.setdefault(obs.trend_key, []).append(obs)
        return {
            key: sorted(points, key=lambda o: o.effective or "")
            for key, points in groups.items()
            if len(points) >= min_points
        }

    def study_by_uid(self, study_uid: str) -> ImagingStudyFact | None:
        return next((s for s in self.imaging_studies if s.study_uid == study_uid), None)

    def evidence(self) -> list[Evidence]:
        """The evidence table rows for every fact, in a stable order."""
        from okaflow.tools.fhir._evidence import patient_evidence

        return patient_evidence(self)
