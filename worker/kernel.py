"""The Oasis kernel steps of one analysis, one function per sub-task, through oasislmf's Python API.

The shape mirrors OasisPlatform v2's sub-tasks, so a Celery task is a thin call of one function:

- input generation: `load_locations` (once), `lookup_chunk` (chunk i of N), `collect_keys`,
  `write_input_files`;
- losses: `prepare_losses` (once), `losses_chunk` (chunk i of N), `losses_output`.

Each function takes explicit absolute paths and keeps everything in the folders it is given, so
the sub-tasks of one analysis may run in different processes, or on different workers sharing a
directory. Each may run twice (a killed worker's chunk is delivered again), so each is
idempotent: it builds its result under a temporary name and renames it into place, and a result
already in place is kept. A loss chunk runs in a private folder that shares the prepared inputs,
so even two live attempts at one chunk cannot collide; the first to finish is kept.

The lookup: `load_locations` cuts the OED file once, streaming, into a file per chunk
(`worker.location_split`; chunk i holds the rows `worker.chunking.partition` gives it, the rows
numpy's array_split gives an OasisPlatform worker) and numbers every location as oasislmf numbers
the whole portfolio, so no step but the one that writes the input files loads the whole table. A
chunk loads only its own rows, checked and typed as oasislmf loads a location file, and takes its
`loc_id`s from the split: numbering a chunk alone would start from 1 and clash. The joined keys
are ordered by location, so the input files are the same bytes however the rows were cut.

The losses: chunk `index` (from 0) of `count` runs kernel process `index + 1` of `count`
(`--process-number`, `--max-process-id`) and leaves `<run_dir>/chunks/<index + 1>.work`. With
`count == 1` the stage is not split: the one chunk runs the whole event set in `processes`
kernel pipelines (default: every core this process may use), as an OasisPlatform worker does.

The kernel's tools (evepy, gulmc, summarypy, katpy, ...) run under a bash script that oasislmf
starts; each step's script leads a process group of its own (`worker.step_shell`), so that a
failed script's cleanup, which kills processes of its group, cannot reach its caller. What is
left of the groups is killed when the step ends (`worker.step_groups`), and a pool process's
guard (`worker.group_guard`) kills them when the pool process exits, so a chunk that is revoked,
or whose worker is killed, leaves no kernel process running. The tools are
found beside this interpreter; numba caches their compiled code in `numba_cache_dir` when given,
else where the environment says. A failed kernel run keeps its logs in `<run_dir>/failed/`.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sysconfig
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from worker import lookups, step_groups
from worker.atomic import build_dir, publish_dir, scratch_dir, write_text
from worker.chunking import partition
from worker.kernel_tools import write_tools_dir
from worker.location_split import (
    WHOLE,
    covering,
    piece_file,
    read_ids,
    read_split,
    split_locations,
)
from worker.progress_sink import progress_sink

ChunkSpec = range | tuple[int, int]
AnalysisSettings = Path | Mapping[str, Any]

LOCATIONS: Final = "locations"
EXPOSURE: Final = "exposure"
LOCATION_FILE: Final = "location.parquet"
EXPOSURE_CONFIG: Final = "exposure_info.json"
KEY_CHUNKS: Final = "key-chunks"
KEYS_DIR: Final = "keys"
KEYS: Final = "keys.csv"
KEYS_ERRORS: Final = "keys-errors.csv"
LOC_ID_COLUMN: Final = "LocID"
SAR_ID: Final = "loc_id"
SAR_FIELDS: Final = ("PortNumber", "AccNumber", "LocNumber")
INPUT_FILES: Final = "input"
SETTINGS_FILE: Final = "analysis_settings.json"
PREPARED: Final = "prepared"
LOSS_CHUNKS: Final = "chunks"
CHUNK_RECORD: Final = "chunk.json"
OUTPUT: Final = "output"
FAILED: Final = "failed"


class MissingChunksError(RuntimeError):
    """A joining step found chunks whose results are not there; the message names them."""

    def __init__(self, stage: str, missing: Sequence[str]) -> None:
        self.missing = list(missing)
        super().__init__(
            f"cannot join the {stage} chunks: no result yet for {', '.join(self.missing)}"
        )


# --- input generation -----------------------------------------------------------------------


def load_locations(location_csv: Path, work_dir: Path, chunks: int = 1) -> int:
    """Cut the OED location file once for the whole analysis into `chunks` files (fewer if it
    has fewer rows), each row numbered as oasislmf numbers the whole portfolio; return the row
    count. Streams: the file is never loaded whole (see `worker.location_split`).

    Any chunk of rows can still be looked up (`lookup_chunk` reads the files that hold it), so a
    different cut of the same rows works too. The rows are checked as OED by the lookup of the
    chunk that holds them, and the whole file by `write_input_files`.
    """
    _absolute(location_csv, work_dir)
    build_dir(work_dir / LOCATIONS, lambda folder: _split(location_csv, folder, chunks))
    return _row_count(work_dir)


def lookup_chunk(work_dir: Path, lookup_config: Path, chunk: ChunkSpec) -> Path:
    """Keys (and key errors) for one chunk's rows; the chunk is a row range or (index, count)."""
    _absolute(work_dir, lookup_config)
    total = _row_count(work_dir)
    rows = chunk_rows(chunk, total)
    target = work_dir / KEY_CHUNKS / _rows_name(rows)
    whole = len(rows) == total  # one chunk: the lookup may use every core
    build_dir(target, lambda folder: _lookup(work_dir, lookup_config, rows, folder, whole))
    return target


