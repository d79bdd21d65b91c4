"""The analysis status machine, as OasisPlatform v2 runs it."""

from __future__ import annotations

import pytest

from api.lifecycle import ACCEPTS, Action, after_cancel, refusal

STATUSES = [
    "NEW",
    "INPUTS_GENERATION_ERROR",
    "INPUTS_GENERATION_CANCELLED",
    "INPUTS_GENERATION_STARTED",
    "INPUTS_GENERATION_QUEUED",
    "READY",
    "RUN_QUEUED",
    "RUN_STARTED",
    "RUN_COMPLETED",
    "RUN_CANCELLED",
    "RUN_ERROR",
]


@pytest.mark.parametrize(
    ("action", "accepted"),
    [
        (
            "generate_inputs",
            {
                "NEW",
                "INPUTS_GENERATION_ERROR",
                "INPUTS_GENERATION_CANCELLED",
                "READY",
                "RUN_COMPLETED",
                "RUN_ERROR",
                "RUN_CANCELLED",
            },
        ),
        ("run", {"READY", "RUN_COMPLETED", "RUN_ERROR", "RUN_CANCELLED"}),
        (
            "cancel",
            {"INPUTS_GENERATION_QUEUED", "INPUTS_GENERATION_STARTED", "RUN_QUEUED", "RUN_STARTED"},
        ),
    ],
)
def test_which_statuses_accept_which_action(action: Action, accepted: set[str]) -> None:
    assert {status for status in STATUSES if refusal(action, status) is None} == accepted


def test_a_refusal_says_the_status_and_what_is_needed() -> None:
    reason = refusal("run", "NEW")
    assert reason is not None
    assert reason.startswith("Analysis status is NEW; run needs one of: READY")


def test_every_accepted_status_is_a_real_status() -> None:
    assert {s for accepted in ACCEPTS.values() for s in accepted} <= set(STATUSES)


@pytest.mark.parametrize(
    ("status", "cancelled"),
    [
        ("INPUTS_GENERATION_QUEUED", "INPUTS_GENERATION_CANCELLED"),
        ("INPUTS_GENERATION_STARTED", "INPUTS_GENERATION_CANCELLED"),
        ("RUN_QUEUED", "RUN_CANCELLED"),
        ("RUN_STARTED", "RUN_CANCELLED"),
    ],
)
def test_cancel_ends_the_stage_in_flight(status: str, cancelled: str) -> None:
    assert after_cancel(status) == cancelled
