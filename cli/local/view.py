"""The live view of `oasis-autoscaler up`: per model, its work and its workers, as a table."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import requests
from rich.table import Table

from cli.local.keda import ModelScaling
from scaler.metric_names import ANALYSES, MODEL_LABEL, PENDING, QUEUED, QUEUED_OR_RUNNING
from scaler.sources import text_samples


@dataclass(frozen=True)
class Work:
    analyses: int = 0
    # Sub-tasks still to run (pending, queued or running), of those the ones on the queue or
    # running now (a pending one waits for its stage, not for a worker), and of those the ones on
    # the queue: waiting for a worker.
    pending: int = 0
    queued_or_running: int = 0
    queued: int = 0


WORK_GAUGES = (ANALYSES, PENDING, QUEUED_OR_RUNNING, QUEUED)


def read_work(api_url: str) -> dict[str, Work]:
    """Each model's analyses and sub-tasks to run, from the API's /metrics. Raises on any
    failure (refused, timed out, 5xx, not the text format): the caller shows it and retries."""
    response = requests.get(f"{api_url}/metrics", params={"name[]": WORK_GAUGES}, timeout=2)
    response.raise_for_status()
    numbers: dict[str, dict[str, float]] = {}
    for sample in text_samples(response.text):
        model = sample.labels.get(MODEL_LABEL)
        if model is not None and sample.name in WORK_GAUGES:
            numbers.setdefault(model, {})[sample.name] = sample.value
    return {
        model: Work(*(int(values.get(name, 0)) for name in WORK_GAUGES))
        for model, values in numbers.items()
    }


def table(
    scaling: Mapping[str, ModelScaling], work: Mapping[str, Work], notes: Sequence[str] = ()
) -> Table:
    """The models' table; `notes` (the stack's own state: budget, failing calls, restarts) go
    under it."""
    view = Table(
        title="oasis-autoscaler: models and their workers",
        title_justify="left",
        caption="\n".join(notes) or None,
        caption_justify="left",
    )
    for column in (
        "model",
        "analyses",
        "sub-tasks to run",
        "queued or running",
        "waiting for a worker",
        "desired",
        "replicas",
    ):
        view.add_column(column, justify="left" if column == "model" else "right")
    view.add_column("workers (busy)", justify="right")
    view.add_column("warming", justify="right")
    view.add_column("stopping", justify="right")
    view.add_column("note")
    for model in sorted(scaling):
        shown, done = scaling[model], work.get(model, Work())
        workers = shown.workers
        view.add_row(
            model,
            str(done.analyses),
            str(done.pending),
            str(done.queued_or_running),
            str(done.queued),
            f"{shown.metric:g}",
            str(shown.replicas),
            f"{workers.running} ({workers.busy})",
            str(workers.warming),
            str(workers.stopping),
            _note(shown),
        )
    if not scaling:
        view.add_row("(no model registered yet)", *[""] * 10)
    return view


def line(model: str, shown: ModelScaling, work: Work) -> str:
    workers = shown.workers
    return (
        f"{model}: analyses {work.analyses}, sub-tasks to run {work.pending} "
        f"({work.queued_or_running} queued or running, {work.queued} waiting for a worker), "
        f"desired {shown.metric:g}, replicas {shown.replicas}, workers {workers.running} "
        f"({workers.busy} busy, {workers.warming} warming, {workers.stopping} stopping)"
        + (f", {workers.not_started} not started (worker budget)" if workers.not_started else "")
        + (f", {shown.error}" if shown.error else "")
    )


def _note(shown: ModelScaling) -> str:
    parts = [f"[red]{shown.error}[/]"] if shown.error else ["active" if shown.active else "idle"]
    if shown.workers.not_started:
        parts.append(f"[yellow]{shown.workers.not_started} not started (worker budget)[/]")
    return ", ".join(parts)


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