def collect_keys(work_dir: Path, chunks: int | Sequence[ChunkSpec]) -> Path:
    """Join the chunks' keys into `<work_dir>/keys/`; every chunk must be done (else it says which).

    `chunks` is the count N (chunks `(i, N)`) or the chunks themselves, covering every row once.
    """
    _absolute(work_dir)
    total = _row_count(work_dir)
    ranges = chunk_ranges(chunks, total)
    folders = [work_dir / KEY_CHUNKS / _rows_name(rows) for rows in ranges]
    missing = [
        f"rows {r.start}-{r.stop - 1}"
        for r, f in zip(ranges, folders, strict=True)
        if not f.is_dir()
    ]
    if missing:
        raise MissingChunksError("lookup", missing)
    target = work_dir / KEYS_DIR
    build_dir(target, lambda folder: _join_keys(folders, folder))
    return target


def write_input_files(
    work_dir: Path,
    *,
    model_settings: Path | None = None,
    analysis_settings: Path | None = None,
) -> Path:
    """Generate the Oasis input files from the collected keys, into `<work_dir>/input/`.

    The whole location file is loaded here, once, checked and typed as OED into
    `<work_dir>/exposure/`, which the input files are made from.
    """
    from oasislmf.computation.generate.files import GenerateFiles  # type: ignore[import-untyped]

    _absolute(work_dir, *(p for p in (model_settings, analysis_settings) if p))
    keys = work_dir / KEYS_DIR
    if not keys.is_dir():
        raise MissingChunksError("lookup", ["the collected keys (run collect_keys first)"])

    whole = work_dir / LOCATIONS / WHOLE

    def generate(folder: Path) -> None:
        GenerateFiles(
            oasis_files_dir=str(folder),
            oed_location_csv=str(work_dir / EXPOSURE / LOCATION_FILE),
            keys_data_path=str(keys / KEYS),
            keys_errors_path=str(keys / KEYS_ERRORS),
            model_settings_json=_optional(model_settings),
            analysis_settings_json=_optional(analysis_settings),
        ).run()

    target = work_dir / INPUT_FILES
    if not target.is_dir():
        build_dir(work_dir / EXPOSURE, lambda folder: _save_exposure(whole, folder))
        build_dir(target, generate)
    return target


# --- losses -----------------------------------------------------------------------------------


def prepare_losses(
    inputs_dir: Path,
    model_data_dir: Path,
    analysis_settings: AnalysisSettings,
    run_dir: Path,
    *,
    model_settings: Path | None = None,
) -> Path:
    """Prepare the run folder every loss chunk starts from: `<run_dir>/prepared/`."""
    from oasislmf.manager import OasisManager  # type: ignore[import-untyped]

    _absolute(inputs_dir, model_data_dir, run_dir, *(p for p in (model_settings,) if p))
    target = run_dir / PREPARED
    if target.is_dir():
        return target
    settings = _settings_file(analysis_settings, run_dir)

    def prepare(folder: Path) -> None:
        OasisManager().generate_losses_dir(
            oasis_files_dir=str(inputs_dir),
            model_data_dir=str(model_data_dir),
            analysis_settings_json=str(settings),
            model_settings_json=_optional(model_settings),
            model_run_dir=str(folder),
        )

    build_dir(target, prepare)
    return target


