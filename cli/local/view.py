"""The live view of `oasis-autoscaler up`: per model, its work and its workers, as a table."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import requests
from rich.table import Table

from cli.local.keda import ModelScaling
from scaler.metric_names import ANALYSES, MODEL_LABEL, PENDING
from scaler.sources import text_samples


@dataclass(frozen=True)
class Work:
    analyses: int = 0
    pending: int = 0


def read_work(api_url: str) -> dict[str, Work]:
    """Each model's analyses and pending sub-tasks, from the API's /metrics (empty on error)."""
    try:
        response = requests.get(
            f"{api_url}/metrics", params={"name[]": [ANALYSES, PENDING]}, timeout=2
        )
        response.raise_for_status()
    except requests.RequestException:
        return {}
    numbers: dict[str, dict[str, float]] = {}
    for sample in text_samples(response.text):
        model = sample.labels.get(MODEL_LABEL)
        if model is not None and sample.name in (ANALYSES, PENDING):
            numbers.setdefault(model, {})[sample.name] = sample.value
    return {
        model: Work(int(values.get(ANALYSES, 0)), int(values.get(PENDING, 0)))
        for model, values in numbers.items()
    }


def table(scaling: Mapping[str, ModelScaling], work: Mapping[str, Work]) -> Table:
    view = Table(title="oasis-autoscaler: models and their workers", title_justify="left")
    for column in ("model", "analyses", "pending chunks", "desired", "replicas"):
        view.add_column(column, justify="left" if column == "model" else "right")
    view.add_column("workers (busy)", justify="right")
    view.add_column("stopping", justify="right")
    view.add_column("note")
    for model in sorted(scaling):
        shown, done = scaling[model], work.get(model, Work())
        view.add_row(
            model,
            str(done.analyses),
            str(done.pending),
            f"{shown.metric:g}",
            str(shown.replicas),
            f"{shown.running} ({shown.busy})",
            str(shown.stopping),
            f"[red]{shown.error}[/]" if shown.error else ("active" if shown.active else "idle"),
        )
    if not scaling:
        view.add_row("(no model registered yet)", "", "", "", "", "", "", "")
    return view


def line(model: str, shown: ModelScaling, work: Work) -> str:
    return (
        f"{model}: analyses {work.analyses}, pending chunks {work.pending}, desired "
        f"{shown.metric:g}, replicas {shown.replicas}, workers {shown.running} "
        f"({shown.busy} busy, {shown.stopping} stopping)"
        + (f", {shown.error}" if shown.error else "")
    )


def changes(
    before: Mapping[str, str],
    scaling: Mapping[str, ModelScaling],
    work: Mapping[str, Work],
    say: Callable[[str], None],
) -> dict[str, str]:
    """Say the line of each model whose line changed; return the lines now shown."""
    now = {model: line(model, shown, work.get(model, Work())) for model, shown in scaling.items()}
    for model in sorted(now):
        if before.get(model) != now[model]:
            say(now[model])
    return now
