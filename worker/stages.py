"""The sub-tasks of each analysis stage, in order, with the slugs OasisPlatform v2 gives them.

Pure: no I/O. A stage is a chain whose one fan-out step holds the chunks; every sub-task is
recorded up front, so an analysis's `status_count` shows the whole stage from its start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

StageName = Literal["inputs", "losses"]
# Each stage's chunks are slugged `<prefix>-<number>`.
CHUNK_SLUGS: dict[StageName, str] = {
    "inputs": "prepare-keys-file",
    "losses": "generate-losses-chunk",
}


def chunk_slug_prefix(stage: StageName) -> str:
    """What every chunk slug of `stage`, and no other of its slugs, starts with."""
    return f"{CHUNK_SLUGS[stage]}-"


@dataclass(frozen=True)
class SubTaskSpec:
    slug: str
    name: str
    # Chunk number (1..N) for the fan-out sub-tasks, None for the others.
    chunk: int | None = None


@dataclass(frozen=True)
class StagePlan:
    stage: StageName
    before: tuple[SubTaskSpec, ...]
    chunks: tuple[SubTaskSpec, ...]
    after: tuple[SubTaskSpec, ...]

    @property
    def sub_tasks(self) -> tuple[SubTaskSpec, ...]:
        return self.before + self.chunks + self.after

    @property
    def last(self) -> SubTaskSpec:
        return self.after[-1]


def input_generation(chunks: int) -> StagePlan:
    """Keys lookup per location chunk, then the Oasis input files."""
    return StagePlan(
        stage="inputs",
        before=(SubTaskSpec("prepare-input-generation-params", "Prepare input generation"),),
        chunks=_chunks(CHUNK_SLUGS["inputs"], "Lookup keys", chunks),
        after=(
            SubTaskSpec("collect-keys", "Collect keys"),
            SubTaskSpec("write-input-files", "Write input files"),
            SubTaskSpec("record-input-files", "Record input files"),
            SubTaskSpec("cleanup", "Clean up input generation"),
        ),
    )


def losses(chunks: int) -> StagePlan:
    """Loss chunks over the event set, then one join of their outputs."""
    return StagePlan(
        stage="losses",
        before=(
            SubTaskSpec("prepare-losses-generation-params", "Prepare losses generation"),
            SubTaskSpec("prepare-losses-generation-directory", "Prepare the run directory"),
        ),
        chunks=_chunks(CHUNK_SLUGS["losses"], "Generate losses chunk", chunks),
        after=(
            SubTaskSpec("generate-losses-output", "Generate losses output"),
            SubTaskSpec("record-losses-files", "Record losses files"),
            SubTaskSpec("cleanup", "Clean up losses generation"),
        ),
    )


def _chunks(slug: str, name: str, count: int) -> tuple[SubTaskSpec, ...]:
    if count < 1:
        raise ValueError(f"a stage needs at least one chunk, got {count}")
    return tuple(
        SubTaskSpec(f"{slug}-{i}", f"{name} {i} of {count}", i) for i in range(1, count + 1)
    )
