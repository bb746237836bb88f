"""Lab-trend plots drawn from FHIR observations, as PIL images ready for the artifact store.

Drawn with Pillow alone, on a canvas twice the output size that is then reduced (anti-aliased lines
and dots), with DejaVu Sans (:mod:`okaflow.tools.reporting._fonts`). A report draws one plot per
observation series, so this sits on every run's path: it costs a few milliseconds where matplotlib
took about 40 (and did most of a run's CPU work). Fixed sizes, fonts and rules make the output
deterministic; nothing a user configures elsewhere changes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from PIL import Image, ImageDraw

from okaflow.tools.fhir._models import ObservationFact
from okaflow.tools.reporting._fonts import Font, font, font_text

__all__ = [
    "PANEL_CELL_SIZE",
    "TREND_SIZE",
    "parse_fhir_datetime",
    "plot_observation_panel",
    "plot_observation_trend",
]

# Output size in pixels of one trend plot: (width, height).
TREND_SIZE = (720, 360)
# Size in pixels of one cell of ``plot_observation_panel``'s grid.
PANEL_CELL_SIZE = (480, 280)
# Drawn at this multiple of the output size, then reduced: smooth lines without a slow anti-aliaser.
_SCALE = 2

_HIGH = {"H", "HH", "HU", ">"}
_LOW = {"L", "LL", "LU", "<"}
_NORMAL_COLOUR = (0x1F, 0x4E, 0x79)
_OUT_COLOUR = (0xC0, 0x39, 0x2B)
_BAND_COLOUR = (0x2E, 0x8B, 0x57)
# The band as matplotlib drew it (alpha 0.15 over white), mixed once.
_BAND_FILL = (0xE0, 0xEE, 0xE6)
_GRID_COLOUR = (0xDD, 0xDD, 0xDD)
_INK = (0x22, 0x22, 0x22)
_WHITE = (255, 255, 255)
_EPOCH = datetime(1970, 1, 1)

# Calendar tick steps, finest first: the first that gives at most the allowed number of ticks is used.
_DATE_STEPS: tuple[tuple[str, int], ...] = (
    *(("minute", n) for n in (1, 5, 15, 30)),
    *(("hour", n) for n in (1, 3, 6, 12)),
    *(("day", n) for n in (1, 2, 7, 14)),
    *(("month", n) for n in (1, 2, 3, 6)),
    *(("year", n) for n in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)),
)


@dataclass(frozen=True)
class _Style:
    """Sizes in output pixels for one kind of plot."""

    title_px: int
    title_gap: int  # from the title's baseline to the plot's top edge, plus the title's height
    tick_px: int
    label_px: int
    mark_px: int
    legend_px: int
    dot_radius: float
    max_x_ticks: int


_FULL = _Style(
    title_px=17, title_gap=18, tick_px=11, label_px=12, mark_px=12, legend_px=10, dot_radius=4.2, max_x_ticks=8
)
_COMPACT = _Style(
    title_px=14, title_gap=14, tick_px=11, label_px=12, mark_px=11, legend_px=10, dot_radius=3.7, max_x_ticks=6
)


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
        ValueError: No point has both a value and a parseable date, the points mix units, or a value or
            the drawn reference range is not a finite number (or they span more than a float can).
    """
    canvas = _Canvas(TREND_SIZE)
    _draw_trend(canvas, (0, 0, *TREND_SIZE), points, title=title, style=_FULL)
    return canvas.finish()


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
    if not series:
        raise ValueError("plot_observation_panel needs at least one series")
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    ncols = min(columns, len(series))
    nrows = math.ceil(len(series) / ncols)
    cell_w, cell_h = PANEL_CELL_SIZE
    canvas = _Canvas((ncols * cell_w, nrows * cell_h))
    top = 0.0
    if title:
        heading, text = font_text(title, 17 * _SCALE, bold=True)
        canvas.text((ncols * cell_w / 2, 6), text, heading, _INK, anchor="ma")
        top = 30.0
    row_h = (nrows * cell_h - top) / nrows
    for index, (key, points) in enumerate(series.items()):
        row, col = divmod(index, ncols)
        box = (col * cell_w, top + row * row_h, (col + 1) * cell_w, top + (row + 1) * row_h)
        try:
            _draw_trend(canvas, box, points, title=None, style=_COMPACT)
        except ValueError as exc:
            raise ValueError(f"series {key!r}: {exc}") from None
    return canvas.finish()


