"""Analysis tools: results cite what they summarise; misleading requests are refused with a reason."""

from __future__ import annotations

import pytest

from okaflow import Case
from okaflow.tools.analysis import ObservationTrendTool, ToolArgumentError, ToolContext
from okaflow.tools.fhir import Coding, ObservationFact, PatientContext


def _obs(n: int, value: float, unit: str) -> ObservationFact:
    return ObservationFact(
        id=f"Observation/cr-{n}",
        text="Creatinine",
        coding=[Coding(system="http://loinc.org", code="2160-0")],
        value=value,
        unit=unit,
        effective=f"2026-0{n}-01",
    )


def test_trend_summarises_and_cites_its_points(ct_pair_case: Case) -> None:
    (row,) = ObservationTrendTool().run({"key": "2160-0"}, ToolContext(case=ct_pair_case))
    assert row.id == "Trend/2160-0"
    assert row.data["points"] == ["Observation/cr-1", "Observation/cr-2", "Observation/cr-3"]
    assert "1 → 1.3 → 1.6 mg/dL" in row.summary and "rising" in row.summary


def test_trend_across_units_is_refused() -> None:
    patient = PatientContext(fhir_version="R4", observations=[_obs(1, 1.1, "mg/dL"), _obs(2, 97, "umol/L")])
    case = Case.from_objects(patient, [])
    with pytest.raises(ToolArgumentError, match="different units"):
        ObservationTrendTool().run({"key": "2160-0"}, ToolContext(case=case))
