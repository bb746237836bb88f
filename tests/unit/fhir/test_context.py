"""build_patient_context: every fact type from R4 and R5, interpretation, components, patient choice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from okaflow.tools.fhir import (
    ObservationFact,
    PatientContext,
    compute_interpretation,
    load_bundle,
    read_patient_context,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "fhir"


@pytest.fixture(scope="module")
def r4() -> PatientContext:
    return read_patient_context(DATA / "r4_collection.json")


@pytest.fixture(scope="module")
def r5() -> PatientContext:
    return read_patient_context(DATA / "r5_everything.json")


def _obs(ctx: PatientContext, fact_id: str) -> ObservationFact:
    return next(o for o in ctx.observations if o.id == f"Observation/{fact_id}")


def test_r4_demographics(r4: PatientContext) -> None:
    assert r4.fhir_version == "R4"
    assert r4.source == str(DATA / "r4_collection.json")
    p = r4.patient
    assert p is not None
    assert (p.id, p.name, p.gender, p.birth_date) == ("Patient/pt-r4", "Alex J Sample", "female", "1961-07-04")
    assert [(i.system, i.value, i.type) for i in p.identifiers] == [
        ("urn:oid:2.16.840.1.113883.19.5", "MRN-0001", "Medical record number")
    ]


def test_r4_conditions(r4: PatientContext) -> None:
    by_id = {c.id: c for c in r4.conditions}
    htn = by_id["Condition/cond-htn"]
    assert (htn.text, htn.clinical_status, htn.verification_status) == ("Essential hypertension", "active", "confirmed")
    assert (htn.onset, htn.recorded) == ("2015-03", "2015-04-02")  # dates exactly as given
    assert htn.coding[0].code == "59621000"
    pna = by_id["Condition/cond-pna"]
    assert pna.text == "Pneumonia (disorder)"  # no text: the coding's display
    assert pna.onset == "2026-02-18/2026-03-10"
    assert pna.body_site == "Right lower lobe of lung"
    assert by_id["Condition/cond-refuted"].text == "195967001"  # no text, no display: the code
    assert [c.id for c in r4.active_conditions] == ["Condition/cond-htn"]


def test_r4_medications_all_three_kinds(r4: PatientContext) -> None:
    by_id = {m.id: m for m in r4.medications}
    request = by_id["MedicationRequest/mr-aml"]
    assert (request.text, request.dosage, request.date, request.status) == (
        "Amlodipine 5 MG Oral Tablet",
        "5 mg once daily",
        "2015-04-02",
        "active",
    )
    assert request.coding[0].code == "197361"
    statement = by_id["MedicationStatement/ms-metf"]  # medicationReference to a contained Medication
    assert statement.text == "Metformin 500 mg tablet"
    assert statement.dosage == "dose 500 mg, Oral, 2× per d"
    assert statement.date == "2018-01-10"
    administration = by_id["MedicationAdministration/ma-ctx"]  # reference to a Medication entry by urn:uuid
    assert administration.text == "Ceftriaxone 1 g injection"
    assert administration.dosage == "dose 1 g, Intravenous"
    assert administration.date == "2026-02-20T10:00:00Z"


def test_r4_allergy_procedure_encounter(r4: PatientContext) -> None:
    (allergy,) = r4.allergies
    assert (allergy.substance, allergy.criticality, allergy.clinical_status) == ("Penicillin", "high", "active")
    assert allergy.reactions == ["Urticaria (moderate)"]
    (procedure,) = r4.procedures
    assert (procedure.text, procedure.performed) == ("Appendectomy", "1989-06-01")
    (encounter,) = r4.encounters
    assert (encounter.text, encounter.encounter_class, encounter.status) == ("Outpatient follow-up", "AMB", "finished")
    assert (encounter.start, encounter.end) == ("2026-03-01T08:00:00Z", "2026-03-01T08:40:00Z")
    assert encounter.reasons == ["Essential hypertension"]  # reasonReference resolved to the Condition


def test_interpretation_given_is_kept(r4: PatientContext) -> None:
    cr = _obs(r4, "obs-cr")
    assert (cr.value, cr.unit, cr.reference_low, cr.reference_high) == (1.4, "mg/dL", 0.6, 1.2)
    assert (cr.interpretation, cr.interpretation_computed) == ("H", False)
    assert cr.category == "laboratory"


@pytest.mark.parametrize(
    ("fact_id", "expected"),
    [("obs-crp", "H"), ("obs-hb", "L"), ("obs-k", "N"), ("obs-trop", "N"), ("obs-cr-old", "N")],
)
def test_interpretation_computed_from_the_range(r4: PatientContext, fact_id: str, expected: str) -> None:
    obs = _obs(r4, fact_id)
    assert (obs.interpretation, obs.interpretation_computed) == (expected, True)


def test_range_choice_and_unit_mismatch(r4: PatientContext) -> None:
    crp = _obs(r4, "obs-crp")  # first range is typed "treatment": the normal one (0-5) is used
    assert (crp.reference_low, crp.reference_high) == (0.0, 5.0)
    glucose = _obs(r4, "obs-glu")  # mmol/L value, mg/dL range: no flag rather than a wrong one
    assert glucose.interpretation is None
    assert any("Observation/obs-glu" in w and "no interpretation computed" in w for w in r4.warnings)


def test_effective_variants(r4: PatientContext) -> None:
    assert _obs(r4, "obs-crp").effective == "2026-03-01T08:30:00+01:00"
    hb = _obs(r4, "obs-hb")
    assert (hb.effective, hb.effective_end) == ("2026-03-01T08:00:00Z", "2026-03-01T09:00:00Z")
    assert _obs(r4, "obs-k").effective == "2026-03-01T08:31:02.123Z"
    trop = _obs(r4, "obs-trop")
    assert (trop.comparator, trop.value) == ("<", 0.01)


def test_value_types(r4: PatientContext) -> None:
    assert _obs(r4, "obs-smoke").value_text == "Former smoker"
    assert _obs(r4, "obs-note").value_text == "Patient reports mild fatigue"
    assert _obs(r4, "obs-preg").value_text == "false"
    steps = _obs(r4, "obs-steps")
    assert (steps.value, steps.value_as_written) == (4200.0, "4200")


def test_components(r4: PatientContext) -> None:
    bp = _obs(r4, "obs-bp")
    assert bp.value is None and bp.category == "vital-signs"
    systolic, diastolic = bp.components
    assert systolic.id == "Observation/obs-bp#component[0]"
    assert (systolic.text, systolic.value, systolic.unit) == ("Systolic blood pressure", 148.0, "mm[Hg]")
    assert (systolic.interpretation, systolic.interpretation_computed) == ("H", True)
    assert (diastolic.interpretation, diastolic.interpretation_computed) == ("N", False)
    assert systolic.effective == bp.effective == "2026-03-01T08:05:00Z"


def test_group_subject_is_left_out_with_a_warning(r4: PatientContext) -> None:
    assert "Observation/obs-group" not in {o.id for o in r4.observations}
    assert any("Observation/obs-group is about Group" in w for w in r4.warnings)


def test_r4_imaging_study_and_report(r4: PatientContext) -> None:
    (study,) = r4.imaging_studies
    assert study.study_uid == "1.2.826.0.1.3680043.8.498.1"  # urn:oid: prefix stripped
    assert (study.modalities, study.started, study.reason) == (["CT"], "2026-03-01T09:15:00Z", "Follow-up of pneumonia")
    (series,) = study.series
    assert (series.uid, series.modality, series.body_site, series.number_of_instances) == (
        "1.2.826.0.1.3680043.8.498.1.1",
        "CT",
        "Chest",
        2,
    )
    assert series.instance_uids == ["1.2.826.0.1.3680043.8.498.1.1.1", "1.2.826.0.1.3680043.8.498.1.1.2"]
    assert r4.study_by_uid("1.2.826.0.1.3680043.8.498.1") == study
    (report,) = r4.reports
    assert (report.text, report.status, report.category) == ("CT chest", "final", "RAD")
    assert report.conclusion == "Resolving right lower lobe consolidation.\nNo new nodules."
    assert report.presented_text == "FINDINGS: Partial clearing of RLL consolidation.\nIMPRESSION: Improving pneumonia."
    assert report.study_ids == ["ImagingStudy/img-ct"]
    assert report.result_ids == ["Observation/obs-cr"]


def test_r5_shapes(r5: PatientContext) -> None:
    assert r5.fhir_version == "R5"
    assert r5.patient is not None and r5.patient.deceased is False
    meds = {m.id: m for m in r5.medications}
    assert meds["MedicationRequest/mr5"].text == "Atorvastatin 40 mg tablet"  # medication.concept
    assert meds["MedicationStatement/ms5"].text == "Aspirin 81 mg tablet"  # medication.reference, search include
    external = meds["MedicationAdministration/ma5"]  # reference outside the bundle: its display
    assert (external.text, external.date) == ("Heparin 5000 units", "2026-01-05T16:00:00Z")  # R5 occurence[x]
    (encounter,) = r5.encounters
    assert (encounter.encounter_class, encounter.start, encounter.end) == (
        "IMP",
        "2026-01-05T15:00:00Z",
        "2026-01-07T10:00:00Z",
    )
    assert encounter.reasons == ["Chest pain"]  # concept and resolved Condition say the same: once
    assert r5.allergies[0].reactions == ["Anaphylaxis (severe)"]
    assert r5.procedures[0].performed == "2026-01-06T09:00:00Z"
    (study,) = r5.imaging_studies
    assert (study.study_uid, study.modalities, study.series[0].modality, study.series[0].body_site) == (
        "2.25.1234567890",
        ["XA"],
        "XA",
        "Heart",
    )
    assert r5.reports[0].study_ids == ["ImagingStudy/img5"]
    trop = r5.observations[0]
    assert (trop.interpretation, trop.interpretation_computed) == ("HH", False)


def test_choose_among_several_patients(make_bundle: Any, patient: Any, creatinine: Any) -> None:
    bundle = load_bundle(
        make_bundle([patient("p1"), patient("p2"), creatinine("a", "Patient/p1"), creatinine("b", "Patient/p2", 3.0)])
    )
    from okaflow.tools.fhir import build_patient_context

    for chosen in ("p2", "Patient/p2", "https://fhir.example.org/fhir/Patient/p2", "MRN-p2"):
        ctx = build_patient_context(bundle, patient_id=chosen)
        assert ctx.patient is not None and ctx.patient.id == "Patient/p2"
        assert [o.id for o in ctx.observations] == ["Observation/b"]
        assert ctx.warnings == []


def test_subjectless_facts(make_bundle: Any, patient: Any, creatinine: Any) -> None:
    orphan = {k: v for k, v in creatinine().items() if k != "subject"}
    single = read_patient_context(make_bundle([patient(), orphan]))
    assert [o.id for o in single.observations] == ["Observation/cr1"]
    assert "Observation/cr1 has no subject; attributed to the only patient" in single.warnings
    several = read_patient_context(make_bundle([patient("p1"), patient("p2"), orphan]), patient_id="p1")
    assert several.observations == []
    assert any("has no subject and the bundle has several Patients" in w for w in several.warnings)


def test_missing_optional_fields_everywhere(make_bundle: Any, patient: Any) -> None:
    bare = [
        {"resourceType": "Patient", "id": "p1"},
        {"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/p1"}},
        {
            "resourceType": "Observation",
            "id": "o",
            "status": "final",
            "code": {},
            "subject": {"reference": "Patient/p1"},
        },
        {"resourceType": "AllergyIntolerance", "id": "a", "patient": {"reference": "Patient/p1"}},
        {"resourceType": "Procedure", "id": "pr", "status": "completed", "subject": {"reference": "Patient/p1"}},
        {
            "resourceType": "DiagnosticReport",
            "id": "d",
            "status": "final",
            "code": {},
            "subject": {"reference": "Patient/p1"},
        },
        {"resourceType": "ImagingStudy", "id": "i", "status": "available", "subject": {"reference": "Patient/p1"}},
    ]
    ctx = read_patient_context(make_bundle(bare), version="R4")  # R5 requires Condition.clinicalStatus
    assert ctx.patient is not None and ctx.patient.name is None
    assert ctx.conditions[0].text == "Condition (no code)"
    assert ctx.observations[0].text == "Observation (no code)" and ctx.observations[0].value is None
    assert ctx.allergies[0].substance == "unknown substance"
    assert ctx.procedures[0].text == "Procedure (no code)"
    assert ctx.reports[0].conclusion is None
    assert ctx.imaging_studies[0].study_uid is None and ctx.imaging_studies[0].series == []
    assert len(ctx.evidence()) == 7
    encounter = {"resourceType": "Encounter", "id": "e", "status": "planned", "subject": {"reference": "Patient/p1"}}
    r5 = read_patient_context(make_bundle([bare[0], encounter]), version="R5")  # R4 requires Encounter.class
    assert (r5.encounters[0].text, r5.encounters[0].encounter_class, r5.encounters[0].start) == (
        "Encounter",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("value", "comparator", "low", "high", "expected"),
    [
        (1.3, None, 0.6, 1.2, "H"),
        (1.2, None, 0.6, 1.2, "N"),  # the bounds are inside the range
        (0.5, None, 0.6, 1.2, "L"),
        (0.9, None, None, 1.2, "N"),
        (0.9, None, None, None, None),
        (0.5, "<", 0.6, None, "L"),
        (0.6, "<", 0.6, None, "L"),
        (0.6, "<=", 0.6, None, None),  # could be exactly the low bound
        (5.0, "<", 3.0, 10.0, None),  # below 5 but above or below 3? cannot tell
        (0.01, "<", None, 0.04, "N"),
        (90.0, ">", None, 60.0, "H"),
        (60.0, ">", None, 60.0, "H"),
        (60.0, ">=", 10.0, None, "N"),
        (60.0, ">=", 10.0, 90.0, None),
        (60.0, "ad", 10.0, 90.0, None),
    ],
)
def test_compute_interpretation(
    value: float, comparator: str | None, low: float | None, high: float | None, expected: str | None
) -> None:
    assert compute_interpretation(value, comparator, low, high) == expected


def test_synthea_like_transaction() -> None:
    path = DATA / "synthea_r4_transaction.json"
    bundle = load_bundle(path)
    assert (bundle.version, bundle.bundle_type, len(bundle.entries)) == ("R4", "transaction", 230)
    ctx = read_patient_context(path)
    assert ctx.patient is not None and ctx.patient.name == "Rosa734 Kuhlman484"
    assert {i.value for i in ctx.patient.identifiers} == {"syn-000777"}
    assert len(ctx.encounters) == 32 and len(ctx.observations) == 96
    series = ctx.observation_series(min_points=3)
    assert len(series["http://loinc.org|4548-4"]) == 32  # HbA1c trend, oldest first
    a1c = series["http://loinc.org|4548-4"]
    assert a1c[0].effective == "2010-03-10T09:00:00-04:00" and a1c[-1].effective.startswith("2025-09")
    assert ctx.encounters[0].reasons == ["Diabetes mellitus type 2 (disorder)"]
    assert ctx.medications[0].dosage == "dose 1, 1× per d"
    # Practitioners resolve through Synthea's conditional references; Organizations are elsewhere.
    assert not any("Practitioner" in w for w in ctx.warnings)
    assert any(w.startswith("64 references to Organization") for w in ctx.warnings)
