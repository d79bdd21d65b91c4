"""Which rows a lookup chunk takes, and publishing a step's result once (no kernel here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.atomic import build_dir, publish_dir, write_text
from worker.chunking import partition
from worker.kernel import ChunkSpec, chunk_ranges, chunk_rows


@pytest.mark.parametrize(
    ("chunk", "total", "rows"),
    [
        ((0, 3), 15, range(0, 5)),
        ((2, 3), 15, range(10, 15)),
        ((0, 4), 10, range(0, 3)),
        ((3, 4), 10, range(8, 10)),
        ((0, 1), 7, range(0, 7)),
        (range(2, 5), 7, range(2, 5)),
    ],
    ids=["first of 3", "last of 3", "larger first", "smaller last", "one chunk", "a range"],
)
def test_chunk_rows(chunk: ChunkSpec, total: int, rows: range) -> None:
    assert chunk_rows(chunk, total) == rows


@pytest.mark.parametrize(
    ("chunk", "total"),
    [((3, 3), 15), ((-1, 3), 15), ((0, 16), 15), (range(0, 0), 5), (range(3, 9), 5)],
    ids=["index too large", "negative index", "more chunks than rows", "empty", "past the end"],
)
def test_chunk_rows_refuses(chunk: ChunkSpec, total: int) -> None:
    with pytest.raises(ValueError):
        chunk_rows(chunk, total)


@given(st.integers(1, 500).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n))))
def test_index_chunks_are_the_partition(case: tuple[int, int]) -> None:
    total, count = case
    ranges = [chunk_rows((index, count), total) for index in range(count)]
    assert ranges == partition(total, count) == chunk_ranges(count, total)
    assert chunk_ranges(list(reversed(ranges)), total) == ranges


@pytest.mark.parametrize(
    "chunks",
    [[range(0, 5), range(6, 10)], [range(0, 6), range(5, 10)], [range(0, 9)], []],
    ids=["gap", "overlap", "short", "none"],
)
def test_chunk_ranges_must_cover_every_row_once(chunks: list[ChunkSpec]) -> None:
    with pytest.raises(ValueError, match="exactly once"):
        chunk_ranges(chunks, 10)


def test_build_dir_publishes_once(tmp_path: Path) -> None:
    target = tmp_path / "result"
    calls: list[Path] = []

    def build(folder: Path) -> None:
        calls.append(folder)
        (folder / "data").write_text("one")

    assert build_dir(target, build) is True
    assert build_dir(target, build) is False
    assert len(calls) == 1
    assert (target / "data").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]


def test_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    def build(folder: Path) -> None:
        (folder / "half").write_text("written")
        raise RuntimeError("killed half-way")

    with pytest.raises(RuntimeError):
        build_dir(tmp_path / "result", build)
    assert list(tmp_path.iterdir()) == []


def test_the_loser_of_a_race_keeps_the_winners_result(tmp_path: Path) -> None:
    target = tmp_path / "result"
    winner, loser = tmp_path / "winner", tmp_path / "loser"
    for folder, text in ((winner, "first"), (loser, "second")):
        folder.mkdir()
        (folder / "data").write_text(text)
    assert publish_dir(winner, target) is True
    assert publish_dir(loser, target) is False
    assert (target / "data").read_text() == "first"
    assert not loser.exists()


def test_write_text_replaces_whole(tmp_path: Path) -> None:
    target = tmp_path / "settings.json"
    write_text(target, "old")
    write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]
