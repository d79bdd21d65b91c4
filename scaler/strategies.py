"""The scaling core: how many workers a model asks for, from its configuration and its work.

Pure: no I/O and nothing from flask, celery, grpc, redis or sqlalchemy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from scaler.configuration import ScalingConfiguration, ScalingStrategy

# A strategy sees only a model with work (analyses + pending > 0); idle is decided before it.
Strategy = Callable[[ScalingConfiguration, int, int], int]


def _fixed_workers(config: ScalingConfiguration, analyses: int, pending: int) -> int:
    return config.worker_count_fixed


def _queue_load(config: ScalingConfiguration, analyses: int, pending: int) -> int:
    # Left-over sub-tasks with no analysis counted are still work: they count as one analysis.
    return min(max(analyses, 1), config.worker_count_max)


def _dynamic_tasks(config: ScalingConfiguration, analyses: int, pending: int) -> int:
    # An analysis still being split counts as one sub-task, so its first worker starts early.
    tasks = max(pending, analyses)
    return min(_ceil_div(tasks, config.chunks_per_worker), config.worker_count_max)


STRATEGIES: Mapping[ScalingStrategy, Strategy] = {
    ScalingStrategy.FIXED_WORKERS: _fixed_workers,
    ScalingStrategy.QUEUE_LOAD: _queue_load,
    ScalingStrategy.DYNAMIC_TASKS: _dynamic_tasks,
}


def desired_workers(
    config: ScalingConfiguration | Mapping[str, Any] | None, *, analyses: int, pending: int
) -> int:
    """Workers the model asks for; `worker_count_min` is a floor in every state, above the cap.

    `config` is the typed configuration or a plain mapping of its fields (missing ones take the
    defaults; a bad one raises pydantic's ValidationError). `analyses`: main tasks of the model
    on its queue; `pending`: its queued + running sub-tasks.
    """
    if analyses < 0 or pending < 0:
        raise ValueError(
            f"work counts must not be negative (analyses={analyses}, pending={pending})"
        )
    typed = (
        config
        if isinstance(config, ScalingConfiguration)
        else ScalingConfiguration.model_validate(config or {})
    )
    wanted = 0
    if analyses or pending:
        wanted = STRATEGIES[typed.scaling_strategy](typed, analyses, pending)
    return max(wanted, typed.worker_count_min)


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)
