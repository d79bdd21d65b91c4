"""The Gantt chart of an analysis's sub-tasks, drawn from a `Timeline` into a PNG file.

Headless: the figure is drawn on matplotlib's Agg canvas directly, without pyplot, so no
display is needed and no global backend state is touched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from cli.subtasks.timeline import (
    Bar,
    Kind,
    Span,
    Timeline,
    format_seconds,
    shared_queue,
)

DPI = 100
WIDTH_INCHES = 12.0
# Room for the title, the axis and the legend, then a fixed height per row.
BASE_INCHES = 2.0
ROW_INCHES = 0.5
MIN_HEIGHT_INCHES = 3.2

# Lookup in blues, loss in oranges; the serial steps darker than the chunks, since they are the
# stretches where one worker holds up the whole analysis.
COLOURS: dict[Kind, str] = {
    Kind.LOOKUP_CHUNK: "#5b8fc7",
    Kind.INPUTS_STEP: "#1f4e79",
    Kind.LOSS_CHUNK: "#f0a04b",
    Kind.LOSSES_STEP: "#a5520b",
    Kind.OTHER: "#8c8c8c",
}
ERROR_COLOUR = "#d62728"
CANCELLED_EDGE = "#4d4d4d"
RUN_HEIGHT = 0.62
WAIT_HEIGHT = 0.26
# A chunk's number is written in its bar when the bar is at least this share of the x axis.
LABEL_MIN_SHARE = 0.025


def figure_pixels(rows: int) -> tuple[int, int]:
    """The PNG's width and height for a chart of `rows` rows."""
    width, height = _figure_inches(rows)
    return round(width * DPI), round(height * DPI)


def _figure_inches(rows: int) -> tuple[float, float]:
    return WIDTH_INCHES, max(MIN_HEIGHT_INCHES, BASE_INCHES + ROW_INCHES * rows)


