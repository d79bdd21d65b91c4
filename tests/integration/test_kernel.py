"""The kernel steps with the real Oasis kernel: the demo model, chunked lookup, chunked losses.

The expensive work runs once per session in fixtures: the demo model, then one analysis of the
same locations in one chunk (`whole`) and in three (`chunked`); the tests compare what they left.
The kernel's numba cache is kept in pytest's cache folder, so only the first run on a machine
pays for compiling the kernel (about two minutes on two cores).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.local.tether import end_sessions
from tests.support.numba import numba_cache_root
from worker import kernel
from worker.demo_model import (
    EVENTS,
    DemoModel,
    demo_analysis_settings,
    demo_locations,
    ensure_demo_model,
)
from worker.event_sets import selected_event_count

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LOCATIONS = 15
COVERAGES = 3
CHUNKS = 3
REL_TOL = 1e-6
# Logged by oasislmf once the kernel's bash script is running.
KERNEL_RUNNING = "Resource monitor started"

ATTEMPT = """
import logging, sys
from pathlib import Path
from worker.kernel import losses_chunk
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
run, index, count, cache = sys.argv[1:]
losses_chunk(Path(run), int(index), int(count), numba_cache_dir=Path(cache))
"""
RACER = """
import sys
from pathlib import Path
from worker.demo_model import ensure_demo_model
ensure_demo_model(Path(sys.argv[1]))
"""


@dataclass(frozen=True)
class Analysis:
    work_dir: Path
    run_dir: Path

    @property
    def inputs(self) -> Path:
        return self.work_dir / kernel.INPUT_FILES

    @property
    def output(self) -> Path:
        return self.run_dir / kernel.OUTPUT


@pytest.fixture(scope="session")
def numba_cache(pytestconfig: pytest.Config) -> Path:
    return numba_cache_root()


@pytest.fixture(scope="session")
def model(tmp_path_factory: pytest.TempPathFactory) -> DemoModel:
    return ensure_demo_model(tmp_path_factory.mktemp("demo") / "model")


@pytest.fixture(scope="session")
def location_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("portfolio") / "location.csv"
    path.write_text(demo_locations(LOCATIONS))
    return path


@pytest.fixture(scope="session")
def whole(
    tmp_path_factory: pytest.TempPathFactory,
    model: DemoModel,
    location_csv: Path,
    numba_cache: Path,
) -> Analysis:
    """The analysis with every stage in one chunk."""
    analysis = _generate_inputs(tmp_path_factory.mktemp("whole"), model, location_csv, chunks=1)
    _prepare(analysis, model)
    kernel.losses_chunk(analysis.run_dir, 0, 1, numba_cache_dir=numba_cache)
    kernel.losses_output(analysis.run_dir, 1, numba_cache_dir=numba_cache)
    return analysis


@pytest.fixture(scope="session")
def chunked(
    tmp_path_factory: pytest.TempPathFactory,
    model: DemoModel,
    location_csv: Path,
    numba_cache: Path,
) -> Analysis:
    """The analysis in three lookup and three loss chunks, the second loss chunk first started
    by a worker that is killed while the kernel runs (its work is delivered again)."""
    analysis = _generate_inputs(tmp_path_factory.mktemp("chunked"), model, location_csv, CHUNKS)
    _prepare(analysis, model)
    _kill_while_the_kernel_runs(analysis.run_dir, 1, CHUNKS, numba_cache)
    for index in range(CHUNKS):
        kernel.losses_chunk(analysis.run_dir, index, CHUNKS, numba_cache_dir=numba_cache)
    kernel.losses_output(analysis.run_dir, CHUNKS, numba_cache_dir=numba_cache)
    return analysis


def _generate_inputs(root: Path, model: DemoModel, location_csv: Path, chunks: int) -> Analysis:
    analysis = Analysis(root / "work", root / "run")
    assert kernel.load_locations(location_csv, analysis.work_dir) == LOCATIONS
    for index in range(chunks):
        kernel.lookup_chunk(analysis.work_dir, model.lookup_config, (index, chunks))
    kernel.collect_keys(analysis.work_dir, chunks)
    kernel.write_input_files(analysis.work_dir, model_settings=model.model_settings)
    return analysis


def _prepare(analysis: Analysis, model: DemoModel) -> None:
    kernel.prepare_losses(
        analysis.inputs,
        model.model_data_dir,
        demo_analysis_settings(),
        analysis.run_dir,
        model_settings=model.model_settings,
    )


def _kill_while_the_kernel_runs(run_dir: Path, index: int, count: int, cache: Path) -> None:
    """Start a chunk in its own session and kill the session once the kernel runs (the
    chunk's script leads a group of its own in it, as in a worker, whose pool process's guard
    kills it).

    What the killed worker leaves in its temporary folder stays beside `run_dir`.
    """
    pipes = run_dir.parent / "killed-attempt-tmp"
    pipes.mkdir(parents=True)
    with subprocess.Popen(
        [sys.executable, "-c", ATTEMPT, str(run_dir), str(index), str(count), str(cache)],
        cwd=REPO,
        env={**os.environ, "OASIS_TMPDIR": str(pipes)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    ) as attempt:
        assert attempt.stdout is not None
        for line in attempt.stdout:
            if KERNEL_RUNNING in line:
                break
        else:
            raise AssertionError(f"the attempt ended (code {attempt.wait()}) before the kernel ran")
        while end_sessions({attempt.pid}):
            pass  # again, for what forked while the session was being killed
        attempt.wait()


def _files(root: Path) -> dict[str, bytes]:
    """Every file under `root` (following links) by relative path, temporary folders left out."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
    }


