"""Trend plots: fixed size, deterministic, H/L marks, dates with and without time."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import numpy as np
import pytest

from okaflow.tools.fhir import ObservationFact
from okaflow.tools.reporting import (
    PANEL_CELL_SIZE,
    TREND_SIZE,
    parse_fhir_datetime,
    plot_observation_panel,
    plot_observation_trend,
)

_RED = np.array([0xC0, 0x39, 0x2B])


def _red_pixels(img: object) -> int:
    px = np.asarray(img).astype(int)
    return int((np.abs(px - _RED).sum(axis=2) < 40).sum())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024", datetime(2024, 1, 1)),
        ("2024-03", datetime(2024, 3, 1)),
        ("2024-03-05", datetime(2024, 3, 5)),
        ("2024-03-05T08:30:00Z", datetime(2024, 3, 5, 8, 30)),
        ("2024-03-05T10:30:00+02:00", datetime(2024, 3, 5, 8, 30)),
        ("2024-03-05T08:30:00.123", datetime(2024, 3, 5, 8, 30, 0, 123000)),
    ],
)
def test_parse_fhir_datetime(text: str, expected: datetime) -> None:
    assert parse_fhir_datetime(text) == expected


def test_parse_fhir_datetime_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="Invalid isoformat"):
        parse_fhir_datetime("last tuesday")


def test_trend_has_fixed_size_and_is_deterministic(hb_points: list[ObservationFact]) -> None:
    a = plot_observation_trend(hb_points)
    b = plot_observation_trend(list(reversed(hb_points)))  # input order must not matter
    assert a.size == TREND_SIZE
    assert a.mode == "RGB"
    assert a.tobytes() == b.tobytes()


def test_out_of_range_points_are_marked_red(hb_points: list[ObservationFact]) -> None:
    in_range = [p.model_copy(update={"value": 13.0 + i * 0.5}) for i, p in enumerate(hb_points)]
    assert _red_pixels(plot_observation_trend(in_range)) == 0
    assert _red_pixels(plot_observation_trend(hb_points)) > 20


def test_interpretation_code_wins_over_range(hb_points: list[ObservationFact]) -> None:
    no_range = [p.model_copy(update={"reference_low": None, "reference_high": None, "value": 5.0}) for p in hb_points]
    assert _red_pixels(plot_observation_trend(no_range)) == 0
    flagged = [*no_range[:-1], no_range[-1].model_copy(update={"interpretation": "HH"})]
    assert _red_pixels(plot_observation_trend(flagged)) > 10


def test_title_changes_pixels(hb_points: list[ObservationFact]) -> None:
    assert plot_observation_trend(hb_points).tobytes() != plot_observation_trend(hb_points, title="Hb").tobytes()


def test_single_point_and_one_sided_range() -> None:
    point = ObservationFact(
        id="Observation/crp", text="CRP", value=40, unit="mg/L", effective="2024-01-05", reference_high=5
    )
    img = plot_observation_trend([point])
    assert img.size == TREND_SIZE
    assert _red_pixels(img) > 10


def test_mixed_units_are_refused(hb_points: list[ObservationFact]) -> None:
    mixed = [*hb_points[:-1], hb_points[-1].model_copy(update={"unit": "mmol/L"})]
    with pytest.raises(ValueError, match="mix units"):
        plot_observation_trend(mixed)


def test_no_plottable_point_is_refused() -> None:
    text_only = ObservationFact(id="Observation/x", text="Urine colour", value_text="amber", effective="2024")
    with pytest.raises(ValueError, match="numeric value"):
        plot_observation_trend([text_only])


def test_bad_date_names_the_observation(hb_points: list[ObservationFact]) -> None:
    bad = [*hb_points, hb_points[0].model_copy(update={"id": "Observation/bad", "effective": "yesterday"})]
    with pytest.raises(ValueError, match="Observation/bad"):
        plot_observation_trend(bad)


def test_panel_grid_size(hb_points: list[ObservationFact]) -> None:
    crp = [
        ObservationFact(id=f"Observation/crp-{i}", text="CRP", value=v, unit="mg/L", effective=d, reference_high=5)
        for i, (v, d) in enumerate([(3, "2024-01-01"), (40, "2024-01-03")])
    ]
    img = plot_observation_panel({"hb": hb_points, "crp": crp, "hb2": hb_points}, columns=2, title="Labs")
    assert img.size == (2 * PANEL_CELL_SIZE[0], 2 * PANEL_CELL_SIZE[1])
    one = plot_observation_panel({"hb": hb_points}, columns=3)
    assert one.size == PANEL_CELL_SIZE


def test_panel_errors_name_the_series(hb_points: list[ObservationFact]) -> None:
    with pytest.raises(ValueError, match="at least one"):
        plot_observation_panel({})
    with pytest.raises(ValueError, match="'broken'"):
        plot_observation_panel({"hb": hb_points, "broken": []})


def test_user_rcparams_do_not_change_the_plot(hb_points: list[ObservationFact]) -> None:
    import matplotlib as mpl

    before = plot_observation_trend(hb_points).tobytes()
    with mpl.rc_context({"lines.linewidth": 6, "axes.facecolor": "black", "font.size": 20}):
        during = plot_observation_trend(hb_points).tobytes()
    assert during == before


def test_import_okaflow_reporting_does_not_import_matplotlib() -> None:
    code = (
        "import sys, okaflow, okaflow.tools.reporting; "
        "sys.exit(1 if any(m == 'matplotlib' or m.startswith('matplotlib.') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