class _Canvas:
    """A white RGB canvas drawn at ``_SCALE`` times the output size; coordinates are output pixels."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size
        self.image = Image.new("RGB", (size[0] * _SCALE, size[1] * _SCALE), _WHITE)
        self.draw = ImageDraw.Draw(self.image)

    def finish(self) -> Image.Image:
        return self.image.reduce(_SCALE)

    def line(self, points: Iterable[tuple[float, float]], colour: tuple[int, int, int], width: float) -> None:
        xy = [(x * _SCALE, y * _SCALE) for x, y in points]
        self.draw.line(xy, fill=colour, width=max(1, round(width * _SCALE)), joint="curve")

    def dashed(self, start: tuple[float, float], end: float, colour: tuple[int, int, int], width: float) -> None:
        """A horizontal dashed line from ``start`` to x = ``end``."""
        x, y = start
        while x < end:
            self.line([(x, y), (min(x + 6, end), y)], colour, width)
            x += 10

    def rect(self, box: tuple[float, float, float, float], fill: tuple[int, int, int]) -> None:
        self.draw.rectangle([round(v * _SCALE) for v in box], fill=fill)

    def frame(self, box: tuple[float, float, float, float], colour: tuple[int, int, int], width: float) -> None:
        self.draw.rectangle([round(v * _SCALE) for v in box], outline=colour, width=max(1, round(width * _SCALE)))

    def dot(self, centre: tuple[float, float], radius: float, fill: tuple[int, int, int]) -> None:
        x, y = centre[0] * _SCALE, centre[1] * _SCALE
        r = radius * _SCALE
        self.draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=_WHITE, width=_SCALE)

    def text(
        self, at: tuple[float, float], text: str, face: Font, colour: tuple[int, int, int], *, anchor: str = "la"
    ) -> None:
        self.draw.text((at[0] * _SCALE, at[1] * _SCALE), text, font=face, fill=colour, anchor=anchor)

    def vertical_text(self, at: tuple[float, float], text: str, face: Font, colour: tuple[int, int, int]) -> None:
        """``text`` turned a quarter left, its box's left-middle at ``at``."""
        left, top, right, bottom = face.getbbox(text)
        strip = Image.new("L", (int(right - left) + 2, int(bottom - top) + 2), 0)
        ImageDraw.Draw(strip).text((1 - left, 1 - top), text, font=face, fill=255)
        turned = strip.rotate(90, expand=True)
        x, y = round(at[0] * _SCALE), round(at[1] * _SCALE - turned.height / 2)
        self.image.paste(Image.new("RGB", turned.size, colour), (x, y), turned)

    @staticmethod
    def width(text: str, face: Font) -> float:
        """The width of ``text`` in output pixels."""
        return face.getlength(text) / _SCALE


