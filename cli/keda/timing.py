"""What KEDA and the HPA do with our ScaledObject, as a pure state machine with time passed in.

One `ScaledObjectModel` per model. Its owner feeds it what KEDA would see from the scaler (an
`IsActive` answer and the `GetMetrics` value, at the times `next_due` names, plus the pushes of
`StreamIsActive`) and reads `replicas`, the scale target's replica count. The local stand-in
drives it with real time and real processes, the simulator with simulated time.

Behaviour modelled (KEDA v2.20, Kubernetes HPA v2; see design.md):
- KEDA polls every `polling_interval`: active at 0 replicas scales to max(minReplicaCount, 1) at
  once; inactive for `cooldown_period` since the last active moment scales to minReplicaCount
  when that is 0. A `true` on the push stream acts like an active poll, at once.
- The HPA syncs every `hpa_sync_period` while replicas > 0 (it is disabled at zero): with
  metricType AverageValue and target 1 it wants ceil(metric), unless the ratio to the current
  count is within `tolerance` (ours is 0); clamped to [max(min, 1), max].
- Stabilization: a scale-down goes only as low as the highest recommendation of the last
  `scale_down_stabilization` seconds (a scale-up as high as the lowest of its window).
- Rate: our ScaledObject's scale-up policy allows maxReplicaCount pods per period (the manifest
  generator writes it), so the HPA reaches the scaler's count in one sync. Without that policy
  (`hpa_default_scale_up`) the HPA's defaults apply: at most max(4 pods, 100 %) more per
  `hpa_sync_period`. The scale-down policy (100 % per period) limits nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# The HPA's default scale-up policies, for a ScaledObject that sets none: 4 pods or 100 % per
# period, whichever allows more. Ours sets maxReplicaCount pods per period instead.
SCALE_UP_PODS = 4
SCALE_UP_PERCENT = 100

# Our ScaledObject's timing, the one statement of it: the manifest generator writes it, the
# simulator assumes it and the example traces take it. Chosen by the sweep of bench/simulate.py
# (docs/simulate.md). The cooldown is short because push activation wakes a model at once: a
# worker kept after the last chunk (60 s before; KEDA's default 300 s) cost more than a pod start
# on the next analysis (PiWind 1.15x upstream's worker-seconds at 60 s, 0.93x at 10 s); a 10 s
# poll lets the scale to zero land soon after it (5 s for both: docs/simulate.md says why not).
# No scale-down stabilization: the scaler's answer is exact (a worker is released only when no
# queued or running sub-task needs it, and a join's workers are kept when the model's last gap
# between stages was shorter than a worker start), so holding the highest recent answer only
# kept idle workers (chaz 0.900x upstream's worker-seconds with 30 s, 0.896x without;
# three-analyses 0.903x and 0.889x; `fleet` 0.907x and 0.899x) and did not lower the churn at
# stage boundaries (arrivals-over-hours 324 pods started within a minute of one leaving with
# 30 s, 305 without). It stays a per-model choice (`manifests model --scale-down-window-seconds`)
# for work whose next stage or analysis comes sooner than a pod start (docs/simulate.md).
POLLING_INTERVAL_SECONDS = 10
COOLDOWN_PERIOD_SECONDS = 10
SCALE_DOWN_STABILIZATION_SECONDS = 0
# The cluster's (kube-controller-manager's default), not ours to set.
HPA_SYNC_PERIOD_SECONDS = 15


@dataclass(frozen=True)
class KedaTiming:
    """The timing of our ScaledObject and of the cluster's HPA controller, in seconds."""

    polling_interval: float = POLLING_INTERVAL_SECONDS
    hpa_sync_period: float = HPA_SYNC_PERIOD_SECONDS
    cooldown_period: float = COOLDOWN_PERIOD_SECONDS
    scale_down_stabilization: float = SCALE_DOWN_STABILIZATION_SECONDS
    scale_up_stabilization: float = 0.0
    min_replicas: int = 0
    max_replicas: int = 100
    # Relative change the HPA ignores; our ScaledObject sets 0 (Kubernetes' default is 0.1).
    tolerance: float = 0.0
    # The HPA's default scale-up policies (4 pods or 100 % per period) instead of ours (any count
    # up to max_replicas in one period).
    hpa_default_scale_up: bool = False

    def __post_init__(self) -> None:
        for name in ("polling_interval", "hpa_sync_period"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be above 0")
        for name in ("cooldown_period", "scale_down_stabilization", "scale_up_stabilization"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more")
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ValueError(
                "replicas need 0 <= min_replicas <= max_replicas and max_replicas >= 1"
            )
        if self.tolerance < 0:
            raise ValueError("tolerance must be 0 or more")


@dataclass
class ScaledObjectModel:
    timing: KedaTiming
    replicas: int = 0
    # None until the first active moment: an object never active has no cooldown to wait for.
    last_active: float | None = None
    next_poll: float = 0.0
    next_sync: float = 0.0
    _recommendations: list[tuple[float, int]] = field(default_factory=list)
    _changes: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.replicas = max(self.replicas, self.timing.min_replicas)

    @property
    def next_due(self) -> float:
        """When KEDA or the HPA next asks the scaler."""
        return min(self.next_poll, self.next_sync)

    def step(self, now: float, *, active: bool, metric: float) -> int:
        """Do what is due at `now` with the scaler's answers; return the replica count."""
        if now >= self.next_poll:
            self._poll(now, active)
            self.next_poll = now + self.timing.polling_interval
        if now >= self.next_sync:
            self._sync(now, metric)
            self.next_sync = now + self.timing.hpa_sync_period
        return self.replicas

    def push(self, now: float) -> int:
        """A `true` from StreamIsActive: KEDA acts on it at once, as on an active poll."""
        self._poll(now, active=True)
        return self.replicas

    def _poll(self, now: float, active: bool) -> None:
        if active:
            self.last_active = now
            if self.replicas == 0:
                self.replicas = max(self.timing.min_replicas, 1)
            return
        cooled = self.last_active is None or now - self.last_active >= self.timing.cooldown_period
        if self.timing.min_replicas == 0 and self.replicas > 0 and cooled:
            self.replicas = 0
            self._recommendations.clear()

    def _sync(self, now: float, metric: float) -> None:
        if self.replicas == 0:
            return  # the HPA does not scale a target at zero; KEDA wakes it
        wanted = self._stabilized(now, self._clamp(self._raw(metric)))
        replicas = self._rate_limited(now, wanted)
        if replicas != self.replicas:
            # Only the HPA's own changes count against its rate: KEDA's activation does not.
            self._changes.append((now, replicas - self.replicas))
            self.replicas = replicas

    def _raw(self, metric: float) -> int:
        value = metric if math.isfinite(metric) and metric > 0 else 0.0
        ratio = value / self.replicas  # target 1 per replica (AverageValue)
        # The HPA's own comparison (inclusive, in this form), so 11/10 is within 10 %.
        if 1.0 - self.timing.tolerance <= ratio <= 1.0 + self.timing.tolerance:
            return self.replicas
        return math.ceil(round(value, 3))  # KEDA hands the HPA milli-units

    def _clamp(self, wanted: int) -> int:
        return min(max(wanted, self.timing.min_replicas, 1), self.timing.max_replicas)

    def _stabilized(self, now: float, wanted: int) -> int:
        """The HPA's stabilization: up to the lowest recent recommendation, down to the highest."""
        window = max(self.timing.scale_down_stabilization, self.timing.scale_up_stabilization)
        recent = [(t, n) for t, n in self._recommendations if now - t < window]
        up = min([wanted] + [n for t, n in recent if now - t < self.timing.scale_up_stabilization])
        down = max(
            [wanted] + [n for t, n in recent if now - t < self.timing.scale_down_stabilization]
        )
        self._recommendations = [*recent, (now, wanted)]
        return min(max(self.replicas, up), down)

    def _rate_limited(self, now: float, wanted: int) -> int:
        """Ours: up to max_replicas at once. The HPA's defaults: at most max(4 pods, 100 %) more
        per period. Fewer is not limited (100 % per period)."""
        if wanted <= self.replicas or not self.timing.hpa_default_scale_up:
            return wanted
        period = self.timing.hpa_sync_period
        self._changes = [(t, d) for t, d in self._changes if now - t < period]
        start = self.replicas - sum(d for _, d in self._changes if d > 0)
        limit = max(start + SCALE_UP_PODS, start * (100 + SCALE_UP_PERCENT) // 100)
        return max(min(wanted, limit), self.replicas)
