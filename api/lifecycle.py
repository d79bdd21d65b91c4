"""The analysis status machine of OasisPlatform v2: which action each status accepts."""

from __future__ import annotations

from typing import Literal

from api.store.statuses import INPUTS, LOSSES, NEW

Action = Literal[
    "generate_inputs",
    "run",
    "generate_and_run",
    "cancel",
    "cancel_generate_inputs",
    "cancel_analysis_run",
]

GENERATION_IN_FLIGHT = (INPUTS.queued, INPUTS.started)
RUN_IN_FLIGHT = (LOSSES.queued, LOSSES.started)
INPUTS_READY = (INPUTS.done, LOSSES.done, LOSSES.error, LOSSES.cancelled)
GENERATION_RETRYABLE = (NEW, INPUTS.error, INPUTS.cancelled)
ACCEPTS: dict[Action, tuple[str, ...]] = {
    "generate_inputs": (*GENERATION_RETRYABLE, *INPUTS_READY),
    "generate_and_run": (*GENERATION_RETRYABLE, *INPUTS_READY),
    "run": INPUTS_READY,
    "cancel": GENERATION_IN_FLIGHT + RUN_IN_FLIGHT,
    "cancel_generate_inputs": GENERATION_IN_FLIGHT,
    "cancel_analysis_run": RUN_IN_FLIGHT,
}


def refusal(action: Action, status: str) -> str | None:
    """Why `action` is refused in `status`, or None when it is accepted."""
    accepted = ACCEPTS[action]
    if status in accepted:
        return None
    return f"Analysis status is {status}; {action} needs one of: {', '.join(accepted)}."


def after_cancel(status: str) -> str:
    return INPUTS.cancelled if status in GENERATION_IN_FLIGHT else LOSSES.cancelled