def losses_chunk(
    run_dir: Path,
    index: int,
    count: int,
    *,
    processes: int | None = None,
    numba_cache_dir: Path | None = None,
    tools_dir: Path | None = None,
) -> Path:
    """Losses of event chunk `index` (from 0) of `count`: `<run_dir>/chunks/<index + 1>.work`.

    With `count == 1` the event set is not split and `processes` kernel pipelines share it
    (default: one per core); otherwise the chunk is one pipeline, kernel process `index + 1`.
    """
    from oasislmf.manager import OasisManager

    _absolute(run_dir, *(p for p in (numba_cache_dir,) if p))
    if not 0 <= index < count:
        raise ValueError(f"chunk index {index} is not within 0..{count - 1}")
    target = run_dir / LOSS_CHUNKS / f"{index + 1}.work"
    if target.is_dir():
        return target
    pipelines = (processes or _cores()) if count == 1 else count
    with scratch_dir(target) as attempt, kernel_environment(numba_cache_dir, tools_dir):
        settings = _link_prepared(run_dir, attempt)
        with _logs_kept_on_failure(attempt, run_dir):
            OasisManager().generate_losses_partial(
                oasis_files_dir=str(run_dir / PREPARED / "input"),
                analysis_settings_json=str(settings),
                model_run_dir=str(attempt),
                process_number=index + 1 if count > 1 else None,
                max_process_id=pipelines,
            )
        work = attempt / (f"{index + 1}.work" if count > 1 else "work")
        record = {"index": index, "count": count, "pipelines": pipelines}
        (work / CHUNK_RECORD).write_text(json.dumps(record) + "\n")
        publish_dir(work, target)
    return target


def losses_output(
    run_dir: Path,
    count: int,
    *,
    numba_cache_dir: Path | None = None,
    tools_dir: Path | None = None,
) -> Path:
    """Join the `count` chunks into the analysis outputs, `<run_dir>/output/`.

    Raises `MissingChunksError` naming every chunk (by kernel process number) not done yet.
    """
    from oasislmf.manager import OasisManager

    _absolute(run_dir, *(p for p in (numba_cache_dir,) if p))
    target = run_dir / OUTPUT
    if target.is_dir():
        return target
    chunks = [run_dir / LOSS_CHUNKS / f"{number}.work" for number in range(1, count + 1)]
    missing = [f"chunk {n} of {count} ({c})" for n, c in enumerate(chunks, 1) if not c.is_dir()]
    if missing:
        raise MissingChunksError("loss", missing)
    records = [json.loads((c / CHUNK_RECORD).read_text()) for c in chunks]
    if any(r["count"] != count for r in records):
        raise ValueError(f"the chunks in {run_dir / LOSS_CHUNKS} were not cut into {count}")
    with scratch_dir(target) as attempt, kernel_environment(numba_cache_dir, tools_dir):
        settings = _link_prepared(run_dir, attempt)
        for chunk in chunks:
            shutil.copytree(chunk, attempt / "work", dirs_exist_ok=True)
        (attempt / "work" / CHUNK_RECORD).unlink()
        with _logs_kept_on_failure(attempt, run_dir):
            OasisManager().generate_losses_output(
                oasis_files_dir=str(run_dir / PREPARED / "input"),
                analysis_settings_json=str(settings),
                model_run_dir=str(attempt),
                max_process_id=records[0]["pipelines"],
            )
        publish_dir(attempt / OUTPUT, target)
    return target


# --- pure helpers -----------------------------------------------------------------------------


def chunk_rows(chunk: ChunkSpec, total: int) -> range:
    """The rows of a chunk given as a range, or as (index, count) cut by `partition`."""
    if isinstance(chunk, range):
        if chunk.step != 1 or not 0 <= chunk.start < chunk.stop <= total:
            raise ValueError(f"{chunk} is not a non-empty run of rows within 0..{total}")
        return chunk
    index, count = chunk
    if not 0 <= index < count:
        raise ValueError(f"chunk index {index} is not within 0..{count - 1}")
    return partition(total, count)[index]


def chunk_ranges(chunks: int | Sequence[ChunkSpec], total: int) -> list[range]:
    """Every chunk's rows in order; they must cover 0..total once, without gaps or overlaps."""
    if isinstance(chunks, int):
        return partition(total, chunks)
    ranges = sorted((chunk_rows(c, total) for c in chunks), key=lambda r: r.start)
    stops = [0] + [r.stop for r in ranges]
    if (
        not ranges
        or any(r.start != stop for r, stop in zip(ranges, stops[:-1], strict=True))
        or stops[-1] != total
    ):
        raise ValueError(f"the chunks {ranges} do not cover rows 0..{total - 1} exactly once")
    return ranges


