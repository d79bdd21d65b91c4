"""`oasis_model_analyses_by_priority`: the API's count of each model's main tasks by priority."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from api.db import migrate
from api.metrics import ModelCollector
from api.store.engine import make_engine
from api.store.orm import Analysis, Model, Portfolio
from scaler.metric_names import ANALYSES_BY_PRIORITY
from tests.support.servers import free_port
from worker import activity


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'api.sqlite3'}")
    migrate(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def add_model(session: Session, supplier: str, model: str) -> Model:
    row = Model(supplier_id=supplier, model_id=model, version_id="1")
    session.add(row)
    session.flush()
    return row


def add_analyses(session: Session, model: Model, status: str, *priorities: int) -> None:
    portfolio = Portfolio(name="p")
    session.add(portfolio)
    session.flush()
    for priority in priorities:
        session.add(
            Analysis(
                name="a",
                portfolio_id=portfolio.id,
                model_id=model.id,
                status=status,
                priority=priority,
            )
        )


def test_main_tasks_are_counted_per_model_and_priority(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        busy = add_model(session, "S", "Busy")
        add_model(session, "S", "Idle")
        done = add_model(session, "S", "Done")
        shared = add_model(session, "S-Two", "Words")
        twin = add_model(session, "S", "Two-Words")
        add_analyses(session, busy, "RUN_STARTED", 9, 4)
        add_analyses(session, busy, "INPUTS_GENERATION_QUEUED", 4)
        # Not main tasks: finished, or not queued.
        add_analyses(session, busy, "READY", 10)
        add_analyses(session, done, "RUN_COMPLETED", 7)
        add_analyses(session, done, "NEW", 7)
        # One queue name for two models: their counts add up.
        add_analyses(session, shared, "RUN_QUEUED", 2)
        add_analyses(session, twin, "RUN_STARTED", 2, 3)
    registry = CollectorRegistry()
    ModelCollector(
        sessions, activity.connect(f"redis://127.0.0.1:{free_port()}/0"), registry=registry
    )

    samples = {
        (sample.labels["model"], sample.labels["priority"]): sample.value
        for family in registry.collect()
        if family.name == ANALYSES_BY_PRIORITY
        for sample in family.samples
    }
    assert samples == {
        ("S-Busy-1", "4"): 2,
        ("S-Busy-1", "9"): 1,
        ("S-Two-Words-1", "2"): 2,
        ("S-Two-Words-1", "3"): 1,
    }


def test_the_gauge_is_described_so_a_scrape_can_ask_for_it(
    sessions: sessionmaker[Session],
) -> None:
    collector = ModelCollector(sessions, activity.connect("redis://127.0.0.1:1/0"), registry=None)
    assert collector.families_for([ANALYSES_BY_PRIORITY]) == frozenset({ANALYSES_BY_PRIORITY})
