"""Our rules: the scaler answers KEDA with each model's grant (strategy, then fleet budget), and
KEDA and the HPA act on it as `cli.keda.timing` models them.

Each model has a `ScaledObjectModel` stepped at the moments it names (polls and HPA syncs). A
model with no work and no replica is left alone until work arrives (nothing can happen to it);
then its polls resume on their grid, and with push activation KEDA wakes it at once.
"""

from __future__ import annotations

import math

from cli.keda.timing import ScaledObjectModel
from cli.simulate.engine import ModelRun, Simulation
from cli.simulate.trace import ModelSpec, Trace
from scaler.budget import Claim, allocate
from scaler.strategies import desired_workers


def max_replicas(spec: ModelSpec) -> int:
    """The ScaledObject's maxReplicaCount: the most the model's strategy can ask for."""
    scaling = spec.scaling
    return max(scaling.worker_count_max, scaling.worker_count_fixed, scaling.worker_count_min, 1)


class KedaScaling:
    name = "ours"
    idle_first = True
    termination_grace: float | None = None

    def __init__(self, trace: Trace) -> None:
        self._keda = trace.keda
        self._limit = trace.budget.total_worker_limit
        self._preemption = trace.budget.preemption
        self._sim: Simulation | None = None
        self._objects: list[ScaledObjectModel] = []
        # When each model's next step is due; None while it is left alone.
        self._due: list[float | None] = []
        self._granted: list[int] = []
        self._stale = True
        self._pods_seen = -1
        # Models that may claim a share or hold pods: the others are left out of the budget.
        self._active: set[int] = set()
        # Each model's desired count with the workers it had then, worked out again only after
        # its work or those changed.
        self._desired: list[tuple[int, int] | None] = []

    def attach(self, sim: Simulation) -> None:
        self._sim = sim
        self._objects = [
            ScaledObjectModel(
                self._keda.timing(max_replicas(m.spec), m.spec.scale_down_stabilization)
            )
            for m in sim.models
        ]
        self._due = [None] * len(sim.models)
        self._index = {model.name: model.index for model in sim.models}
        self._granted = [0] * len(sim.models)
        self._desired = [None] * len(sim.models)
        for model in sim.models:
            if self.desired(model):  # a floor: KEDA keeps it going from the start
                self._active.add(model.index)
                self._schedule(model, 0.0)

    def desired(self, model: ModelRun) -> int:
        # Present as the live scaler sees them: up, busy or not (a starting pod has no record).
        # A pod coming up takes queued sub-tasks at once, so the answer is worked out again.
        workers = len(model.ready)
        cached = self._desired[model.index]
        if cached is not None and cached[0] == workers:
            return cached[1]
        desired = desired_workers(
            model.spec.scaling,
            analyses=model.analyses,
            pending=model.pending,
            sub_tasks=model.recorded,
            queued_or_running=model.queued_or_running,
            slots_per_worker=model.spec.slots_per_worker,
            queued=len(model.queue),
            workers=workers,
            unqueued_chunks=model.unqueued_chunks,
            joining_chunks=model.joining_chunks,
            stage_gap=model.stage_gap,
            worker_start=self._sim.startup if self._sim else None,
        )
        self._desired[model.index] = (workers, desired)
        return desired

    def granted(self, model: ModelRun) -> int:
        """What the scaler tells KEDA for `model` now."""
        if self._limit is None:
            return self.desired(model)
        assert self._sim is not None
        if self._stale or self._pods_seen != self._sim.pods_changed:
            self._share()
        return self._granted[model.index]

    def _share(self) -> None:
        assert self._sim is not None
        claims = []
        present: dict[str, int] = {}
        staying: dict[str, int] = {}
        working: dict[str, int] = {}
        for index in sorted(self._active):
            model = self._sim.models[index]
            desired = self.desired(model)
            floor = model.spec.scaling.worker_count_min
            pods = model.pods
            if desired or floor:
                claims.append(Claim(model.name, desired, floor, model.spec.weight, model.priority))
            if pods:
                # Live pods (starting, working, draining) hold their share until they leave.
                present[model.name], staying[model.name] = pods, model.staying
                # Up and not told to go: what the live scaler sees as its workers (a pod still
                # starting has no record of presence yet).
                working[model.name] = len(model.ready) - model.leaving_busy
            self._granted[index] = 0
            if not (desired or floor or pods):
                self._active.discard(index)
        grants = allocate(
            claims,
            self._limit,
            present=present,
            staying=staying,
            working=working,
            preemption=self._preemption,
        ).granted
        for claim in claims:
            self._granted[self._index[claim.model]] = grants[claim.model]
        self._stale = False
        self._pods_seen = self._sim.pods_changed

    def work_changed(self, model: ModelRun, now: float, woke: bool) -> None:
        self._stale = True
        self._active.add(model.index)
        self._desired[model.index] = None
        if not woke:
            return
        scaled = self._objects[model.index]
        if self._due[model.index] is None:
            # Left alone until now: its polls and syncs resume on their grid.
            scaled.next_poll = _next_on_grid(now, self._keda.polling_interval)
            scaled.next_sync = _next_on_grid(now, self._keda.hpa_sync_period)
        if self._keda.push and self.granted(model) > 0:
            # StreamIsActive sends `true` as the model goes from idle to having work.
            self._apply(model, scaled.push(now))
        self._schedule(model, scaled.next_due)

    def _step(self, model: ModelRun, now: float) -> None:
        if self._due[model.index] != now:
            return  # replaced by an earlier step
        self._due[model.index] = None
        scaled = self._objects[model.index]
        granted = self.granted(model)
        self._apply(model, scaled.step(now, active=granted > 0, metric=float(granted)))
        if scaled.replicas or model.analyses or model.pending or self.desired(model):
            self._schedule(model, scaled.next_due)

    def _apply(self, model: ModelRun, replicas: int) -> None:
        assert self._sim is not None
        self._sim.set_replicas(model, replicas)

    def _schedule(self, model: ModelRun, time: float) -> None:
        assert self._sim is not None
        due = self._due[model.index]
        if due is not None and due <= time:
            return
        self._due[model.index] = time
        self._sim.at(time, self._on_due, model)

    def _on_due(self, model: ModelRun, now: float) -> None:
        self._step(model, now)


def _next_on_grid(now: float, period: float) -> float:
    return math.ceil(now / period) * period