def _draw_trend(
    canvas: _Canvas,
    box: tuple[float, float, float, float],
    facts: list[ObservationFact],
    *,
    title: str | None,
    style: _Style,
) -> None:
    """One series, its axes and labels, inside ``box`` (output pixels) of ``canvas``."""
    usable = [f for f in facts if f.value is not None and f.effective]
    if not usable:
        raise ValueError("no observation has both a numeric value and an effective date")
    for f in usable:
        if f.value is not None and not math.isfinite(f.value):
            raise ValueError(f"{f.id} has the value {f.value}, which no axis can place")
    units = sorted({f.unit or "" for f in usable})
    if len(units) > 1:
        # Plotting mg/dL and mmol/L on one axis would draw a false trend; convert first.
        raise ValueError(f"observations mix units {units}; convert them to one unit before plotting")
    low = high = None
    ranged = _newest_with_range(usable)
    if ranged is not None:
        low, high = ranged.reference_low, ranged.reference_high
        for bound in (low, high):
            if bound is not None and not math.isfinite(bound):
                raise ValueError(f"{ranged.id} has a reference range bound of {bound}, which no axis can place")
    pts = sorted(
        (_point(f, f.value, f.effective, low, high) for f in usable if f.value is not None and f.effective),
        key=lambda p: p.when,
    )
    bounds = [b for b in (low, high) if b is not None]
    ys = [p.value for p in pts]
    lo, hi = min([*ys, *bounds]), max([*ys, *bounds])
    if not math.isfinite(hi - lo):
        raise ValueError(f"the values span {lo:g} to {hi:g}, more than one axis can show")
    # Keep the whole band and every point (with room for its H/L mark) in view.
    margin = (hi - lo) * 0.15 or abs(hi) * 0.1 or 1.0
    y0, y1 = lo - margin, hi + margin
    first, last = pts[0].when, pts[-1].when
    if first == last:
        # One date alone: a fortnight around it reads better than a zero-width axis.
        first, last = _shifted(first, -timedelta(days=7)), _shifted(last, timedelta(days=7))
    pad = (last - first) * 0.05
    x_start, x_end = _shifted(first, -pad), _shifted(last, pad)

    # Tick labels and H/L marks are ASCII; titles, units and the legend go through font_text.
    tick_face = font(style.tick_px * _SCALE)[0]
    mark_face = font(style.mark_px * _SCALE, bold=True)[0]
    y_ticks = _value_ticks(y0, y1)
    y_labels = [_value_label(v, y_ticks) for v in y_ticks]
    left_edge, top_edge, right_edge, bottom_edge = box
    unit_face, unit = font_text(units[0] or "value", style.label_px * _SCALE)
    label_room = max(_Canvas.width(t, tick_face) for t in y_labels)
    plot_left = left_edge + 8 + style.label_px + 6 + label_room + 7
    plot_top = top_edge + style.title_px + style.title_gap
    plot_right = right_edge - 14
    plot_bottom = bottom_edge - (2 * style.tick_px + 18)

    def px(when: datetime) -> float:
        span = (x_end - x_start).total_seconds()
        return plot_left + (when - x_start).total_seconds() / span * (plot_right - plot_left)

    def py(value: float) -> float:
        return plot_bottom - (value - y0) / (y1 - y0) * (plot_bottom - plot_top)

    # Band (or one-sided limit), grid, then the frame over them.
    if low is not None and high is not None:
        canvas.rect((plot_left, py(high), plot_right, py(low)), _BAND_FILL)
    for value in y_ticks:
        canvas.line([(plot_left, py(value)), (plot_right, py(value))], _GRID_COLOUR, 0.6)
    for bound in bounds if low is None or high is None else []:
        canvas.dashed((plot_left, py(bound)), plot_right, _BAND_COLOUR, 1.0)
    canvas.frame((plot_left, plot_top, plot_right, plot_bottom), _INK, 0.8)

    # Axes: value ticks left, calendar ticks below, the unit turned along the value axis.
    for value, label in zip(y_ticks, y_labels, strict=True):
        y = py(value)
        canvas.line([(plot_left - 4, y), (plot_left, y)], _INK, 0.8)
        canvas.text((plot_left - 6, y), label, tick_face, _INK, anchor="rm")
    canvas.vertical_text((left_edge + 8, (plot_top + plot_bottom) / 2), unit, unit_face, _INK)
    for when, lines in _date_ticks(x_start, x_end, style.max_x_ticks):
        x = px(when)
        canvas.line([(x, plot_bottom), (x, plot_bottom + 4)], _INK, 0.8)
        for row, text in enumerate(lines):
            canvas.text((x, plot_bottom + 6 + row * (style.tick_px + 2)), text, tick_face, _INK, anchor="ma")

    # The series: line, dots, H/L marks.
    xy = [(px(p.when), py(p.value)) for p in pts]
    if len(xy) > 1:
        canvas.line(xy, _NORMAL_COLOUR, 2.0)
    for p, centre in zip(pts, xy, strict=True):
        canvas.dot(centre, style.dot_radius, _OUT_COLOUR if p.flag else _NORMAL_COLOUR)
        if p.flag:
            canvas.text((centre[0], centre[1] - style.dot_radius - 3), p.flag, mark_face, _OUT_COLOUR, anchor="ms")

    title_face, heading = font_text(title or usable[0].text, style.title_px * _SCALE)
    canvas.text((plot_left, plot_top - 8), heading, title_face, _INK, anchor="ls")
    if bounds:
        legend = f"reference {low:g}–{high:g}" if len(bounds) == 2 else f"reference limit {bounds[0]:g}"
        legend_face, legend = font_text(legend, style.legend_px * _SCALE)
        plot = (plot_left, plot_top, plot_right, plot_bottom)
        _legend(canvas, legend, legend_face, plot, xy, dashed=len(bounds) == 1)


