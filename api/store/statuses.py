"""The status vocabulary of analyses and sub-tasks, as OasisPlatform v2 spells it, stated once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class StageStatuses:
    """An analysis's status through one stage (input generation, or the loss run)."""

    queued: str
    started: str
    done: str
    error: str
    cancelled: str


INPUTS = StageStatuses(
    "INPUTS_GENERATION_QUEUED",
    "INPUTS_GENERATION_STARTED",
    "READY",
    "INPUTS_GENERATION_ERROR",
    "INPUTS_GENERATION_CANCELLED",
)
LOSSES = StageStatuses("RUN_QUEUED", "RUN_STARTED", "RUN_COMPLETED", "RUN_ERROR", "RUN_CANCELLED")
# By the stage names of worker/stages.py.
STAGES = {"inputs": INPUTS, "losses": LOSSES}
NEW = "NEW"

# An analysis is a main task of its model while queued and not yet split, or while its stage's
# sub-tasks are queued or running.
MAIN_TASK_STATUSES = (INPUTS.queued, INPUTS.started, LOSSES.queued, LOSSES.started)
# Analyses the platform's queue status lists: main tasks, and those that may become one.
ACTIVE = (NEW, INPUTS.queued, INPUTS.started, INPUTS.done, LOSSES.queued, LOSSES.started)

# A sub-task's statuses, and what is recorded of them (worker/activity.py) besides: RETRIED.
SubTaskStatus = Literal["PENDING", "QUEUED", "STARTED", "COMPLETED", "ERROR", "CANCELLED"]
RecordedStatus = Literal["QUEUED", "STARTED", "COMPLETED", "ERROR", "CANCELLED", "RETRIED"]
# A sub-task that still has to run, or is running.
IN_QUEUE: tuple[SubTaskStatus, ...] = ("PENDING", "QUEUED", "STARTED")
# A sub-task on its model's queue or running now.
ON_QUEUE: tuple[SubTaskStatus, ...] = ("QUEUED", "STARTED")

# Where an analysis run through both stages stops: done, or ended early.
ENDED = frozenset({LOSSES.done, LOSSES.error, LOSSES.cancelled, INPUTS.error, INPUTS.cancelled})
