"""The analysis status machine of OasisPlatform v2: which action each status accepts."""

from __future__ import annotations

from typing import Literal

Action = Literal[
    "generate_inputs",
    "run",
    "generate_and_run",
    "cancel",
    "cancel_generate_inputs",
    "cancel_analysis_run",
]

GENERATION_IN_FLIGHT = ("INPUTS_GENERATION_QUEUED", "INPUTS_GENERATION_STARTED")
RUN_IN_FLIGHT = ("RUN_QUEUED", "RUN_STARTED")
INPUTS_READY = ("READY", "RUN_COMPLETED", "RUN_ERROR", "RUN_CANCELLED")
ACCEPTS: dict[Action, tuple[str, ...]] = {
    "generate_inputs": (
        "NEW",
        "INPUTS_GENERATION_ERROR",
        "INPUTS_GENERATION_CANCELLED",
        *INPUTS_READY,
    ),
    "generate_and_run": (
        "NEW",
        "INPUTS_GENERATION_ERROR",
        "INPUTS_GENERATION_CANCELLED",
        *INPUTS_READY,
    ),
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
    return "INPUTS_GENERATION_CANCELLED" if status in GENERATION_IN_FLIGHT else "RUN_CANCELLED"
