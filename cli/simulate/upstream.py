"""The upstream worker-controller's rules (OasisPlatform's kubernetes/worker-controller), as a
policy of the simulator, for comparison with ours.

As read from its source (research notes, and docs/simulate.md):
- It acts on queue-status messages, sent as analyses change: here `message_delay` after a change
  (several changes within it make one message).
- A model's `tasks` are the sub-tasks of its active analyses, completed ones included; an
  analysis with none counts 1. DYNAMIC_TASKS divides those by chunks_per_worker.
- Only models with work get workers; the others go to 0 after a delay (one timer for all models,
  restarted whenever another model goes idle). Any other change is applied at once, by setting
  the Deployment's replicas: a scale-down removes the newest pods, busy or not.
- OASIS_PRIORITIZED_MODELS_LIMIT: when the models' priorities (an idle model's is 1) take more
  than N distinct values, models outside the top N priorities are treated as idle.
- OASIS_TOTAL_WORKER_LIMIT: models are served in iteration order (by their oldest active
  analysis, then the idle ones), each up to what is left of the limit; a model going to 0 still
  counts its current replicas until it is there.
"""

from __future__ import annotations

import math

from cli.simulate.engine import ModelRun, Simulation
from cli.simulate.trace import Trace
from scaler.configuration import ScalingConfiguration, ScalingStrategy

IDLE_PRIORITY = 1


def upstream_desired(config: ScalingConfiguration, analyses: int, tasks: int) -> int:
    """Upstream's count for a model with work: its floor wins over its cap."""
    if config.scaling_strategy is ScalingStrategy.FIXED_WORKERS:
        wanted = config.worker_count_fixed
    elif config.scaling_strategy is ScalingStrategy.QUEUE_LOAD:
        wanted = min(analyses, config.worker_count_max)
    else:
        wanted = min(math.ceil(tasks / config.chunks_per_worker), config.worker_count_max)
    return max(wanted, config.worker_count_min)


class UpstreamScaling:
    name = "upstream"
    idle_first = False

    def __init__(self, trace: Trace) -> None:
        self._settings = trace.upstream
        self._limit = trace.budget.total_worker_limit
        self.termination_grace: float | None = trace.upstream.termination_grace
        self._sim: Simulation | None = None
        self._replicas: list[int] = []
        # Models waiting for the shared scale-to-zero timer, and that timer's identity.
        self._to_zero: set[int] = set()
        self._timer = 0
        self._message_due = False
        # When each model last went from idle to busy: the controller's iteration order.
        self._since: list[float] = []
        # Models with work or replicas: the others are idle at 0 and stay so.
        self._live: set[int] = set()

    def attach(self, sim: Simulation) -> None:
        self._sim = sim
        self._replicas = [0] * len(sim.models)
        self._since = [math.inf] * len(sim.models)

    def work_changed(self, model: ModelRun, now: float, woke: bool) -> None:
        assert self._sim is not None
        if woke:
            self._since[model.index] = now
            self._live.add(model.index)
        elif not model.analyses:
            self._since[model.index] = math.inf
        if not self._message_due:
            self._message_due = True
            self._sim.at(now + self._settings.message_delay, self._on_message, None)

    def _on_message(self, _: None, now: float) -> None:
        assert self._sim is not None
        self._message_due = False
        models = [self._sim.models[index] for index in self._live]
        models.sort(key=lambda m: (self._since[m.index], m.index))
        top = self._top_priorities(models)
        used = 0
        for model in models:
            counted = top is None or (model.priority if model.analyses else IDLE_PRIORITY) in top
            used += self._scale(model, counted, used, now)
            if not model.analyses and not self._replicas[model.index]:
                self._live.discard(model.index)

    def _top_priorities(self, live: list[ModelRun]) -> set[int] | None:
        """The priorities whose models keep their work; None: every one."""
        assert self._sim is not None
        levels = {m.priority for m in live if m.analyses}
        if sum(1 for m in live if m.analyses) < len(self._sim.models):
            levels.add(IDLE_PRIORITY)  # every model without work is at 1
        limit = self._settings.prioritized_models_limit
        if limit is None or len(levels) <= 1:
            return None
        return set(sorted(levels, reverse=True)[:limit])

    def _scale(self, model: ModelRun, counted: bool, used: int, now: float) -> int:
        """Set one model's replicas; return the workers it takes from the limit."""
        assert self._sim is not None
        index = model.index
        wanted = 0
        if counted and model.analyses:
            tasks = max(model.upstream_tasks, model.analyses)
            wanted = upstream_desired(model.spec.scaling, model.analyses, tasks)
            if self._limit is not None:
                wanted = max(min(wanted, self._limit - used), 0)
        if wanted > 0:
            self._to_zero.discard(index)
        if self._replicas[index] == wanted:
            return wanted
        if wanted > 0:
            self._replicas[index] = wanted
            self._sim.set_replicas(model, wanted)
            return wanted
        # To zero after the delay; the one timer starts again.
        self._to_zero.add(index)
        self._timer += 1
        self._sim.at(now + self._settings.scale_to_zero_delay, self._on_timer, self._timer)
        return self._replicas[index]

    def _on_timer(self, timer: int, now: float) -> None:
        assert self._sim is not None
        if timer != self._timer:
            return  # restarted since
        for index in sorted(self._to_zero):
            self._replicas[index] = 0
            self._sim.set_replicas(self._sim.models[index], 0)
        self._to_zero.clear()