def _legend(
    canvas: _Canvas,
    text: str,
    face: Font,
    plot: tuple[float, float, float, float],
    points: list[tuple[float, float]],
    *,
    dashed: bool,
) -> None:
    """The reference key in the plot corner that hides the fewest points (top right on a tie)."""
    width = 26 + _Canvas.width(text, face)
    height = 16.0
    left, top, right, bottom = plot
    corners = [
        (right - width - 6, top + 6),
        (left + 6, top + 6),
        (right - width - 6, bottom - height - 6),
        (left + 6, bottom - height - 6),
    ]

    def hidden(corner: tuple[float, float]) -> int:
        x, y = corner
        return sum(1 for px, py in points if x - 8 <= px <= x + width + 8 and y - 8 <= py <= y + height + 8)

    x, y = min(corners, key=hidden)
    canvas.rect((x, y, x + width, y + height), _WHITE)
    if dashed:
        canvas.dashed((x + 3, y + height / 2), x + 21, _BAND_COLOUR, 1.0)
    else:
        canvas.rect((x + 3, y + 4, x + 21, y + height - 4), _BAND_FILL)
    canvas.text((x + 25, y + height / 2), text, face, _INK, anchor="lm")


def _shifted(when: datetime, by: timedelta) -> datetime:
    """``when + by``, held at the calendar's ends (year 1 and 9999) instead of overflowing."""
    try:
        return when + by
    except OverflowError:
        return datetime.min if by < timedelta(0) else datetime.max


def _value_ticks(low: float, high: float) -> list[float]:
    """Round values (1, 2, 2.5 or 5 times a power of ten apart) inside ``[low, high]``, about five of them."""
    raw = (high - low) / 5
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    exact = 1 - _last_digit(step)  # decimals that hold the step exactly, to clean off float error
    ticks: list[float] = []
    k = math.ceil(low / step - 1e-9)
    while k * step <= high + 1e-9 * step:
        ticks.append(round(k * step, exact))
        k += 1
    return ticks


def _value_label(value: float, ticks: list[float]) -> str:
    """``value`` to the tick step's last digit; in scientific notation for very large or small values."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    last = _last_digit(step)
    largest = max(abs(t) for t in ticks)
    if largest >= 1e6 or step < 1e-4:
        significant = max(1, math.floor(math.log10(largest or step)) - last + 1)
        text = f"{value:.{significant}g}"
    else:
        text = f"{value:.{max(0, -last)}f}"
    return text.lstrip("-") if text.strip("-0.") == "" else text  # no "-0"


def _last_digit(step: float) -> int:
    """The power of ten of ``step``'s last significant digit (-1 for 0.5, -2 for 0.25, 8 for 1e8)."""
    exponent = math.floor(math.log10(step))
    while abs(round(step, -exponent) - step) > step * 1e-6:
        exponent -= 1
    return exponent


