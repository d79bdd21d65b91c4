"""A PNG of each run: sub-tasks queued or running, and worker pods, over time, per model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cli.simulate.engine import Result

# Past this many models a run is drawn as its totals.
MAX_MODEL_LINES = 8


def write_plot(results: Sequence[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(
        len(results), 1, figsize=(9, 2.6 * len(results) + 0.6), sharex=True, squeeze=False
    )
    for axis, result in zip(axes[:, 0], results, strict=True):
        for name, points in _series(result):
            times = [t for t, _, _ in points]
            line = axis.step(times, [w for _, w, _ in points], where="post", label=f"{name} work")
            axis.step(
                times,
                [p for _, _, p in points],
                where="post",
                linestyle="--",
                color=line[0].get_color(),
                label=f"{name} workers",
            )
        axis.set_title(f"{result.label} ({result.policy})", loc="left", fontsize=10)
        axis.set_ylabel("sub-tasks / pods")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    pyplot.close(figure)


def _series(result: Result) -> list[tuple[str, list[tuple[float, int, int]]]]:
    drawn = [m for m in result.models if m.timeline]
    if len(drawn) <= MAX_MODEL_LINES:
        return [(m.name, list(m.timeline)) for m in drawn]
    return [("all models", _summed([list(m.timeline) for m in drawn]))]


def _summed(timelines: list[list[tuple[float, int, int]]]) -> list[tuple[float, int, int]]:
    """The models' step functions added up."""
    changes: list[tuple[float, int, int, int]] = []
    for index, timeline in enumerate(timelines):
        for time, work, pods in timeline:
            changes.append((time, index, work, pods))
    changes.sort()
    current = [(0, 0)] * len(timelines)
    work = pods = 0
    points: list[tuple[float, int, int]] = []
    for time, index, new_work, new_pods in changes:
        old_work, old_pods = current[index]
        work += new_work - old_work
        pods += new_pods - old_pods
        current[index] = (new_work, new_pods)
        if points and points[-1][0] == time:
            points[-1] = (time, work, pods)
        else:
            points.append((time, work, pods))
    return points
