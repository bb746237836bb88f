"""The example cases: bundles parse cleanly and agree with the DICOM files they point at."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file

from okaflow.tools.fhir import PatientContext, read_patient_context

CASES = Path(__file__).resolve().parents[3] / "examples" / "cases"
WORKFLOWS = {"radiology-report", "clinical-vqa", "longitudinal-comparison"}


def _case(name: str) -> tuple[dict[str, Any], PatientContext]:
    case = json.loads((CASES / name / "case.json").read_text())
    return case, read_patient_context(CASES / name / case["bundle"])


@pytest.mark.parametrize(
    ("name", "version"), [("chest-ct-followup", "R4"), ("brain-mri", "R4"), ("obstetric-ultrasound", "R5")]
)
def test_case_matches_its_images(name: str, version: str) -> None:
    case, ctx = _case(name)
    assert case["id"] == name and case["workflow"] in WORKFLOWS and case["task"] and case["title"]
    assert ctx.fhir_version == version
    assert ctx.warnings == []
    assert ctx.patient is not None
    identifiers = {i.value for i in ctx.patient.identifiers}
    for image in case["images"]:
        assert image["path"].startswith("pydicom:")
        assert image.get("role") in (None, "current", "prior")
        ds = pydicom.dcmread(get_testdata_file(image["path"].removeprefix("pydicom:")), stop_before_pixels=True)
        assert ds.PatientID in identifiers
        assert image.get("modality") in (None, ds.Modality)
        study = ctx.study_by_uid(ds.StudyInstanceUID)
        assert study is not None, f"{image['path']}: no ImagingStudy for {ds.StudyInstanceUID}"
        (series,) = study.series
        assert series.uid == ds.SeriesInstanceUID
        assert series.instance_uids == [ds.SOPInstanceUID]
        assert study.modalities == [ds.Modality]
        if ds.StudyDate:  # synthetic dates never contradict the DICOM header
            assert study.started is not None
            assert study.started[:10].replace("-", "") == ds.StudyDate


def test_chest_ct_followup_trends_and_prior_report() -> None:
    case, ctx = _case("chest-ct-followup")
    # pydicom ships one chest CT (CT_small); the prior is the admission chest X-ray, known by its report.
    roles = {i["role"]: i["path"] for i in case["images"]}
    assert roles == {"current": "pydicom:CT_small.dcm"}
    series = ctx.observation_series(min_points=3)
    for code in ("1988-5", "6690-2", "2160-0"):  # CRP, WBC, creatinine
        points = series[f"http://loinc.org|{code}"]
        assert len(points) >= 3
        assert all(p.reference_low is not None and p.reference_high is not None for p in points)
        flags = {p.interpretation for p in points}
        assert flags & {"H", "L"} and "N" in flags  # some outside the range, some inside
        assert {p.interpretation_computed for p in points} == {True, False}  # some given, some computed
    current = ctx.study_by_uid("1.3.6.1.4.1.5962.1.2.1.20040119072730.12322")
    assert current is not None
    (report,) = ctx.reports
    assert report.study_ids == []
    assert (report.effective or "") < (current.started or "")
    assert report.conclusion and "consolidation" in report.conclusion


def test_brain_mri_history_and_vitals() -> None:
    _, ctx = _case("brain-mri")
    assert ctx.patient is not None and ctx.patient.gender == "female"  # DICOM PatientSex F
    assert any("headache" in c.text.lower() for c in ctx.active_conditions)
    bp = [o for o in ctx.observations if o.components]
    assert bp and all(
        {c.text for c in o.components} == {"Systolic blood pressure", "Diastolic blood pressure"} for o in bp
    )
    assert any(c.interpretation == "H" for o in bp for c in o.components)
    assert len([o for o in ctx.observations if o.category == "laboratory"]) >= 3


def test_obstetric_ultrasound_context() -> None:
    _, ctx = _case("obstetric-ultrasound")
    assert ctx.patient is not None and ctx.patient.gender == "female"
    assert any(c.text == "Normal pregnancy" and c.is_active for c in ctx.conditions)
    ga = [o for o in ctx.observations if o.text == "Gestational age Estimated"]
    assert [(o.value, o.unit, o.effective) for o in ga] == [(70.0, "d", "2011-03-15"), (141.0, "d", "2011-05-25")]
    assert any(o.text == "Delivery date Estimated" and o.value_text == "2011-10-11" for o in ctx.observations)
    kinds = {m.resource_type for m in ctx.medications}
    assert kinds == {"MedicationRequest", "MedicationStatement"}