# --- internals --------------------------------------------------------------------------------


def _absolute(*paths: Path) -> None:
    relative = [str(p) for p in paths if not p.is_absolute()]
    if relative:
        raise ValueError(f"the kernel needs absolute paths, got {', '.join(relative)}")


def _optional(path: Path | None) -> str | None:
    return str(path) if path else None


def _cores() -> int:
    """The cores this process may run on (its affinity, which containers narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _rows_name(rows: range) -> str:
    return f"rows-{rows.start}-{rows.stop}"


def _split(location_csv: Path, folder: Path, chunks: int) -> None:
    split_locations(location_csv, folder, chunks)


def _save_exposure(location_csv: Path, folder: Path) -> None:
    """Load and check the OED file as oasislmf does (ods_tools, OED types) and save it typed.

    The saved file holds OED fields only, so generate-oasis-files checks it as it checks any
    location file and numbers its `loc_id`s over the whole of it, as the split numbered them.
    """
    from ods_tools.oed import OedExposure  # type: ignore[import-untyped]

    exposure = OedExposure(location=read_oed_csv(location_csv), **oed_options())
    exposure.save(str(folder), compression="parquet", version_name="", save_config=True)


def read_oed_csv(location_csv: Path) -> Any:
    """Every column as text, missing values as oasislmf reads them, so a numeric `PortNumber`
    (as in PiWind's samples) stays the string OED says it is instead of breaking the parquet
    files the kernel writes."""
    import pandas as pd  # type: ignore[import-untyped]
    from ods_tools.oed.common import PANDAS_DEFAULT_NULL_VALUES  # type: ignore[import-untyped]

    return pd.read_csv(
        location_csv,
        dtype=str,
        keep_default_na=False,
        na_values=sorted(PANDAS_DEFAULT_NULL_VALUES - {"NA"}),
    )


def oed_options() -> dict[str, Any]:
    from oasislmf.utils.data import DEFAULT_ADDITIONAL_FIELDS  # type: ignore[import-untyped]

    return {
        "check_oed": True,
        "use_field": True,
        "additional_fields": DEFAULT_ADDITIONAL_FIELDS,
        "backend_dtype": "pd_dtype",
    }


def _location_frame(work_dir: Path, rows: range) -> Any:
    """Rows `rows` of the portfolio, checked and typed as oasislmf loads a location file, with
    `loc_id` over the whole portfolio (from the split) and `loc_idx` the row in the file: the
    very rows a load of the whole file would give, sliced."""
    from oasislmf.utils.data import prepare_oed_exposure
    from ods_tools.oed import OedExposure

    folder = work_dir / LOCATIONS
    exposure = OedExposure(location=_raw_rows(folder, rows), **oed_options())
    frame = exposure.location.dataframe
    frame.index = range(rows.start, rows.stop)
    frame[SAR_ID] = read_ids(folder, rows)
    _check_numbering(frame, rows)
    prepare_oed_exposure(exposure)
    return exposure.location.dataframe.reset_index(drop=True)


def _raw_rows(folder: Path, rows: range) -> Any:
    """The rows as `read_oed_csv` reads them, from the chunk files that hold them."""
    import pandas as pd

    parts = []
    for piece, part in covering(read_split(folder), rows):
        table = read_oed_csv(piece_file(folder, piece))
        if len(table) != len(piece):
            raise RuntimeError(
                f"pandas reads {len(table)} rows from {piece_file(folder, piece)}, the split"
                f" found {len(piece)}: the location file was cut where pandas does not cut it"
            )
        parts.append(table.iloc[part.start : part.stop])
    return pd.concat(parts, ignore_index=True)


def _check_numbering(frame: Any, rows: range) -> None:
    """The split's numbers must order the chunk's locations as oasislmf's own numbering of the
    chunk does (equal keys, equal numbers): a guard against the split reading a key otherwise."""
    import numpy as np
    from oasislmf.utils.data import get_ids

    own = np.asarray(get_ids(frame, list(SAR_FIELDS)))
    split = np.unique(frame[SAR_ID].to_numpy(), return_inverse=True)[1] + 1
    if not np.array_equal(own, split):
        raise RuntimeError(f"the split numbered rows {rows.start}-{rows.stop - 1} out of order")


def _row_count(work_dir: Path) -> int:
    folder = work_dir / LOCATIONS
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing: run load_locations first")
    return read_split(folder).rows


def _lookup(work_dir: Path, lookup_config: Path, rows: range, folder: Path, whole: bool) -> None:
    frame = _location_frame(work_dir, rows)
    lookups.generate_keys(lookup_config, frame, folder, whole=whole, keys=KEYS, errors=KEYS_ERRORS)


def _join_keys(chunk_folders: Sequence[Path], folder: Path) -> None:
    """Join each file of the chunks: one header, then every row ordered by location.

    The lookup emits a location's keys in its own order (coverage by coverage, for instance),
    and that order depends on which rows it saw together; a stable sort on `LocID` gives the
    same file for any cut of the rows (and with or without the lookup's multiprocessing), so
    the input files do not depend on the chunking.
    """
    for name in (KEYS, KEYS_ERRORS):
        header: list[str] | None = None
        rows: list[list[str]] = []
        for chunk in chunk_folders:
            with open(chunk / name, newline="", encoding="utf-8") as stream:
                lines = list(csv.reader(stream))
            if lines:
                header = header or lines[0]
                rows.extend(lines[1:])
        if header:
            location = header.index(LOC_ID_COLUMN)
            rows.sort(key=lambda row: int(row[location]))
        with open(folder / name, "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerows(([header] if header else []) + rows)


def _settings_file(analysis_settings: AnalysisSettings, run_dir: Path) -> Path:
    if isinstance(analysis_settings, Path):
        _absolute(analysis_settings)
        return analysis_settings
    settings = run_dir / SETTINGS_FILE
    write_text(settings, json.dumps(dict(analysis_settings), indent=2, sort_keys=True) + "\n")
    return settings


def _link_prepared(run_dir: Path, attempt: Path) -> Path:
    """Make `attempt` a private run folder sharing the prepared inputs and model data."""
    prepared = run_dir / PREPARED
    if not prepared.is_dir():
        raise FileNotFoundError(f"{prepared} is missing: run prepare_losses first")
    for shared in ("input", "static"):
        (attempt / shared).symlink_to(prepared / shared, target_is_directory=True)
    for private in ("fifo", "work", OUTPUT):
        (attempt / private).mkdir()
    settings = attempt / OUTPUT / SETTINGS_FILE
    shutil.copyfile(prepared / OUTPUT / SETTINGS_FILE, settings)
    return settings


@contextmanager
def _logs_kept_on_failure(attempt: Path, run_dir: Path) -> Iterator[None]:
    """Keep a failed attempt's kernel logs as `<run_dir>/failed/<attempt>/` (the rest goes)."""
    try:
        yield
    except BaseException:
        if (attempt / "log").is_dir():
            shutil.copytree(attempt / "log", run_dir / FAILED / attempt.name.lstrip("."))
        raise


@contextmanager
def kernel_environment(numba_cache_dir: Path | None, tools_dir: Path | None) -> Iterator[None]:
    """The environment the kernel's subprocesses inherit, for the length of one step.

    - PATH: the kernel's tools are console scripts installed beside this interpreter; they go
      first, so a worker started without its virtual environment activated still finds them.
      Before them, `tools_dir` (`worker.kernel_tools`: the warm kernel's stand-ins), else a
      folder with the exec monitor's wrapper only.
    - NUMBA_CACHE_DIR: the caller's folder, when it names one.
    - OASIS_TMPDIR: a private folder for the kernel's named pipes, removed afterwards (the
      kernel leaves a folder of pipes behind in the temporary folder on every run otherwise).
      It is made inside the caller's OASIS_TMPDIR when there is one.
    - OASIS_SOCKET_SERVER_IP/_PORT: the kernel's progress ping goes to a sink of this step's
      (`worker.progress_sink`), not to a port nothing (or something else) listens on.
    - Where the script records its process group (`worker.step_groups`).
    """
    pipes = Path(tempfile.mkdtemp(prefix="oasis-kernel-", dir=os.environ.get("OASIS_TMPDIR")))
    tools = tools_dir or write_tools_dir(pipes / "bin", stand_ins=False)
    with progress_sink() as ping_target, step_groups.recorded() as groups:
        changes = {
            "PATH": os.pathsep.join(
                (str(tools), sysconfig.get_path("scripts"), os.environ.get("PATH", ""))
            ),
            "OASIS_TMPDIR": str(pipes),
            **ping_target,
            **groups,
        }
        if numba_cache_dir is not None:
            numba_cache_dir.mkdir(parents=True, exist_ok=True)
            changes["NUMBA_CACHE_DIR"] = str(numba_cache_dir)
        saved = {name: os.environ.get(name) for name in changes}
        os.environ.update(changes)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            shutil.rmtree(pipes, ignore_errors=True)
