"""The scaler's own Prometheus metrics, on a registry of its own (served on `--metrics-port`).

Per-model desired workers, the source's age and whether calls are served are read from the view
and the source record when scraped (a collector), so they are never out of date and a model that
goes away leaves no series behind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scaler.budget import Allocation
from scaler.freshness import SourceHealth
from scaler.samples import Problem
from scaler.state import InMemoryStateView

log = logging.getLogger(__name__)

# KEDA's budget per call is about 3 s; answers from memory take well under a millisecond.
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ScalerMetrics:
    def __init__(
        self, registry: CollectorRegistry, view: InMemoryStateView, health: SourceHealth
    ) -> None:
        self.refreshes = Counter(
            "oasis_scaler_refreshes", "Reads of the metrics source, good or not", registry=registry
        )
        self.refresh_errors = Counter(
            "oasis_scaler_refresh_errors",
            "Reads of the metrics source that failed (the last good state stays)",
            registry=registry,
        )
        self.target_errors = Counter(
            "oasis_scaler_scrape_target_errors",
            "Failed scrapes of one target (the read is good while another target answers)",
            ["target"],
            registry=registry,
        )
        self.invalid_values = Counter(
            "oasis_scaler_invalid_values",
            "Published values the scaler could not use, once per read that has them",
            ["model"],
            registry=registry,
        )
        self.rpc_duration = Histogram(
            "oasis_scaler_rpc_duration_seconds",
            "Time to answer KEDA's unary calls, by method",
            ["method"],
            buckets=RPC_BUCKETS,
            registry=registry,
        )
        # Each open stream holds one of the gRPC server's threads (--grpc-threads).
        self.open_streams = Gauge(
            "oasis_scaler_open_streams",
            "StreamIsActive calls open now (KEDA's external-push triggers)",
            registry=registry,
        )
        # The fleet budget as the last good read left it (set by the refresher).
        self.allocation: Allocation | None = None
        registry.register(_StateCollector(view, health))
        registry.register(_BudgetCollector(self))
        self._reported: set[Problem] = set()

    def report_problems(self, problems: Sequence[Problem]) -> None:
        """Count every problem; log one only when it appears, not on every read (2 per second)."""
        for problem in problems:
            self.invalid_values.labels(model=problem.model).inc()
            if problem not in self._reported:
                log.warning("model %s: %s", problem.model, problem.message)
        self._reported = set(problems)


class _StateCollector(Collector):
    def __init__(self, view: InMemoryStateView, health: SourceHealth) -> None:
        self._view = view
        self._health = health

    def collect(self) -> Iterable[Metric]:
        desired = GaugeMetricFamily(
            "oasis_scaler_desired_workers",
            "Workers each model asks for, from the scaler's last good state",
            labels=["model"],
        )
        granted = GaugeMetricFamily(
            "oasis_scaler_granted_workers",
            "Workers each model is given (what KEDA is told): its share of the fleet budget, "
            "or its desired workers without one",
            labels=["model"],
        )
        for model in self._view.models():
            state = self._view.get(model)
            if state is not None:
                desired.add_metric([model], state.desired)
                granted.add_metric([model], state.granted)
        yield desired
        yield granted
        yield GaugeMetricFamily(
            "oasis_scaler_source_age_seconds",
            "Seconds since the last good read of the metrics source (since start when none)",
            value=self._health.age(),
        )
        yield GaugeMetricFamily(
            "oasis_scaler_serving",
            "1 while KEDA's calls are answered, 0 while they fail as the state is too old",
            value=0 if self._health.stale_reason() else 1,
        )


class _BudgetCollector(Collector):
    """The fleet budget's figures; nothing while no budget is set."""

    def __init__(self, metrics: ScalerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        allocation = self._metrics.allocation
        if allocation is None or allocation.limit is None:
            return
        yield GaugeMetricFamily(
            "oasis_scaler_worker_budget",
            "total_worker_limit: workers of all models together",
            value=allocation.limit,
        )
        yield GaugeMetricFamily(
            "oasis_scaler_worker_floors",
            "The models' worker_count_min added up (they hold even above the budget)",
            value=allocation.floors,
        )
        yield GaugeMetricFamily(
            "oasis_scaler_worker_floors_over_budget",
            "Workers by which the floors exceed total_worker_limit; 0 when they fit",
            value=allocation.floors_over_budget,
        )
        yield GaugeMetricFamily(
            "oasis_scaler_starved_models",
            "Models with work that the budget leaves without a worker",
            value=len(allocation.starved),
        )
