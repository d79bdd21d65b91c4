"""The simulator's results side by side: rich tables, or one JSON document."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from cli.simulate.engine import Result

# Past this many models the per-model table shows the totals only.
MAX_MODEL_ROWS = 20


def print_results(console: Console, results: Sequence[Result]) -> None:
    base = results[0]
    totals = Table(
        title="Totals per run",
        title_justify="left",
        caption=f"ratios against the first run ({base.label}, {base.policy})",
        caption_justify="left",
    )
    for column in ("run", "rules", "makespan", "worker-seconds", "ratio", "peak workers"):
        totals.add_column(column, justify="left" if column in ("run", "rules") else "right")
    totals.add_column("mean queue wait", justify="right")
    for result in results:
        totals.add_row(
            result.label,
            result.policy,
            _duration(result.makespan),
            f"{result.worker_seconds:,.0f}",
            _ratio(result.worker_seconds, base.worker_seconds),
            str(result.peak_workers),
            _duration(result.wait_mean),
        )
    console.print(totals)
    if max(len(r.models) for r in results) > MAX_MODEL_ROWS:
        return
    models = Table(title="Per model", title_justify="left")
    for column in ("model", "run", "rules", "analyses", "makespan", "queue wait mean / max"):
        models.add_column(
            column, justify="left" if column in ("model", "run", "rules") else "right"
        )
    for column in ("worker-seconds", "peak workers", "work lost"):
        models.add_column(column, justify="right")
    names = list(dict.fromkeys(m.name for r in results for m in r.models))
    for name in names:
        for result in results:
            for model in (m for m in result.models if m.name == name):
                models.add_row(
                    name,
                    result.label,
                    result.policy,
                    str(model.analyses),
                    _duration(model.makespan),
                    f"{_duration(model.wait_mean)} / {_duration(model.wait_max)}",
                    f"{model.worker_seconds:,.0f}",
                    str(model.peak_workers),
                    _duration(model.lost_seconds),
                )
        models.add_section()
    console.print(models)


def as_json(results: Sequence[Result]) -> list[dict[str, Any]]:
    return [
        {
            "run": result.label,
            "rules": result.policy,
            "end_seconds": result.end,
            "makespan_seconds": result.makespan,
            "worker_seconds": result.worker_seconds,
            "peak_workers": result.peak_workers,
            "queue_wait_mean_seconds": result.wait_mean,
            "models": [
                {
                    "model": m.name,
                    "analyses": m.analyses,
                    "sub_tasks": m.sub_tasks,
                    "makespan_seconds": m.makespan,
                    "queue_wait_mean_seconds": m.wait_mean,
                    "queue_wait_max_seconds": m.wait_max,
                    "worker_seconds": m.worker_seconds,
                    "peak_workers": m.peak_workers,
                    "work_lost_seconds": m.lost_seconds,
                }
                for m in result.models
            ],
        }
        for result in results
    ]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base else "-"
