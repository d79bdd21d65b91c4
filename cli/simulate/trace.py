"""The workload trace: models with their scaling and chunking, analyses arriving over time, and
the KEDA/HPA timing of our ScaledObject (docs/simulate.md describes every field).

Read from YAML or JSON. Unknown fields are refused, so a typo is an error rather than a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cli.keda.timing import (
    COOLDOWN_PERIOD_SECONDS,
    HPA_SYNC_PERIOD_SECONDS,
    POLLING_INTERVAL_SECONDS,
    SCALE_DOWN_STABILIZATION_SECONDS,
    KedaTiming,
)
from scaler.budget import MAX_PRIORITY, MIN_PRIORITY, Preemption
from scaler.configuration import ScalingConfiguration
from worker.configuration import ChunkingConfiguration

Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1)]
# One duration for every chunk of a stage, or one per chunk.
ChunkSeconds = Seconds | list[Seconds]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StageCost(Strict):
    """A chunk of this stage runs `overhead` + `per_item` x its items (locations or events)."""

    per_item: Seconds = 0.0
    overhead: Seconds = 0.0


class Durations(Strict):
    """How long a model's sub-tasks run."""

    lookup: StageCost = StageCost(per_item=0.01, overhead=5.0)
    loss: StageCost = StageCost(per_item=0.05, overhead=10.0)
    # The serial sub-task before a stage's chunks (its split) and after them (its join); 0: none.
    split: Seconds = 2.0
    join: Seconds = 5.0


class ModelSpec(Strict):
    scaling: ScalingConfiguration = ScalingConfiguration()
    chunking: ChunkingConfiguration = ChunkingConfiguration()
    durations: Durations = Durations()
    # Weight in the fleet budget's fair share.
    weight: Positive = 1.0
    # Sub-tasks one worker runs at once: the worker's --concurrency (a pod's slots).
    slots_per_worker: Count = 1
    # This model's ScaledObject's scale-down stabilization window (`manifests model
    # --scale-down-window-seconds`); None: the trace's `keda.scale_down_stabilization`.
    scale_down_stabilization: Seconds | None = None


class AnalysisSpec(Strict):
    """An analysis (or `count` alike, `every` seconds apart) of one model.

    Each stage is given by its items (`locations`, `events`: chunked by the model's chunking,
    with `chunking` overriding it field by field) or by its chunk count (`lookup_chunks`,
    `loss_chunks`, which then need the chunk durations). `*_chunk_seconds` replaces the model's
    duration model for that stage.
    """

    model: str
    arrival: Seconds = 0.0
    priority: Annotated[int, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)] = 4
    count: Count = 1
    every: Seconds = 0.0
    locations: Count | None = None
    events: Count | None = None
    lookup_chunks: Count | None = None
    loss_chunks: Count | None = None
    lookup_chunk_seconds: ChunkSeconds | None = None
    loss_chunk_seconds: ChunkSeconds | None = None
    chunking: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _stages(self) -> AnalysisSpec:
        for stage, items, chunks, seconds in (
            ("lookup", self.locations, self.lookup_chunks, self.lookup_chunk_seconds),
            ("loss", self.events, self.loss_chunks, self.loss_chunk_seconds),
        ):
            items_name = "locations" if stage == "lookup" else "events"
            if items is not None and chunks is not None:
                raise ValueError(f"give {items_name} or {stage}_chunks, not both")
            if chunks is not None and seconds is None:
                raise ValueError(f"{stage}_chunks needs {stage}_chunk_seconds (no items to time)")
            if isinstance(seconds, list) and chunks is not None and len(seconds) != chunks:
                raise ValueError(f"{stage}_chunk_seconds has {len(seconds)} values, not {chunks}")
            if seconds is not None and items is None and chunks is None:
                raise ValueError(f"{stage}_chunk_seconds without {items_name} or {stage}_chunks")
        if not any((self.locations, self.events, self.lookup_chunks, self.loss_chunks)):
            raise ValueError("an analysis needs a stage: locations, events or *_chunks")
        if self.chunking is not None:
            # Checked here, so that a bad override names its analysis.
            ChunkingConfiguration.model_validate(self.chunking)
        return self


class Keda(Strict):
    """Our ScaledObject's timing (KEDA and the HPA) and the cluster's pod start-up time."""

    polling_interval: Positive = POLLING_INTERVAL_SECONDS
    hpa_sync_period: Positive = HPA_SYNC_PERIOD_SECONDS
    cooldown_period: Seconds = COOLDOWN_PERIOD_SECONDS
    scale_down_stabilization: Seconds = SCALE_DOWN_STABILIZATION_SECONDS
    scale_up_stabilization: Seconds = 0.0
    tolerance: Seconds = 0.0
    # StreamIsActive (external-push): a model waking is acted on at once, not at the next poll.
    push: bool = True
    # From a replica asked for to a worker taking sub-tasks.
    pod_startup: Seconds = 20.0
    # The HPA's default scale-up policies (4 pods or 100 % per sync) instead of our ScaledObject's
    # (the asked count in one sync).
    hpa_default_scale_up: bool = False

    def timing(
        self, max_replicas: int, scale_down_stabilization: float | None = None
    ) -> KedaTiming:
        """A model's timing: `scale_down_stabilization` is its own window, if it sets one."""
        if scale_down_stabilization is None:
            scale_down_stabilization = self.scale_down_stabilization
        return KedaTiming(
            polling_interval=self.polling_interval,
            hpa_sync_period=self.hpa_sync_period,
            cooldown_period=self.cooldown_period,
            scale_down_stabilization=scale_down_stabilization,
            scale_up_stabilization=self.scale_up_stabilization,
            max_replicas=max(max_replicas, 1),
            tolerance=self.tolerance,
            hpa_default_scale_up=self.hpa_default_scale_up,
        )


class Budget(Strict):
    total_worker_limit: Annotated[int, Field(ge=0)] | None = None
    # What a higher priority may take of the workers other models have (the scaler's
    # budget_preemption).
    preemption: Preemption = Preemption.NONE


class Upstream(Strict):
    """The upstream worker-controller's own settings, for `--upstream`."""

    # Its delay before scaling a model to 0 (one timer for all models, restarted by each).
    scale_to_zero_delay: Seconds = 20.0
    # OASIS_PRIORITIZED_MODELS_LIMIT: only models of the top N priorities keep their work.
    prioritized_models_limit: Annotated[int, Field(ge=1)] | None = 2
    # A pod removed while busy gets this long to finish its sub-task, then the sub-task is
    # delivered again from the start (Kubernetes' default terminationGracePeriodSeconds).
    termination_grace: Seconds = 30.0
    # From a change of an analysis to the controller acting on its queue-status message.
    message_delay: Seconds = 1.0


class Trace(Strict):
    name: str = "trace"
    models: dict[str, ModelSpec] = Field(min_length=1)
    analyses: list[AnalysisSpec] = Field(min_length=1)
    keda: Keda = Keda()
    budget: Budget = Budget()
    upstream: Upstream = Upstream()

    @model_validator(mode="after")
    def _known_models(self) -> Trace:
        for index, analysis in enumerate(self.analyses):
            if analysis.model not in self.models:
                raise ValueError(
                    f"analyses.{index}.model: {analysis.model!r} is not one of the trace's "
                    f"models ({', '.join(sorted(self.models))})"
                )
        return self


def merged(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overlay` laid over it: mappings merge key by key, anything else replaces."""
    result = dict(base)
    for key, value in overlay.items():
        old = result.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            result[key] = merged(old, value)
        else:
            result[key] = value
    return result
