"""What the scaler knows of each model: its scaling configuration and its work, held in memory.

The servicer reads a `StateView`; whoever knows the live numbers (a metrics source, a test)
writes an `InMemoryStateView`. KEDA calls are answered from here, never from a database.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from scaler.budget import MIN_PRIORITY, Allocation, Claim, Preemption, allocate
from scaler.configuration import ScalingConfiguration
from scaler.strategies import desired_workers


@dataclass(frozen=True)
class ModelState:
    """One model's scaling configuration and its current work."""

    configuration: ScalingConfiguration = field(default_factory=ScalingConfiguration)
    analyses: int = 0
    pending: int = 0
    # The highest priority (1-10) among its active analyses; None when none is counted.
    priority: int | None = None
    # Workers the fleet budget grants it; None when no budget applies.
    grant: int | None = None
    # Sub-tasks recorded for the active analyses, and those queued or running (None: not
    # published, counted as `pending`); those of them queued (None: not published, counted as
    # `queued_or_running`); sub-tasks one worker runs at once; workers present.
    sub_tasks: int | None = None
    queued_or_running: int | None = None
    queued: int | None = None
    slots_per_worker: int = 1
    workers: int = 0
    # Chunks about to be queued and chunks of joining input stages; the model's last gap between
    # stages (None: not seen); seconds a new worker takes to start (the scaler's setting).
    unqueued_chunks: int = 0
    joining_chunks: int = 0
    stage_gap: float | None = None
    worker_start: float | None = None

    @property
    def desired(self) -> int:
        """Workers the model's own strategy asks for."""
        return desired_workers(
            self.configuration,
            analyses=self.analyses,
            pending=self.pending,
            sub_tasks=self.sub_tasks,
            queued_or_running=self.queued_or_running,
            slots_per_worker=self.slots_per_worker,
            queued=self.queued,
            workers=self.workers,
            unqueued_chunks=self.unqueued_chunks,
            joining_chunks=self.joining_chunks,
            stage_gap=self.stage_gap,
            worker_start=self.worker_start,
        )

    @property
    def granted(self) -> int:
        """Workers KEDA is told: the budget's grant, or the desired count without a budget."""
        return self.desired if self.grant is None else self.grant


def with_grants(
    states: Mapping[str, ModelState],
    limit: int | None,
    weights: Mapping[str, float] | None = None,
    previous: Mapping[str, int] | None = None,
    preemption: Preemption = Preemption.NONE,
) -> tuple[dict[str, ModelState], Allocation]:
    """Every model's state with its share of `limit` workers, all models at once.

    The budget holds for pods (docs/budget.md): a model's present workers, and the grant it was
    last given (`previous`: KEDA may be starting those pods), count against `limit` until they
    leave; what it keeps without asking anew is that grant. `preemption`: what priority may
    take of those workers.

    A state whose grant does not change is kept as the very object it was, so that the view sees
    at a glance which models changed.
    """
    if limit is None:
        # Nothing to share: every model is granted what it asks for, without ranking claims
        # (this runs in the server's process on every changed read, next to KEDA's calls).
        desired = {model: state.desired for model, state in states.items()}
        floors = sum(state.configuration.worker_count_min for state in states.values())
        unshared = {m: s if s.grant is None else replace(s, grant=None) for m, s in states.items()}
        return unshared, Allocation(desired, None, floors)
    weights = weights or {}
    claims = [
        Claim(
            model,
            state.desired,
            floor=state.configuration.worker_count_min,
            weight=weights.get(model, 1.0),
            priority=state.priority or MIN_PRIORITY,
        )
        for model, state in states.items()
    ]
    previous = previous or {}
    staying = {m: previous.get(m, s.workers) for m, s in states.items()}
    present = {m: max(s.workers, staying[m]) for m, s in states.items()}
    working = {m: min(s.workers, staying[m]) for m, s in states.items()}
    allocation = allocate(
        claims, limit, present=present, staying=staying, working=working, preemption=preemption
    )
    granted = {}
    for model, state in states.items():
        grant = allocation.granted[model]
        granted[model] = state if state.grant == grant else replace(state, grant=grant)
    return granted, allocation


class StateView(Protocol):
    """Read access to the models' states, with a way to wait for one model's next change."""

    def get(self, model: str) -> ModelState | None: ...

    def wait_for_change(
        self, model: str, seen: int, timeout: float
    ) -> tuple[int, ModelState | None]:
        """Block until `model`'s version differs from `seen` or `timeout` passes.

        Returns the model's current version and state (None when the model is unknown).
        """
        ...


class InMemoryStateView:
    """A thread-safe `StateView` that its owner updates; waiters of one model wake alone."""

    def __init__(self, states: Mapping[str, ModelState] | None = None) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, ModelState] = dict(states or {})
        self._versions: dict[str, int] = {model: 1 for model in self._states}
        self._changed: dict[str, threading.Condition] = {}
        # Per model, how many waiters have seen each version.
        self._waiting: dict[str, Counter[int]] = {}

    def get(self, model: str) -> ModelState | None:
        with self._lock:
            return self._states.get(model)

    def models(self) -> list[str]:
        with self._lock:
            return sorted(self._states)

    def put(self, model: str, state: ModelState) -> None:
        with self._lock:
            if self._states.get(model) != state:
                self._states[model] = state
                self._bump(model)

    def remove(self, model: str) -> None:
        with self._lock:
            if self._states.pop(model, None) is not None:
                self._bump(model)

    def replace_all(self, states: Mapping[str, ModelState]) -> None:
        """Make the view hold exactly `states`; only models whose state changed wake waiters."""
        with self._lock:
            for model in set(self._states) | set(states):
                new = states.get(model)
                old = self._states.get(model)
                if old is not new and old != new:
                    if new is None:
                        del self._states[model]
                    else:
                        self._states[model] = new
                    self._bump(model)

    def wait_for_change(
        self, model: str, seen: int, timeout: float
    ) -> tuple[int, ModelState | None]:
        with self._lock:
            changed = self._changed.setdefault(model, threading.Condition(self._lock))
            waiting = self._waiting.setdefault(model, Counter())
            waiting[seen] += 1
            try:
                changed.wait_for(lambda: self._versions.get(model, 0) != seen, timeout)
            finally:
                waiting[seen] -= 1
                if not waiting[seen]:
                    del waiting[seen]
            return self._versions.get(model, 0), self._states.get(model)

    def waiting(self, model: str) -> int:
        """How many callers have seen `model`'s latest state and wait for its next change."""
        with self._lock:
            return self._waiting.get(model, Counter())[self._versions.get(model, 0)]

    def _bump(self, model: str) -> None:
        self._versions[model] = self._versions.get(model, 0) + 1
        changed = self._changed.get(model)
        if changed is not None:
            changed.notify_all()
