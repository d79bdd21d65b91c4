"""The selected event set's size, and a clear refusal naming the event set when it is unknown."""

from __future__ import annotations

from typing import Any

import pytest

from worker.event_sets import EventSetError, selected_event_count

MODEL = {
    "model_settings": {
        "event_set": {
            "default": "p",
            "options": [
                {"id": "p", "number_of_events": 1447},
                {"id": "s", "number_of_events": 38127},
                {"id": "x", "desc": "no count"},
            ],
        }
    }
}


@pytest.mark.parametrize(
    ("analysis", "events"),
    [
        ({"model_settings": {"event_set": "p"}}, 1447),
        ({"model_settings": {"event_set": "s"}}, 38127),
        ({}, 1447),
        ({"model_settings": {}}, 1447),
        ({"event_ids": [1, 2, 3], "model_settings": {"event_set": "s"}}, 3),
        ({"event_ids": [7], "model_settings": {"event_set": "s"}}, 38127),
    ],
    ids=["selected p", "selected s", "default", "default, empty", "event ids", "one event id"],
)
def test_event_counts(analysis: dict[str, Any], events: int) -> None:
    assert selected_event_count(MODEL, analysis) == events


@pytest.mark.parametrize(
    ("model", "analysis", "message"),
    [
        (
            MODEL,
            {"model_settings": {"event_set": "x"}},
            "Option 'number_of_events' is not set for event_set = 'x'.",
        ),
        (MODEL, {"model_settings": {"event_set": "q"}}, "event_set 'q' is not among"),
        ({"model_settings": {"event_set": {"options": []}}}, {}, "No event_set is selected"),
        (None, {"model_settings": {"event_set": "p"}}, "no model_settings.event_set"),
        ({"model_settings": "junk"}, None, "no model_settings.event_set"),
        (
            {"model_settings": {"event_set": {"default": "p", "options": "junk"}}},
            {},
            "event_set 'p' is not among",
        ),
        (
            {
                "model_settings": {
                    "event_set": {
                        "default": "p",
                        "options": [{"id": "p", "number_of_events": True}],
                    }
                }
            },
            {},
            "'number_of_events' is not set",
        ),
        (
            {
                "model_settings": {
                    "event_set": {"default": "p", "options": [{"id": "p", "number_of_events": 0}]}
                }
            },
            {},
            "'number_of_events' is not set",
        ),
    ],
)
def test_unknown_counts_name_the_event_set(model: Any, analysis: Any, message: str) -> None:
    with pytest.raises(EventSetError, match=message.replace("(", r"\(").replace(".", r"\.")):
        selected_event_count(model, analysis)