def _stamps(root: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of everything under `root`, to see that nothing was rewritten."""
    return {
        str(path.relative_to(root)): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
    }


def _table(path: Path) -> list[list[str]]:
    with open(path, newline="") as stream:
        return list(csv.reader(stream))


# --- (a) the demo model ----------------------------------------------------------------------


def test_the_demo_model_is_the_same_bytes_wherever_it_is_made(
    model: DemoModel, tmp_path: Path
) -> None:
    root = model.lookup_config.parent
    again = ensure_demo_model(tmp_path / "again")
    assert _files(again.lookup_config.parent) == _files(root)
    assert again.model_data_dir == tmp_path / "again" / "model_data"


def test_the_demo_model_is_made_only_when_missing(model: DemoModel) -> None:
    root = model.lookup_config.parent
    before = _stamps(root.parent)
    assert ensure_demo_model(root) == model
    assert _stamps(root.parent) == before


def test_racing_processes_leave_one_complete_model(model: DemoModel, tmp_path: Path) -> None:
    target = tmp_path / "raced"
    racers = [
        subprocess.Popen([sys.executable, "-c", RACER, str(target)], cwd=REPO) for _ in range(2)
    ]
    assert [racer.wait(timeout=120) for racer in racers] == [0, 0]
    assert _files(target) == _files(model.lookup_config.parent)
    assert os.listdir(tmp_path) == ["raced"]


def test_the_model_settings_offer_the_event_set_the_data_holds(model: DemoModel) -> None:
    settings = json.loads(model.model_settings.read_text())
    assert selected_event_count(settings, demo_analysis_settings()) == EVENTS
    assert (model.model_data_dir / "events_p.bin").stat().st_size == 4 * EVENTS
    assert settings["lookup_settings"]["supported_perils"][0]["id"] == "WTC"


# --- (b) the lookup in chunks ----------------------------------------------------------------


def test_every_demo_location_resolves(whole: Analysis) -> None:
    keys = _table(whole.work_dir / kernel.KEYS_DIR / kernel.KEYS)
    errors = _table(whole.work_dir / kernel.KEYS_DIR / kernel.KEYS_ERRORS)
    assert len(keys) - 1 == LOCATIONS * COVERAGES
    assert {row[0] for row in keys[1:]} == {str(n) for n in range(1, LOCATIONS + 1)}
    assert errors[1:] == []


def test_a_chunked_lookup_writes_the_same_input_files(whole: Analysis, chunked: Analysis) -> None:
    one, three = _files(whole.inputs), _files(chunked.inputs)
    assert {"items.bin", "coverages.bin", "gul_summary_map.csv", "keys.csv"} <= one.keys()
    assert one.keys() == three.keys()
    # The exposure record names the file it was made from, which is in each analysis's folder.
    config = kernel.EXPOSURE_CONFIG
    three[config] = three[config].replace(bytes(chunked.work_dir), bytes(whole.work_dir))
    assert [name for name in one if one[name] != three[name]] == []


# --- (c) the losses in chunks ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["gul_S1_selt.csv", "gul_S1_splt.csv", "gul_S1_palt.csv", "gul_S1_ept.csv"],
    ids=["ELT", "PLT", "ALT", "EPT"],
)
def test_losses_in_chunks_equal_losses_in_one_piece(
    whole: Analysis, chunked: Analysis, name: str
) -> None:
    one, three = _table(whole.output / name), _table(chunked.output / name)
    assert len(one) > 1
    assert one[0] == three[0]
    assert len(one) == len(three)
    for row_one, row_three in zip(one[1:], three[1:], strict=True):
        for a, b in zip(row_one, row_three, strict=True):
            assert math.isclose(float(a), float(b), rel_tol=REL_TOL), (name, row_one, row_three)


# --- (d) running a step again ----------------------------------------------------------------


def test_a_killed_chunk_delivered_again_leaves_its_files_once(chunked: Analysis) -> None:
    chunks = chunked.run_dir / kernel.LOSS_CHUNKS
    left = sorted(p.name for p in chunks.iterdir() if p.name.startswith("."))
    assert [name.split(".tmp-")[0] for name in left] == [".2.work"]
    assert sorted(p.name for p in chunks.iterdir() if not p.name.startswith(".")) == [
        "1.work",
        "2.work",
        "3.work",
    ]


def test_every_step_run_again_changes_nothing(
    chunked: Analysis, model: DemoModel, location_csv: Path, numba_cache: Path
) -> None:
    before = _stamps(chunked.work_dir.parent)
    assert kernel.load_locations(location_csv, chunked.work_dir) == LOCATIONS
    kernel.lookup_chunk(chunked.work_dir, model.lookup_config, (1, CHUNKS))
    kernel.collect_keys(chunked.work_dir, CHUNKS)
    kernel.write_input_files(chunked.work_dir, model_settings=model.model_settings)
    _prepare(chunked, model)
    kernel.losses_chunk(chunked.run_dir, 1, CHUNKS, numba_cache_dir=numba_cache)
    kernel.losses_output(chunked.run_dir, CHUNKS, numba_cache_dir=numba_cache)
    assert _stamps(chunked.work_dir.parent) == before


def test_a_chunk_computed_again_gives_the_same_bytes(
    chunked: Analysis, model: DemoModel, numba_cache: Path, tmp_path: Path
) -> None:
    """As when a chunk's first result is lost: the second run writes the very same files."""
    loss = kernel.losses_chunk(chunked.run_dir, 2, CHUNKS, numba_cache_dir=numba_cache)
    first = _files(loss)
    loss.rename(tmp_path / "loss")
    assert kernel.losses_chunk(chunked.run_dir, 2, CHUNKS, numba_cache_dir=numba_cache) == loss
    assert _files(loss) == first

    keys = kernel.lookup_chunk(chunked.work_dir, model.lookup_config, (2, CHUNKS))
    first = _files(keys)
    keys.rename(tmp_path / "keys")
    assert kernel.lookup_chunk(chunked.work_dir, model.lookup_config, (2, CHUNKS)) == keys
    assert _files(keys) == first


# --- (e) joining before every chunk is done --------------------------------------------------


def test_losses_output_names_the_chunks_not_done(chunked: Analysis, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(chunked.run_dir / kernel.PREPARED, run / kernel.PREPARED, symlinks=True)
    for number in (1, 3):
        name = f"{number}.work"
        shutil.copytree(
            chunked.run_dir / kernel.LOSS_CHUNKS / name, run / kernel.LOSS_CHUNKS / name
        )
    with pytest.raises(kernel.MissingChunksError, match=r"chunk 2 of 3") as error:
        kernel.losses_output(run, CHUNKS)
    assert [m.split(" (")[0] for m in error.value.missing] == ["chunk 2 of 3"]
    assert not (run / kernel.OUTPUT).exists()


def test_collect_keys_names_the_chunks_not_done(
    chunked: Analysis, model: DemoModel, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    shutil.copytree(chunked.work_dir / kernel.LOCATIONS, work / kernel.LOCATIONS)
    kernel.lookup_chunk(work, model.lookup_config, (0, CHUNKS))
    with pytest.raises(kernel.MissingChunksError, match=r"rows 5-9, rows 10-14$"):
        kernel.collect_keys(work, CHUNKS)
    assert not (work / kernel.KEYS_DIR).exists()


# --- (e) the log of a step --------------------------------------------------------------------


LOGGED_ATTEMPT = ATTEMPT.replace(
    'format="%(message)s"', 'format="%(levelname)s %(name)s: %(message)s"'
)


def test_a_loss_chunks_log_carries_no_progress_ping_error(
    whole: Analysis, model: DemoModel, numba_cache: Path, tmp_path: Path
) -> None:
    """No platform websocket here: oasislmf's progress ping must not log an ERROR per chunk
    (`oasis_ping_socket could not connect` with nothing on its port), nor reach whatever else
    holds its port."""
    analysis = Analysis(whole.work_dir, tmp_path / "run")
    _prepare(analysis, model)
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        port = squatter.getsockname()[1]
        logs = [_logged_chunk(analysis.run_dir, 0, numba_cache, port)]
        squatter.setblocking(False)
        with pytest.raises(BlockingIOError):
            squatter.accept()
    logs.append(_logged_chunk(analysis.run_dir, 1, numba_cache, port))  # nothing listens now
    for log in logs:
        assert KERNEL_RUNNING in log
        errors = [line for line in log.splitlines() if line.startswith(("ERROR", "CRITICAL"))]
        assert errors == [], log
        assert "oasis_ping" not in log


def _logged_chunk(run_dir: Path, index: int, cache: Path, ping_port: int) -> str:
    done = subprocess.run(
        [sys.executable, "-c", LOGGED_ATTEMPT, str(run_dir), str(index), "2", str(cache)],
        cwd=REPO,
        env={**os.environ, "OASIS_SOCKET_SERVER_PORT": str(ping_port)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (run_dir / kernel.LOSS_CHUNKS / f"{index + 1}.work").is_dir()
    return done.stdout + done.stderr
