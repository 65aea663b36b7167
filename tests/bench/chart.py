"""The growth chart (issue 15): throughput and p99 as rows per request and concurrency grow, one line per server.

Drawn on a bare ``matplotlib.figure.Figure`` (the Agg canvas, no pyplot, no display, no global state) into a PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.bench.plan import CONCURRENCY_AXIS, FLOOR, ROWS_AXIS, SCENARIO_BY_KEY
from tests.bench.report import Summary

# (axis keys, x value of a scenario, x label, throughput label, throughput of a summary)
_PANELS = (
    (ROWS_AXIS, "rows", "rows per request (8 concurrent)", "rows/s", "rows_per_s"),
    (CONCURRENCY_AXIS, "concurrency", "concurrent requests (1 row each)", "req/s", "req_per_s"),
)


def growth_chart(
    summaries: dict[tuple[str, str], Summary], labels: dict[str, str], servers: Sequence[str], path: Path
) -> Path | None:
    """Write the 2×2 chart (throughput on top, p99 below; rows left, concurrency right) to ``path``; None, and
    nothing written, when neither axis has two measured points."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogFormatter

    if not any(_points(summaries, server, axis) for server in servers for axis, *_ in _PANELS):
        return None
    figure = Figure(figsize=(12, 8), layout="constrained")
    axes = figure.subplots(2, 2)
    for column, (axis, x_field, x_label, rate_label, rate_field) in enumerate(_PANELS):
        top, bottom = axes[0][column], axes[1][column]
        for server in servers:
            points = _points(summaries, server, axis)
            if not points:
                continue
            xs = [getattr(SCENARIO_BY_KEY[summary.scenario], x_field) for summary in points]
            # The floor is a reference, not a contender: dashed and grey.
            style = {"linestyle": "--", "color": "grey"} if server == FLOOR else {}
            label = labels.get(server, server)
            top.plot(xs, [getattr(summary, rate_field) for summary in points], marker="o", label=label, **style)
            # hey gives no p99 for a run of very few answers: that point is left out of the latency line.
            timed = [(x, summary.p99_ms) for x, summary in zip(xs, points, strict=True) if summary.p99_ms]
            if timed:
                bottom.plot(*zip(*timed, strict=True), marker="o", label=label, **style)
        top.set(ylabel=f"throughput, {rate_label}", title=f"throughput by {x_field}")
        bottom.set(xlabel=x_label, ylabel="p99, ms", title=f"p99 latency by {x_field}")
        ticks = [getattr(SCENARIO_BY_KEY[key], x_field) for key in axis]
        for panel in (top, bottom):
            if not panel.has_data():  # a log scale with nothing on it cannot be drawn
                panel.text(0.5, 0.5, "no data", transform=panel.transAxes, ha="center")
                continue
            panel.set_xscale("log")
            panel.set_xticks(ticks, [str(tick) for tick in ticks])
            panel.set_xticks([], minor=True)
            panel.set_yscale("log")
            # Plain numbers (60, not 6×10¹), minor ticks labelled only when the axis spans less than a decade or so.
            panel.yaxis.set_major_formatter(LogFormatter())
            panel.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5)))
            panel.grid(True, which="both", alpha=0.3)
            panel.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path


def _points(summaries: dict[tuple[str, str], Summary], server: str, axis: Sequence[str]) -> list[Summary]:
    """The server's measured points along ``axis``, when there are at least two (a line needs two)."""
    points = [summary for key in axis if (summary := summaries.get((server, key))) and summary.req_per_s]
    return points if len(points) >= 2 else []