def draw_gantt(timeline: Timeline, path: Path, *, analysis: int) -> None:
    """Write the chart of `timeline` to `path` as a PNG (OSError when it cannot be written)."""
    figure = Figure(figsize=_figure_inches(len(timeline.rows)), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # the Agg canvas, set explicitly: headless, whatever MPLBACKEND says
    axes = figure.add_subplot()
    _draw_rows(axes, timeline)
    for bar in timeline.bars:
        _draw_bar(axes, bar)
    _label_chunks(axes, timeline)
    _decorate(axes, timeline, analysis)
    figure.legend(
        handles=_legend(timeline.bars),
        loc="outside lower center",
        ncols=8,
        frameon=False,
        fontsize=9,
    )
    figure.savefig(path, format="png", dpi=DPI, facecolor="white")


def _lighter(colour: str, amount: float = 0.6) -> tuple[float, float, float]:
    """`colour` mixed with `amount` of white: the queue wait's shade of its sub-task's colour."""
    r, g, b = to_rgb(colour)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def _draw_rows(axes: Axes, timeline: Timeline) -> None:
    # Alternate shading keeps a bar on its row's label across a wide chart.
    for i in range(0, len(timeline.rows), 2):
        axes.axhspan(i - 0.5, i + 0.5, color="#f3f3f3", zorder=0, linewidth=0)
    axes.set_yticks(range(len(timeline.rows)))
    axes.set_yticklabels([_plain(label) for label in row_labels(timeline)], fontsize=9)
    for tick, row in zip(axes.get_yticklabels(), timeline.rows, strict=True):
        if not row.is_worker:  # a status, not a worker: set apart
            tick.set_fontstyle("italic")
            tick.set_color("#555555")
    axes.set_ylim(len(timeline.rows) - 0.5, -0.5)  # the first row on top


def row_labels(timeline: Timeline) -> list[str]:
    """The rows' labels as drawn: workers without the queue they share, statuses with a count."""
    workers = [row.label for row in timeline.rows if row.is_worker]
    queue = shared_queue(workers)
    counts = Counter(bar.row for bar in timeline.bars)
    return [
        row.label.removeprefix(queue) if row.is_worker else f"{row.label} ({counts[i]})"
        for i, row in enumerate(timeline.rows)
    ]


def _draw_bar(axes: Axes, bar: Bar) -> None:
    colour = COLOURS[bar.kind]
    if bar.wait and bar.wait.seconds > 0:
        _span(axes, bar.row, bar.wait, WAIT_HEIGHT, _lighter(colour), zorder=1)
    if bar.run is None:
        return
    face: str | tuple[float, float, float] = colour
    edge: str | tuple[float, float, float] = "white"
    width, hatch = 0.6, None
    if bar.status == "CANCELLED":
        face, edge, width, hatch = _lighter(colour, 0.35), CANCELLED_EDGE, 0.8, "////"
    elif bar.status == "ERROR":
        edge, width = ERROR_COLOUR, 2.0
    elif bar.run.open:  # still running: dotted, as not yet final
        edge, width, hatch = _lighter(colour, 0.45), 0.6, ".."
    _span(axes, bar.row, bar.run, RUN_HEIGHT, face, edge=edge, width=width, hatch=hatch)
    if bar.status == "ERROR":
        axes.plot(bar.run.end, bar.row, marker="X", color=ERROR_COLOUR, markersize=9, zorder=4)


def _span(
    axes: Axes,
    row: int,
    span: Span,
    height: float,
    face: str | tuple[float, float, float],
    *,
    edge: str | tuple[float, float, float] = "none",
    width: float = 0.0,
    hatch: str | None = None,
    zorder: int = 2,
) -> None:
    axes.barh(
        row,
        span.seconds,
        left=span.start,
        height=height,
        color=face,
        edgecolor=edge,
        linewidth=width,
        hatch=hatch,
        zorder=zorder,
    )


def _label_chunks(axes: Axes, timeline: Timeline) -> None:
    extent = max(timeline.horizon, 1e-9)
    for bar in timeline.bars:
        if bar.chunk is None or bar.run is None or bar.run.seconds < LABEL_MIN_SHARE * extent:
            continue
        axes.text(
            bar.run.start + bar.run.seconds / 2,
            bar.row,
            str(bar.chunk),
            ha="center",
            va="center",
            fontsize=7,
            color="white" if bar.status != "CANCELLED" else "black",
            zorder=3,
        )


def _decorate(axes: Axes, timeline: Timeline, analysis: int) -> None:
    starts = [s.start for b in timeline.bars for s in (b.wait, b.run) if s]
    left = min([0.0, *starts])
    right = max(timeline.horizon, left + 1.0)
    margin = (right - left) * 0.01
    axes.set_xlim(left - margin, right + margin)
    axes.grid(axis="x", color="#d0d0d0", linewidth=0.6, zorder=0)
    axes.set_axisbelow(True)
    for side in ("top", "right", "left"):
        axes.spines[side].set_visible(False)
    axes.tick_params(axis="y", length=0)
    origin = f" ({timeline.origin:%Y-%m-%d %H:%M:%S} UTC)" if timeline.origin is not None else ""
    queue = shared_queue([row.label for row in timeline.rows if row.is_worker])
    workers = f"; workers: {_plain(queue)}<row>" if queue else ""
    axes.set_xlabel(f"seconds since the first sub-task was queued{origin}{workers}", fontsize=9)
    axes.set_title(_title(timeline, analysis), loc="left", fontsize=11)
    if not timeline.bars or timeline.origin is None:
        axes.text(0.5, 0.5, "no sub-task has a time yet", transform=axes.transAxes, ha="center")


def _title(timeline: Timeline, analysis: int) -> str:
    s = timeline.summary
    sub_tasks = f"{s.sub_tasks} sub-task" + ("" if s.sub_tasks == 1 else "s")
    workers = f"{s.workers} worker" + ("" if s.workers == 1 else "s")
    if s.wall_seconds is None:
        wall = "not started"
    else:
        wall = format_seconds(s.wall_seconds) + (" so far" if s.in_flight else "")
    statuses = _plain(", ".join(f"{n} {status}" for status, n in s.statuses))
    return (
        f"$\\bf{{Analysis\\ {analysis}}}$: {sub_tasks} on {workers}, "
        f"wall time {wall}\n"
        f"{statuses}; run time {format_seconds(s.run_seconds)} in total, "
        f"mean queue wait {format_seconds(s.mean_wait_seconds)}"
    )


def _plain(text: str) -> str:
    # Names come from the API: a `$` in one must not start matplotlib's mathtext.
    return text.replace("$", r"\$")


def _legend(bars: Sequence[Bar]) -> list[Patch]:
    kinds = [k for k in Kind if any(b.kind is k for b in bars)]
    handles = [Patch(facecolor=COLOURS[k], label=k.value) for k in kinds]
    if any(b.wait and b.wait.seconds > 0 for b in bars):
        shade = _lighter(COLOURS[kinds[0]])
        handles.append(Patch(facecolor=shade, label="queue wait (lighter)"))
    statuses = {b.status for b in bars if b.run}
    if "ERROR" in statuses:
        handles.append(Patch(facecolor="white", edgecolor=ERROR_COLOUR, lw=2, label="error"))
    if "CANCELLED" in statuses:
        handles.append(
            Patch(facecolor="white", edgecolor=CANCELLED_EDGE, hatch="////", label="cancelled")
        )
    if any(b.run and b.run.open and b.status not in ("ERROR", "CANCELLED") for b in bars):
        handles.append(
            Patch(facecolor="#8c8c8c", edgecolor="#cccccc", hatch="..", label="still running")
        )
    return handles
