"""Trend plots: fixed size, deterministic, H/L marks, dates with and without time."""

from __future__ import annotations

import math
import time
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
from okaflow.tools.reporting._plots import _date_ticks, _value_label, _value_ticks

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


@pytest.mark.parametrize(
    ("start", "end", "first_label"),
    [
        ("2024-03-05T08:00:00", "2024-03-05T08:20:00", ["08:00", "05 Mar 2024"]),  # minutes
        ("2024-03-05T06:00:00", "2024-03-06T02:00:00", ["06:00", "05 Mar 2024"]),  # hours
        ("2024-03-05", "2024-03-19", ["06 Mar", "2024"]),  # days
        ("2023-11-20", "2024-06-01", ["Dec", "2023"]),  # months, across a year
        ("1961", "2024", ["1970"]),  # decades
    ],
)
def test_date_ticks_fit_the_axis(start: str, end: str, first_label: list[str]) -> None:
    lo, hi = parse_fhir_datetime(start), parse_fhir_datetime(end)
    ticks = _date_ticks(lo, hi, 8)
    assert 2 <= len(ticks) <= 8
    assert all(lo <= when <= hi for when, _ in ticks)
    assert [when for when, _ in ticks] == sorted(when for when, _ in ticks)
    assert ticks[0][1] == first_label


def test_value_ticks_are_round_and_cover_the_range() -> None:
    assert _value_ticks(10.05, 14.55) == [11.0, 12.0, 13.0, 14.0]
    ticks = _value_ticks(-0.3, 0.9)
    assert ticks == [-0.25, 0.0, 0.25, 0.5, 0.75]
    assert [_value_label(v, ticks) for v in ticks] == ["-0.25", "0.00", "0.25", "0.50", "0.75"]
    assert [_value_label(v, [-0.0, 2.0]) for v in (-0.0, 2.0)] == ["0", "2"]
    # Platelets per litre, or a hormone in mol/L: scientific notation, still one label per tick.
    big = _value_ticks(-3e8, 1.2e9)
    assert [_value_label(v, big) for v in big] == ["0", "5e+08", "1e+09"]
    tiny = _value_ticks(1e-9, 1.0000002e-9)
    assert len({_value_label(v, tiny) for v in tiny}) == len(tiny) >= 3


def test_hourly_vitals_and_flat_series_plot() -> None:
    hourly = [
        ObservationFact(
            id=f"Observation/hr-{h}", text="Heart rate", value=v, unit="/min", effective=f"2024-03-05T{h:02}:00:00Z"
        )
        for h, v in [(6, 72), (9, 75), (13, 118), (18, 80)]
    ]
    flat = [p.model_copy(update={"value": 0.0, "id": f"{p.id}-flat"}) for p in hourly]
    for series in (hourly, flat):
        img = plot_observation_trend(series)
        assert img.size == TREND_SIZE
        assert _red_pixels(img) == 0  # no range, no interpretation: nothing flagged


@pytest.mark.parametrize("last", ["9999-06-01", "9999-12-31"])
def test_dates_at_the_end_of_the_calendar_still_plot(last: str) -> None:
    points = [
        ObservationFact(id=f"Observation/far-{i}", text="Far", value=v, unit="mg", effective=d)
        for i, (v, d) in enumerate([(1, "9999-01-01"), (2, last)])
    ]
    assert plot_observation_trend(points).size == TREND_SIZE


def test_values_no_axis_can_show_are_refused_naming_the_observation() -> None:
    def series(*values: float) -> list[ObservationFact]:
        dates = ["2024-01-01", "2024-02-01", "2024-03-01"]
        return [
            ObservationFact(id=f"Observation/v-{i}", text="V", value=v, unit="mg", effective=dates[i])
            for i, v in enumerate(values)
        ]

    with pytest.raises(ValueError, match="Observation/v-1 has the value inf, which no axis can place"):
        plot_observation_trend(series(1.0, math.inf))
    with pytest.raises(ValueError, match="Observation/v-0 has the value nan"):
        plot_observation_trend(series(math.nan, 1.0))
    with pytest.raises(ValueError, match="more than one axis can show"):
        plot_observation_trend(series(-1e308, 1e308))
    # The drawn range is the newest one: an unplottable range on an older point does not matter.
    ranged = series(1.0, 2.0, 3.0)
    ranged[0] = ranged[0].model_copy(update={"reference_high": math.inf})
    ranged[2] = ranged[2].model_copy(update={"reference_low": 0.5, "reference_high": 4.0})
    assert plot_observation_trend(ranged).size == TREND_SIZE
    ranged[2] = ranged[2].model_copy(update={"reference_high": math.inf})
    with pytest.raises(ValueError, match="Observation/v-2 has a reference range bound of inf, which no axis"):
        plot_observation_trend(ranged)


def test_a_trend_costs_milliseconds_not_tens(hb_points: list[ObservationFact]) -> None:
    # Every run draws one plot per series; matplotlib took ~40 ms each and most of a run's CPU.
    # CPU time, so a busy machine does not make the plot look slow.
    plot_observation_trend(hb_points)
    start = time.process_time()
    for _ in range(10):
        plot_observation_trend(hb_points)
    assert (time.process_time() - start) / 10 < 0.025
