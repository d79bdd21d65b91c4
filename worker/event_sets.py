"""How many events an analysis's loss stage splits: the selected event set of the model settings.

Pure: no I/O. Model settings follow OasisPlatform's shape:
`{"model_settings": {"event_set": {"default": "p", "options": [{"id": "p",
"number_of_events": 1447}]}}}`; the analysis picks one with `model_settings.event_set`.
"""

from __future__ import annotations

from typing import Any


class EventSetError(ValueError):
    """The number of events cannot be known; the message names the event set."""


def selected_event_count(model_settings: Any, analysis_settings: Any) -> int:
    """Events of the event set the analysis selects (or the model's default one)."""
    event_ids = _get(analysis_settings, "event_ids")
    if isinstance(event_ids, list) and len(event_ids) > 1:
        return len(event_ids)
    event_set = _get(_get(model_settings, "model_settings"), "event_set")
    if not isinstance(event_set, dict):
        raise EventSetError("The model settings have no model_settings.event_set.")
    selected = _get(_get(analysis_settings, "model_settings"), "event_set")
    selected = selected if selected is not None else event_set.get("default")
    if not isinstance(selected, str) or not selected:
        raise EventSetError(
            "No event_set is selected in the analysis settings "
            "(model_settings.event_set) and the model has no default."
        )
    options = event_set.get("options")
    option = (
        next((o for o in options if isinstance(o, dict) and o.get("id") == selected), None)
        if isinstance(options, list)
        else None
    )
    if option is None:
        raise EventSetError(
            f"The event_set '{selected}' is not among the model's event set options."
        )
    count = option.get("number_of_events")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise EventSetError(f"Option 'number_of_events' is not set for event_set = '{selected}'.")
    return count


def _get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None
