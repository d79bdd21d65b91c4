"""A worker process keeps oasislmf's built-in lookup between lookup chunks (worker/lookups.py):
built once per configuration, the same keys as a lookup built afresh, a model's own lookup
class still built for every chunk, a changed configuration built again."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oasislmf.lookup.builtin import Lookup  # type: ignore[import-untyped]

from tests.support.own_lookup import OwnLookup
from worker import kernel, lookups
from worker.demo_model import DemoModel, demo_locations, ensure_demo_model

CHUNKS = 4


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> DemoModel:
    return ensure_demo_model(tmp_path_factory.mktemp("demo") / "model")


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every built-in lookup built while the test runs; no lookup kept before or after it."""
    built: list[Any] = []
    original = Lookup.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Lookup, "__init__", counting)
    lookups.forget()
    yield built
    lookups.forget()


def _copy(model: DemoModel, config: Path, **changes: str) -> Path:
    """The model's lookup configuration at `config`, its data named by absolute path."""
    settings = json.loads(model.lookup_config.read_text())
    settings.update(keys_data_path=str(model.keys_data_dir), **changes)
    config.write_text(json.dumps(settings))
    return config


def _keys(
    work: Path, model: DemoModel, config: Path, chunks: int = CHUNKS, *, afresh: bool = False
) -> dict[str, bytes]:
    """Each chunk's key files, looked up one chunk after another in this process (`afresh`:
    with no lookup kept from one chunk to the next)."""
    if not (work / kernel.LOCATIONS).is_dir():
        location_csv = work.parent / "location.csv"
        location_csv.write_text(demo_locations(40))
        kernel.load_locations(location_csv, work, chunks)
    found = {}
    for index in range(chunks):
        if afresh:
            lookups.forget()
        folder = kernel.lookup_chunk(work, config, (index, chunks))
        for file in sorted(folder.iterdir()):
            found[f"{folder.name}/{file.name}"] = file.read_bytes()
    return found


def test_the_built_in_lookup_is_built_once_for_every_chunk_and_gives_the_same_keys(
    model: DemoModel, tmp_path: Path, builds: list[Any]
) -> None:
    kept = _keys(tmp_path / "kept", model, model.lookup_config)
    assert len(builds) == 1
    assert lookups.kept_count() == 1

    fresh = _keys(tmp_path / "fresh", model, model.lookup_config, afresh=True)
    assert len(builds) == 1 + CHUNKS
    assert fresh == kept
    assert any(name.endswith(kernel.KEYS) and len(data) > 100 for name, data in kept.items())


def test_a_changed_configuration_is_built_again(
    model: DemoModel, tmp_path: Path, builds: list[Any]
) -> None:
    config = _copy(model, tmp_path / "lookup_config.json")
    _keys(tmp_path / "before", model, config, chunks=2)
    assert len(builds) == 1
    config.write_text(config.read_text() + "\n")  # the same lookup, another file
    os.utime(config, ns=(1, 1))
    _keys(tmp_path / "after", model, config, chunks=2)
    assert len(builds) == 2


def test_a_models_own_lookup_class_is_built_for_each_chunk(
    model: DemoModel, tmp_path: Path, builds: list[Any]
) -> None:
    own = f"{OwnLookup.__module__}.{OwnLookup.__qualname__}"
    config = _copy(model, tmp_path / "lookup_config.json", lookup_class=own)
    before = OwnLookup.built
    _keys(tmp_path / "own", model, config)
    assert OwnLookup.built - before == CHUNKS
    assert lookups.kept_count() == 0


def test_a_whole_portfolio_lookup_keeps_nothing(
    model: DemoModel, tmp_path: Path, builds: list[Any]
) -> None:
    _keys(tmp_path / "whole", model, model.lookup_config, chunks=1)
    assert builds
    assert lookups.kept_count() == 0
