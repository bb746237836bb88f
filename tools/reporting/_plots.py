"""Lab-trend plots drawn from FHIR observations, as PIL images ready for the artifact store.

matplotlib is imported inside the functions (``import okaflow`` must stay light), drawn on a bare
``Figure`` with the Agg canvas (no pyplot: no global figure registry, no GUI backend switching), and
under matplotlib's default style so a user's ``matplotlibrc`` cannot change a report. Fixed size and
dpi, and pixels read straight from the canvas, make the output deterministic for one matplotlib.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from okaflow.tools.fhir._models import ObservationFact

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "PANEL_CELL_SIZE",
    "TREND_SIZE",
    "parse_fhir_datetime",
    "plot_observation_panel",
    "plot_observation_trend",
]

# Output size in pixels of one trend plot: (width, height) at 100 dpi.
TREND_SIZE = (720, 360)
# Size in pixels of one cell of ``plot_observation_panel``'s grid.
PANEL_CELL_SIZE = (480, 280)
_DPI = 100
# Fixed margins (fractions of the figure) instead of constrained layout, which measured every tick
# label and cost two thirds of the drawing time; sized for 7-character tick labels and a 12 pt title.
_TREND_MARGINS = {"left": 0.1, "right": 0.98, "bottom": 0.12, "top": 0.89}

_HIGH = {"H", "HH", "HU", ">"}
_LOW = {"L", "LL", "LU", "<"}
_NORMAL_COLOUR = "#1f4e79"
_OUT_COLOUR = "#c0392b"
_BAND_COLOUR = "#2e8b57"


@dataclass(frozen=True)
class _Point:
    when: datetime
    value: float
    flag: str | None  # "H", "L" or None


def parse_fhir_datetime(value: str) -> datetime:
    """Parse a FHIR ``date``/``dateTime`` (``2024``, ``2024-03``, ``2024-03-05``, ``…T08:30:00Z``).

    Partial dates land on their first day; times with an offset are converted to UTC and made naive,
    so dates with and without a time can share one axis.

    Raises:
        ValueError: The string is not a FHIR date or dateTime.
    """
    text = value.strip()
    if len(text) == 4 and text.isdigit():
        return datetime(int(text), 1, 1)
    if len(text) == 7 and text[4] == "-":
        return datetime(int(text[:4]), int(text[5:7]), 1)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def plot_observation_trend(points: list[ObservationFact], *, title: str | None = None) -> Image.Image:
    """Draw one observation series over time.

    The reference range (from the newest point that has one) is a shaded band; points outside it, or
    that the record itself interprets as high/low, are red and marked ``H``/``L``.

    Args:
        points: Measurements of one thing (e.g. ``PatientContext.observation_series()`` values).
            Points without a numeric value or a date are left out.
        title: Plot title; defaults to the first point's ``text``.

    Returns:
        An RGB image of exactly ``TREND_SIZE`` pixels.

    Raises:
        ValueError: No point has both a value and a parseable date, or the points mix units.
    """
    from matplotlib.figure import Figure

    width, height = TREND_SIZE
    with _default_style():
        fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
        fig.subplots_adjust(**_TREND_MARGINS)
        _draw_trend(fig.add_subplot(), points, title=title, compact=False)
        return _to_image(fig)


def plot_observation_panel(
    series: Mapping[str, list[ObservationFact]], *, columns: int = 2, title: str | None = None
) -> Image.Image:
    """Draw several series as small multiples, one panel per series, in the mapping's order.

    Args:
        series: Panel key to points (keys are not shown; each panel is titled by its first
            point's text, so ``PatientContext.observation_series()`` can be passed directly).
        columns: Panels per row (fewer if there are fewer series).
        title: Optional title over the whole panel.

    Returns:
        An RGB image of ``columns × rows`` cells of ``PANEL_CELL_SIZE`` pixels each.

    Raises:
        ValueError: ``series`` is empty, ``columns < 1``, or a series cannot be plotted (see
            :func:`plot_observation_trend`).
    """
    from matplotlib.figure import Figure

    if not series:
        raise ValueError("plot_observation_panel needs at least one series")
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    ncols = min(columns, len(series))
    nrows = math.ceil(len(series) / ncols)
    cell_w, cell_h = PANEL_CELL_SIZE
    with _default_style():
        fig = Figure(figsize=(ncols * cell_w / _DPI, nrows * cell_h / _DPI), dpi=_DPI, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False)
        for ax, (key, points) in zip(axes.flat, series.items(), strict=False):
            try:
                _draw_trend(ax, points, title=None, compact=True)
            except ValueError as exc:
                raise ValueError(f"series {key!r}: {exc}") from None
        for ax in list(axes.flat)[len(series) :]:
            ax.set_axis_off()
        if title:
            fig.suptitle(title, fontsize=12, fontweight="bold")
        return _to_image(fig)


def _draw_trend(ax: Axes, facts: list[ObservationFact], *, title: str | None, compact: bool) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    usable = [f for f in facts if f.value is not None and f.effective]
    if not usable:
        raise ValueError("no observation has both a numeric value and an effective date")
    units = sorted({f.unit or "" for f in usable})
    if len(units) > 1:
        # Plotting mg/dL and mmol/L on one axis would draw a false trend; convert first.
        raise ValueError(f"observations mix units {units}; convert them to one unit before plotting")
    low, high = _reference_range(usable)
    pts = sorted(
        (_point(f, f.value, f.effective, low, high) for f in usable if f.value is not None and f.effective),
        key=lambda p: p.when,
    )
    # Matplotlib's own date numbers: typed as floats, and free of the unit-converter registry.
    xs = [_date_num(p.when) for p in pts]
    ys = [p.value for p in pts]

    if low is not None and high is not None:
        ax.axhspan(low, high, color=_BAND_COLOUR, alpha=0.15, lw=0, label=f"reference {low:g}–{high:g}")
    else:
        # A one-sided range (e.g. "< 5") has no band to shade: draw its limit as a line.
        for bound in (b for b in (low, high) if b is not None):
            ax.axhline(bound, color=_BAND_COLOUR, ls="--", lw=1, label=f"reference limit {bound:g}")
    ax.plot(xs, ys, color=_NORMAL_COLOUR, lw=1.5, zorder=2)
    colours = [_OUT_COLOUR if p.flag else _NORMAL_COLOUR for p in pts]
    ax.scatter(xs, ys, c=colours, s=28 if compact else 36, zorder=3, edgecolors="white", linewidths=0.8)
    for p in pts:
        if p.flag:
            ax.annotate(
                p.flag,
                (_date_num(p.when), p.value),
                xytext=(0, 7),
                textcoords="offset points",
                ha="center",
                fontsize=8 if compact else 9,
                fontweight="bold",
                color=_OUT_COLOUR,
            )

    # Keep the whole band and every point (with room for its H/L mark) in view.
    lo = min([*ys, *(b for b in (low, high) if b is not None)])
    hi = max([*ys, *(b for b in (low, high) if b is not None)])
    margin = (hi - lo) * 0.15 or abs(hi) * 0.1 or 1.0
    ax.set_ylim(lo - margin, hi + margin)
    if xs[0] == xs[-1]:
        # One date alone would get matplotlib's default span of years; a fortnight (in days) reads better.
        ax.set_xlim(xs[0] - 7, xs[0] + 7)
    # matplotlib's stubs leave these two constructors unannotated.
    locator = AutoDateLocator(minticks=3, maxticks=6 if compact else 8)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.xaxis.get_offset_text().set_fontsize(8)
    unit = units[0]
    ax.set_ylabel(unit or "value", fontsize=9)
    ax.set_title(title or usable[0].text, fontsize=10 if compact else 12, loc="left")
    ax.grid(True, axis="y", color="#dddddd", lw=0.6)
    ax.tick_params(labelsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=7, frameon=False)


def _date_num(when: datetime) -> float:
    """Matplotlib's date number (days since its epoch) for ``when``."""
    from matplotlib.dates import date2num

    return float(date2num(when))  # type: ignore[no-untyped-call]  # unannotated in matplotlib's stubs


def _reference_range(facts: list[ObservationFact]) -> tuple[float | None, float | None]:
    """The newest point's range; labs change ranges over time, and the newest is what a reader uses."""
    with_range = [f for f in facts if f.reference_low is not None or f.reference_high is not None]
    if not with_range:
        return None, None
    newest = max(with_range, key=lambda f: _sort_key(f.effective))
    return newest.reference_low, newest.reference_high


def _sort_key(effective: str | None) -> datetime:
    try:
        return parse_fhir_datetime(effective or "")
    except ValueError:
        return datetime.min


def _point(fact: ObservationFact, value: float, effective: str, low: float | None, high: float | None) -> _Point:
    """One plotted point, flagged H/L by the record's interpretation, else by the reference range."""
    try:
        when = parse_fhir_datetime(effective)
    except ValueError:
        raise ValueError(f"{fact.id}: effective {effective!r} is not a FHIR date or dateTime") from None
    code = (fact.interpretation or "").upper()
    flag: str | None = None
    if code in _HIGH:
        flag = "H"
    elif code in _LOW:
        flag = "L"
    elif not code:
        if high is not None and value > high:
            flag = "H"
        elif low is not None and value < low:
            flag = "L"
    return _Point(when, value, flag)


@contextlib.contextmanager
def _default_style() -> Iterator[None]:
    """matplotlib's default rcParams for the duration of a plot, whatever the user's matplotlibrc."""
    import matplotlib as mpl

    with mpl.rc_context():
        mpl.rcdefaults()
        # DejaVu ships inside matplotlib, so the glyphs do not depend on the machine's fonts.
        mpl.rcParams["font.family"] = "DejaVu Sans"
        yield


def _to_image(fig: Any) -> Image.Image:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # type: ignore[no-untyped-call]
    rgba = np.asarray(canvas.buffer_rgba())  # type: ignore[no-untyped-call]
    return Image.fromarray(np.ascontiguousarray(rgba[..., :3]))