def _date_ticks(start: datetime, end: datetime, most: int) -> list[tuple[datetime, list[str]]]:
    """Calendar-aligned ticks between ``start`` and ``end`` (at most ``most``), each with its label lines.

    A label gives the unit of the step; the first tick, and each tick where the larger unit changes,
    adds that larger unit on a second line (``Apr`` / ``2011``), so every date can be read without repeats.
    """
    ticks: list[datetime] = []
    unit = "year"
    for unit, every in _DATE_STEPS:
        ticks = _aligned(start, end, unit, every, most + 1)
        if len(ticks) <= most:
            break
    labelled = []
    previous: datetime | None = None
    for when in ticks:
        lines = [_tick_text(when, unit)]
        context = _context_text(when, unit)
        if context and (previous is None or _context_text(previous, unit) != context):
            lines.append(context)
        labelled.append((when, lines))
        previous = when
    return labelled


def _aligned(start: datetime, end: datetime, unit: str, every: int, limit: int) -> list[datetime]:
    """Ticks every ``every`` ``unit`` s from the first round one after ``start``, up to ``end`` or ``limit`` of them."""
    if unit in {"minute", "hour", "day"}:
        size = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}[unit]
        span = size * every
        # Multiples of the step since the epoch: round minutes and hours, and day steps that do not
        # depend on where the data starts.
        first = _EPOCH + span * math.ceil((start - _EPOCH) / span)
        return _until(first, end, lambda t: t + span, limit)
    if unit == "month":
        month = start.year * 12 + start.month - 1 + (0 if start == _month_start(start) else 1)
        month += -month % every
        first = datetime(month // 12, month % 12 + 1, 1)
        return _until(first, end, lambda t: _add_months(t, every), limit)
    year = start.year + (0 if start == datetime(start.year, 1, 1) else 1)
    year += -year % every
    years = range(year, min(end.year, 9999) + 1, every)
    return [datetime(y, 1, 1) for y in years[:limit]]


def _until(first: datetime, end: datetime, step: Callable[[datetime], datetime], limit: int) -> list[datetime]:
    ticks: list[datetime] = []
    when = first
    while when <= end and len(ticks) < limit:
        ticks.append(when)
        try:
            when = step(when)
        except (OverflowError, ValueError):  # past year 9999: the calendar ends here
            break
    return ticks


def _month_start(when: datetime) -> datetime:
    return datetime(when.year, when.month, 1)


def _add_months(when: datetime, months: int) -> datetime:
    index = when.year * 12 + when.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1)


def _tick_text(when: datetime, unit: str) -> str:
    if unit in {"minute", "hour"}:
        return when.strftime("%H:%M")
    if unit == "day":
        return when.strftime("%d %b")
    if unit == "month":
        return when.strftime("%b")
    return str(when.year)


def _context_text(when: datetime, unit: str) -> str | None:
    """The larger unit a tick label leaves out: the date under times, the year under days and months."""
    if unit in {"minute", "hour"}:
        return when.strftime("%d %b %Y")
    if unit in {"day", "month"}:
        return str(when.year)
    return None


def _newest_with_range(facts: list[ObservationFact]) -> ObservationFact | None:
    """The newest point with a reference range, whose range is drawn: labs change ranges over time, and
    the newest is what a reader uses."""
    with_range = [f for f in facts if f.reference_low is not None or f.reference_high is not None]
    return max(with_range, key=lambda f: _sort_key(f.effective)) if with_range else None


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
