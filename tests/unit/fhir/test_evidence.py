"""patient_evidence: one row per fact, ids that resolve, summaries that carry the values verbatim."""

from __future__ import annotations

from pathlib import Path

import pytest

from okaflow import Evidence
from okaflow.tools.fhir import PatientContext, patient_evidence, read_patient_context

DATA = Path(__file__).resolve().parents[2] / "data" / "fhir"


@pytest.fixture(scope="module")
def ctx() -> PatientContext:
    return read_patient_context(DATA / "r4_collection.json")


@pytest.fixture(scope="module")
def rows(ctx: PatientContext) -> dict[str, Evidence]:
    return {e.id: e for e in patient_evidence(ctx)}


def test_one_row_per_fact_in_a_stable_order(ctx: PatientContext) -> None:
    rows = patient_evidence(ctx)
    facts = [
        ctx.patient,
        *ctx.conditions,
        *ctx.medications,
        *ctx.allergies,
        *ctx.procedures,
        *ctx.encounters,
        *ctx.observations,
        *ctx.imaging_studies,
        *ctx.reports,
    ]
    assert [r.id for r in rows] == [f.id for f in facts if f is not None]
    assert len({r.id for r in rows}) == len(rows)
    assert rows == ctx.evidence() == patient_evidence(ctx)
    assert {r.source for r in rows} == {str(DATA / "r4_collection.json")}


def test_kinds(rows: dict[str, Evidence]) -> None:
    kinds = {key.split("/")[0]: row.kind for key, row in rows.items()}
    assert kinds == {
        "Patient": "patient",
        "Condition": "condition",
        "MedicationRequest": "medication",
        "MedicationStatement": "medication",
        "MedicationAdministration": "medication",
        "AllergyIntolerance": "allergy",
        "Procedure": "procedure",
        "Encounter": "encounter",
        "Observation": "observation",
        "ImagingStudy": "imaging_study",
        "DiagnosticReport": "diagnostic_report",
    }


@pytest.mark.parametrize(
    ("fact_id", "summary"),
    [
        (
            "Patient/pt-r4",
            "Patient Alex J Sample, female, born 1961-07-04; identifiers: MRN-0001 (Medical record number)",
        ),
        ("Observation/obs-cr", "Creatinine 1.4 mg/dL (ref 0.6–1.2) H on 2026-03-01"),
        (
            "Observation/obs-crp",
            "C reactive protein 12.5 mg/L (ref 0–5) H (computed from range) on 2026-03-01T08:30:00+01:00",
        ),
        ("Observation/obs-trop", "Troponin I <0.01 ng/mL (ref ≤0.04) N (computed from range) on 2026-03-01"),
        (
            "Observation/obs-bp",
            "Blood pressure panel: Systolic blood pressure 148 mm[Hg] (ref 90–120) H (computed from range); "
            "Diastolic blood pressure 78 mm[Hg] (ref 60–80) N on 2026-03-01T08:05:00Z",
        ),
        (
            "Observation/obs-cr-old",
            "Creatinine 1.1 mg/dL (ref 0.6–1.2) N (computed from range) [amended] on 2025-09-01",
        ),
        ("Observation/obs-smoke", "Tobacco smoking status: Former smoker on 2026-03-01"),
        (
            "Condition/cond-htn",
            "Condition: Essential hypertension — active, confirmed; onset 2015-03, recorded 2015-04-02",
        ),
        (
            "MedicationStatement/ms-metf",
            "Medication: Metformin 500 mg tablet — dose 500 mg, Oral, 2× per d; active (MedicationStatement); "
            "2018-01-10",
        ),
        (
            "AllergyIntolerance/al-pen",
            "Allergy: Penicillin — active, criticality high; reactions: Urticaria (moderate); recorded 2001-05-05",
        ),
        ("Procedure/pr-app", "Procedure: Appendectomy — completed, 1989-06-01"),
        (
            "Encounter/enc-1",
            "Encounter: Outpatient follow-up (AMB, finished); 2026-03-01T08:00:00Z to 2026-03-01T08:40:00Z; "
            "reason: Essential hypertension",
        ),
        (
            "ImagingStudy/img-ct",
            "ImagingStudy: CT chest without contrast (CT; 1 series, 2 instances); started 2026-03-01T09:15:00Z; "
            "study UID 1.2.826.0.1.3680043.8.498.1; reason: Follow-up of pneumonia",
        ),
        (
            "DiagnosticReport/dr-ct",
            "DiagnosticReport: CT chest (final, RAD) 2026-03-01T09:15:00Z: Resolving right lower lobe consolidation. "
            "No new nodules.",
        ),
    ],
)
def test_summaries(rows: dict[str, Evidence], fact_id: str, summary: str) -> None:
    assert rows[fact_id].summary == summary
    assert "\n" not in rows[fact_id].summary


def test_data_is_the_fact_and_time_its_date(ctx: PatientContext, rows: dict[str, Evidence]) -> None:
    cr = next(o for o in ctx.observations if o.id == "Observation/obs-cr")
    assert rows[cr.id].data == cr.model_dump()
    assert rows[cr.id].time == "2026-03-01"
    assert rows["Patient/pt-r4"].time == "1961-07-04"
    assert rows["Condition/cond-htn"].time == "2015-03"


def test_every_numeric_value_appears_verbatim(ctx: PatientContext, rows: dict[str, Evidence]) -> None:
    for obs in ctx.observations:
        for point in [obs, *obs.components]:
            if point.value is not None:
                assert (
                    f"{point.comparator or ''}{point.value_as_written} {point.unit or ''}".strip()
                    in rows[obs.id].summary
                )
