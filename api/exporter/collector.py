"""The exporter's metric families, computed from its state when scraped.

The model families carry the names and labels our API publishes (docs/metrics.md), so the
scaler, the alerts and the dashboards read an OasisPlatform unchanged: every known model has
its scaling info, configuration gauges and work gauges (zeros when idle), and its analyses by
priority while it has some. Before the exporter has both the models and one good snapshot, no
model family is published at all: zeros then would read as "idle". The exporter's own health is
in `oasis_exporter_*`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from api.exporter.state import Channel, View
from scaler.metric_names import (
    ANALYSES,
    PENDING,
    QUEUE_MESSAGES,
    QUEUED,
    QUEUED_OR_RUNNING,
    RECORDED,
    SCALING_GAUGES,
    WORKERS,
)
from scaler.metric_names import ANALYSES_BY_PRIORITY as BY_PRIORITY
from scaler.metric_names import SCALING_INFO as INFO

SNAPSHOT_AGE = "oasis_exporter_snapshot_age_seconds"
WEBSOCKET_UP = "oasis_exporter_websocket_connected"
PLATFORM_UP = "oasis_exporter_platform_up"
KNOWN_MODELS = "oasis_exporter_models"
SNAPSHOTS = "oasis_exporter_snapshots"
REFUSED = "oasis_exporter_refused_messages"
CONNECTIONS = "oasis_exporter_websocket_connections"

HELP = {
    INFO: "Always 1; strategy is the model's scaling_strategy on the platform.",
    ANALYSES: "Main tasks of the model: analyses counted on its queue in the platform's last "
    "good queue-status snapshot.",
    PENDING: "Sub-tasks of the model's queue pending, queued or running (or its broker "
    "messages when more), in the last good snapshot.",
    RECORDED: "Sub-tasks of the model's counted analyses, completed ones included (each "
    "analysis's sub_task_count, 1 when 0), in the last good snapshot.",
    QUEUED_OR_RUNNING: "Sub-tasks on the model's queue or running: as "
    "oasis_model_pending_sub_tasks (the platform keeps a sub-task PENDING while it waits on the "
    "broker).",
    QUEUED: "Sub-tasks waiting for a worker: oasis_model_queued_or_running_sub_tasks less the "
    "platform's running ones.",
    QUEUE_MESSAGES: "Ready messages of the model's queue as the platform's broker reports them.",
    WORKERS: "Consumers of the model's queue as the platform's broker reports them.",
    BY_PRIORITY: "Main tasks of the model (as oasis_model_analyses) by their priority (1-10); "
    "only priorities with at least one.",
    **{
        gauge: f"The model's scaling_configuration.{name} on the platform."
        for gauge, name in SCALING_GAUGES.items()
    },
    SNAPSHOT_AGE: "Seconds since the last good queue-status snapshot was taken (websocket push "
    "or REST resync); absent before the first.",
    WEBSOCKET_UP: "1 while the websocket to the platform's queue status is open.",
    PLATFORM_UP: "1 when the last REST call to the platform (login, queue status, models) "
    "succeeded.",
    KNOWN_MODELS: "Models read from the platform (published only once a snapshot is held too).",
    SNAPSHOTS: "Good snapshots taken, by channel.",
    REFUSED: "Messages refused as not whole queue-status snapshots, by channel.",
    CONNECTIONS: "Websocket connections the platform accepted.",
}


class ExporterCollector:
    """Reads the state through `view` on every scrape (registry given, or None: unregistered)."""

    def __init__(self, view: Callable[[], View], *, registry: CollectorRegistry | None) -> None:
        self._view = view
        # The model families of the last (models, snapshot) pair: the scaler scrapes every half
        # second, and they change only when a snapshot or the models do.
        self._cached: tuple[object, object, list[Metric]] | None = None
        if registry is not None:
            registry.register(self)

    def describe(self) -> list[Metric]:
        return [*model_families(_empty()), *own_families(_empty())]

    def collect(self) -> Iterator[Metric]:
        view = self._view()
        if view.models is not None and view.snapshot is not None:
            cached = self._cached
            if cached is None or cached[0] is not view.models or cached[1] is not view.snapshot:
                cached = self._cached = (view.models, view.snapshot, model_families(view))
            yield from cached[2]
        yield from own_families(view)


def model_families(view: View) -> list[Metric]:
    info = GaugeMetricFamily(INFO, HELP[INFO], labels=["model", "strategy"])
    configuration = {
        gauge: GaugeMetricFamily(gauge, HELP[gauge], labels=["model"]) for gauge in SCALING_GAUGES
    }
    work = {
        name: GaugeMetricFamily(name, HELP[name], labels=["model"])
        for name in (
            ANALYSES,
            PENDING,
            RECORDED,
            QUEUED_OR_RUNNING,
            QUEUED,
            QUEUE_MESSAGES,
            WORKERS,
        )
    }
    by_priority = GaugeMetricFamily(BY_PRIORITY, HELP[BY_PRIORITY], labels=["model", "priority"])
    models = view.models or {}
    for key in sorted(models):
        model = models[key]
        label = [model.queue]
        info.add_metric([model.queue, model.scaling.scaling_strategy.value], 1)
        for gauge, name in SCALING_GAUGES.items():
            configuration[gauge].add_metric(label, getattr(model.scaling, name))
        queue = view.snapshot.work(key) if view.snapshot is not None else None
        if queue is None:
            continue
        work[ANALYSES].add_metric(label, queue.analyses)
        work[PENDING].add_metric(label, queue.pending)
        work[RECORDED].add_metric(label, queue.recorded)
        work[QUEUED_OR_RUNNING].add_metric(label, queue.queued_or_running)
        work[QUEUED].add_metric(label, queue.queued)
        work[QUEUE_MESSAGES].add_metric(label, queue.messages)
        work[WORKERS].add_metric(label, queue.workers)
        for priority, count in sorted(queue.priorities.items()):
            by_priority.add_metric([model.queue, str(priority)], count)
    return [info, *configuration.values(), *work.values(), by_priority]


def own_families(view: View) -> list[Metric]:
    age = GaugeMetricFamily(SNAPSHOT_AGE, HELP[SNAPSHOT_AGE])
    if view.age is not None:
        age.add_metric([], view.age)
    known = GaugeMetricFamily(KNOWN_MODELS, HELP[KNOWN_MODELS])
    if view.models is not None:
        known.add_metric([], len(view.models))
    snapshots = CounterMetricFamily(SNAPSHOTS, HELP[SNAPSHOTS], labels=["channel"])
    refused = CounterMetricFamily(REFUSED, HELP[REFUSED], labels=["channel"])
    for channel in Channel:
        snapshots.add_metric([channel.value], view.snapshots.get(channel, 0))
        refused.add_metric([channel.value], view.refused.get(channel, 0))
    return [
        age,
        GaugeMetricFamily(WEBSOCKET_UP, HELP[WEBSOCKET_UP], value=int(view.websocket_connected)),
        GaugeMetricFamily(PLATFORM_UP, HELP[PLATFORM_UP], value=int(view.platform_up)),
        known,
        snapshots,
        refused,
        CounterMetricFamily(CONNECTIONS, HELP[CONNECTIONS], value=view.connections),
    ]


def _empty() -> View:
    return View(
        models=None,
        snapshot=None,
        age=None,
        websocket_connected=False,
        platform_up=False,
        snapshots={},
        refused={},
        connections=0,
    )
