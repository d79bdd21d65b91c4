"""The refresh loop: read the source every interval into the view, on a thread of its own.

KEDA's calls never wait for the source: they read the view, which only this loop writes. A failed
read leaves the view as it was (the last good state) and is recorded, so the calls can tell how
old that state is.

The fleet budget (docs/budget.md) is applied here, to all models at once, so that every read
gives each model its share of the same picture.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from scaler.budget import Allocation, Preemption
from scaler.freshness import SourceHealth
from scaler.instruments import ScalerMetrics
from scaler.sources import Source
from scaler.state import InMemoryStateView, ModelState, with_grants

log = logging.getLogger(__name__)


class Refresher:
    def __init__(
        self,
        source: Source,
        view: InMemoryStateView,
        health: SourceHealth,
        *,
        interval: float,
        metrics: ScalerMetrics | None = None,
        on_serving: Callable[[bool], None] | None = None,
        worker_limit: int | None = None,
        weights: Mapping[str, float] | None = None,
        preemption: Preemption = Preemption.NONE,
    ) -> None:
        self._source = source
        self._view = view
        self._health = health
        self._interval = interval
        self._metrics = metrics
        self._on_serving = on_serving or (lambda serving: None)
        self._worker_limit = worker_limit
        self._weights = dict(weights or {})
        self._preemption = preemption
        self._allocation: Allocation | None = None
        # The last read the view was built from: a source answering the same object again
        # (nothing published changed) costs nothing more.
        self._last_read: Mapping[str, ModelState] | None = None
        # The last grants differ from the ones before: share again even if nothing was read.
        self._settling = False
        self._serving: bool | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scaler-refresh", daemon=True)

    def refresh_once(self) -> bool:
        """One read of the source into the view; True when it was good."""
        if self._metrics:
            self._metrics.refreshes.inc()
        try:
            read = self._source()
            # Under a budget the grants depend on the last ones too (workers promised hold their
            # place), so an unchanged read is shared again until the grants stop moving.
            changed = read is not self._last_read or self._settling
            if changed:
                previous = self._allocation.granted if self._allocation else None
                states, allocation = with_grants(
                    read, self._worker_limit, self._weights, previous, self._preemption
                )
        except Exception as error:  # any failure of the source keeps the last good state
            self._failed(str(error) or type(error).__name__)
            good = False
        else:
            if changed:
                self._settling = (
                    self._worker_limit is not None
                    and previous is not None
                    and allocation.granted != previous
                )
                self._view.replace_all(states)
                self._budget_applied(allocation)
                self._last_read = read
            if self._health.record.failing_since is not None:
                log.info("metrics source read again; %d model(s)", len(read))
            self._health.succeeded()
            good = True
        self._publish_serving()
        return good

    def _budget_applied(self, allocation: Allocation) -> None:
        if self._metrics:
            self._metrics.allocation = allocation
        # Log when the shortage starts or changes, not on every read.
        old = self._allocation
        if allocation.floors_over_budget and (
            old is None or old.floors_over_budget != allocation.floors_over_budget
        ):
            log.warning(
                "the models' worker_count_min add up to %d, %d over total_worker_limit %s: "
                "the floors hold, no model gets more",
                allocation.floors,
                allocation.floors_over_budget,
                allocation.limit,
            )
        if allocation.starved and (old is None or old.starved != allocation.starved):
            # Info, not a warning: a model waiting while another's workers finish is the budget
            # at work; the alert on oasis_scaler_starved_models says when it lasts.
            log.info(
                "total_worker_limit %s leaves models with work and no worker: %s wait for one "
                "(the budget is below the models with work, or other models keep its workers)",
                allocation.limit,
                ", ".join(allocation.starved),
            )
        self._allocation = allocation

    def _failed(self, error: str) -> None:
        if self._metrics:
            self._metrics.refresh_errors.inc()
        # Log when the failure starts or changes, not twice a second while it lasts.
        if error != self._health.record.last_error:
            log.warning("cannot read the metrics source (keeping the last good state): %s", error)
        self._health.failed(error)

    def _publish_serving(self) -> None:
        serving = self._health.stale_reason() is None
        if serving != self._serving:
            if not serving:
                log.error("not serving: %s", self._health.stale_reason())
            self._serving = serving
            self._on_serving(serving)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        # Reads start one interval apart; a slow read is followed by the next at once.
        while not self._stopping.is_set():
            began = time.monotonic()
            self.refresh_once()
            self._stopping.wait(max(0.0, self._interval - (time.monotonic() - began)))
