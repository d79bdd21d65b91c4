"""The work behind each sub-task slug: one kernel call per sub-task, returning its log line.

Every step may run twice (a killed worker's sub-task is delivered again): the kernel steps are
idempotent, and so is everything here (archives and settings are written aside and renamed).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from worker import kernel
from worker.atomic import write_text
from worker.records import AnalysisFacts
from worker.runtime import Runtime

SETTINGS_FILE = "analysis_settings.json"


@dataclass(frozen=True)
class StepContext:
    runtime: Runtime
    analysis: AnalysisFacts
    chunk: int | None
    chunks: int

    @property
    def inputs_work(self) -> Path:
        return self.runtime.storage.inputs_work(self.analysis.id)

    @property
    def run_dir(self) -> Path:
        return self.runtime.storage.run_dir(self.analysis.id)

    def settings_file(self, folder: Path) -> Path | None:
        """The analysis settings as a file in `folder` (None when the analysis has none)."""
        if self.analysis.settings is None:
            return None
        path = folder / SETTINGS_FILE
        write_text(path, json.dumps(self.analysis.settings, indent=2, sort_keys=True))
        return path


Step = Callable[[StepContext], str]


def _load_locations(ctx: StepContext) -> str:
    stored = ctx.analysis.location_file
    if stored is None:
        raise FileNotFoundError("the portfolio has no location file")
    rows = kernel.load_locations(ctx.runtime.storage.upload(stored), ctx.inputs_work, ctx.chunks)
    return f"cut {rows} locations into {min(ctx.chunks, rows)} chunks"


def _lookup(ctx: StepContext) -> str:
    assert ctx.chunk is not None
    folder = kernel.lookup_chunk(
        ctx.inputs_work, ctx.runtime.model.lookup_config, (ctx.chunk - 1, ctx.chunks)
    )
    return f"keys of location chunk {ctx.chunk} of {ctx.chunks} in {folder.name}"


def _collect_keys(ctx: StepContext) -> str:
    kernel.collect_keys(ctx.inputs_work, ctx.chunks)
    return f"joined the keys of {ctx.chunks} chunks"


def _write_input_files(ctx: StepContext) -> str:
    folder = kernel.write_input_files(
        ctx.inputs_work,
        model_settings=ctx.runtime.model.model_settings,
        analysis_settings=ctx.settings_file(ctx.inputs_work),
    )
    return f"input files: {', '.join(sorted(p.name for p in folder.iterdir()))}"


def _record_inputs(ctx: StepContext) -> str:
    archive = ctx.runtime.storage.archive(
        ctx.inputs_work / kernel.INPUT_FILES, ctx.runtime.storage.input_archive(ctx.analysis.id)
    )
    return f"inputs archived: {archive.stat().st_size} bytes"


def _cleanup_inputs(ctx: StepContext) -> str:
    for name in (kernel.KEY_CHUNKS, kernel.LOCATIONS, kernel.EXPOSURE):
        ctx.runtime.storage.remove(ctx.inputs_work / name)
    return "removed the lookup's working files"


def _losses_params(ctx: StepContext) -> str:
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    if ctx.settings_file(ctx.run_dir) is None:
        raise ValueError("the analysis has no settings")
    return "analysis settings written"


def _losses_directory(ctx: StepContext) -> str:
    model = ctx.runtime.model
    kernel.prepare_losses(
        ctx.inputs_work / kernel.INPUT_FILES,
        model.model_data_dir,
        ctx.run_dir / SETTINGS_FILE,
        ctx.run_dir,
        model_settings=model.model_settings,
    )
    return "run directory prepared"


def _losses_chunk(ctx: StepContext) -> str:
    assert ctx.chunk is not None
    with ctx.runtime.kernel_tools() as tools:
        kernel.losses_chunk(
            ctx.run_dir,
            ctx.chunk - 1,
            ctx.chunks,
            processes=ctx.runtime.settings.processes,
            numba_cache_dir=ctx.runtime.numba_cache_dir,
            tools_dir=tools,
        )
    return f"losses of event chunk {ctx.chunk} of {ctx.chunks}"


def _losses_output(ctx: StepContext) -> str:
    with ctx.runtime.kernel_tools() as tools:
        folder = kernel.losses_output(
            ctx.run_dir,
            ctx.chunks,
            numba_cache_dir=ctx.runtime.numba_cache_dir,
            tools_dir=tools,
        )
    return f"outputs: {', '.join(sorted(p.name for p in folder.iterdir()))}"


def _record_losses(ctx: StepContext) -> str:
    archive = ctx.runtime.storage.archive(
        ctx.run_dir / kernel.OUTPUT, ctx.runtime.storage.output_archive(ctx.analysis.id)
    )
    return f"outputs archived: {archive.stat().st_size} bytes"


def _cleanup_losses(ctx: StepContext) -> str:
    ctx.runtime.storage.remove(ctx.run_dir)
    return "removed the run directory"


STEPS: dict[str, Step] = {
    "inputs:prepare-input-generation-params": _load_locations,
    "inputs:prepare-keys-file": _lookup,
    "inputs:collect-keys": _collect_keys,
    "inputs:write-input-files": _write_input_files,
    "inputs:record-input-files": _record_inputs,
    "inputs:cleanup": _cleanup_inputs,
    "losses:prepare-losses-generation-params": _losses_params,
    "losses:prepare-losses-generation-directory": _losses_directory,
    "losses:generate-losses-chunk": _losses_chunk,
    "losses:generate-losses-output": _losses_output,
    "losses:record-losses-files": _record_losses,
    "losses:cleanup": _cleanup_losses,
}


def step_for(stage: str, slug: str, chunk: int | None) -> Step:
    """The step of a slug; chunk slugs end in their chunk number."""
    base = slug.rsplit("-", 1)[0] if chunk is not None else slug
    return STEPS[f"{stage}:{base}"]
