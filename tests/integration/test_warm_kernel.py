"""The warm kernel against the cold one, with the real Oasis kernel: the same outputs, the same
failures, and nothing left running.

Each analysis (the demo model, ground-up only and with insured losses, every ORD output but the
quantiles) runs its loss stage in N chunks twice from the same prepared folder: each tool
started cold, as oasislmf starts it, and through the warm kernel. The numba cache is this CPU's
folder in pytest's cache folder, shared with the kernel tests and built once per machine.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.numba import numba_cache_root
from tests.support.polling import poll
from tests.support.processes import alive, children, in_session, wait_until_unused
from worker import kernel, numba_cache
from worker.kernel_tools import MONITOR, MONITOR_LOG, write_tools_dir
from worker.numba_cache import warm_up_run
from worker.warm_kernel import WarmKernel

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LOCATIONS = 12
EPT_REL_TOL = 2e-7
# oasislmf's own error when its script fails (a tool's exit status or stderr).
KERNEL_ERROR = "Kernel execution error"
DEADLINE_SECONDS = 60.0

OWNER = """
import sys
from pathlib import Path
from worker.group_guard import lead_own_group
from worker.kernel import losses_chunk
from worker.warm_kernel import WarmKernel
run, cache = sys.argv[1:]
lead_own_group()
warm = WarmKernel(Path(cache))
tools = warm.ready()
print(warm.process.pid, flush=True)
losses_chunk(Path(run), 0, 1, numba_cache_dir=Path(cache), tools_dir=tools)
"""


@pytest.fixture(scope="session")
def cache_folder(pytestconfig: pytest.Config) -> Path:
    root = numba_cache_root()
    return numba_cache.ensure_built(root)


@pytest.fixture(scope="session")
def warm(cache_folder: Path) -> Iterator[WarmKernel]:
    kernel_ = WarmKernel(cache_folder)
    kernel_.ready()
    yield kernel_
    kernel_.stop()


@pytest.fixture(scope="session", params=[False, True], ids=["ground-up", "insured"])
def prepared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared run folder; runs start from copies of it (`_run_dir`)."""
    insured = bool(request.param)
    root = tmp_path_factory.mktemp("insured" if insured else "ground-up")
    return warm_up_run(root, insured=insured, locations=LOCATIONS)


def _run_dir(prepared: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / kernel.PREPARED).symlink_to(prepared / kernel.PREPARED, target_is_directory=True)
    return folder


def _losses(run_dir: Path, count: int, cache: Path, tools: Path | None) -> Path:
    for index in range(count):
        kernel.losses_chunk(run_dir, index, count, numba_cache_dir=cache, tools_dir=tools)
    return kernel.losses_output(run_dir, count, numba_cache_dir=cache, tools_dir=tools)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _close_numbers(a: bytes, b: bytes) -> bool:
    rows_a, rows_b = a.decode().splitlines(), b.decode().splitlines()
    if len(rows_a) != len(rows_b) or rows_a[:1] != rows_b[:1]:
        return False
    for row_a, row_b in zip(rows_a[1:], rows_b[1:], strict=True):
        for x, y in zip(row_a.split(","), row_b.split(","), strict=True):
            if x != y and not math.isclose(float(x), float(y), rel_tol=EPT_REL_TOL):
                return False
    return True


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("count", [1, 3, 8])
def test_warm_outputs_equal_cold_outputs(
    prepared: Path, warm: WarmKernel, cache_folder: Path, tmp_path: Path, count: int
) -> None:
    cold = _files(_losses(_run_dir(prepared, tmp_path / "cold"), count, cache_folder, None))
    hot = _files(_losses(_run_dir(prepared, tmp_path / "warm"), count, cache_folder, warm.ready()))
    assert any(name.endswith("_selt.csv") for name in cold), sorted(cold)
    assert cold.keys() == hot.keys()
    differ = [name for name in cold if cold[name] != hot[name]]
    # ELT, PLT and ALT byte for byte; an EPT within the known float32 summation difference.
    assert [n for n in differ if not n.endswith("ept.csv")] == []
    assert [n for n in differ if not _close_numbers(cold[n], hot[n])] == []


# --- failures reach the script -----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["evepy"], ["gulmc", "--no-such-flag"], ["summarypy", "-t", "gul"]],
    ids=["missing-argument", "unknown-flag", "no-summary-output"],
)
def test_a_failing_tool_exits_and_complains_as_it_does_cold(
    warm: WarmKernel, tmp_path: Path, argv: list[str]
) -> None:
    cold_tool = Path(sys.executable).with_name(argv[0])
    cold = subprocess.run(
        [str(cold_tool), *argv[1:]], cwd=tmp_path, capture_output=True, stdin=subprocess.DEVNULL
    )
    hot = subprocess.run(
        [str(warm.ready() / argv[0]), *argv[1:]],
        cwd=tmp_path,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    assert cold.returncode != 0
    assert (hot.returncode, hot.stdout) == (cold.returncode, cold.stdout)
    assert _last_line(hot.stderr) == _last_line(cold.stderr)


def _last_line(text: bytes) -> str:
    lines = text.decode().strip().splitlines()
    return lines[-1] if lines else ""


@pytest.mark.timeout(600)
def test_a_failing_tool_fails_its_chunk_with_its_stderr_in_the_log(
    prepared: Path, warm: WarmKernel, cache_folder: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(prepared / kernel.PREPARED, broken / kernel.PREPARED, symlinks=True)
    events = broken / kernel.PREPARED / "input" / "events.bin"
    events.unlink()
    events.mkdir()  # there, but evepy cannot read it
    with pytest.raises(Exception, match=KERNEL_ERROR):
        kernel.losses_chunk(broken, 0, 1, numba_cache_dir=cache_folder, tools_dir=warm.ready())
    logs = list((broken / kernel.FAILED).rglob("stderror.err"))
    assert logs, "the failed attempt kept no kernel log"
    errors = "".join(log.read_text() for log in logs)
    assert "Traceback" in errors and "events.bin" in errors, errors


# --- nothing left running ----------------------------------------------------------------------


def test_a_tool_whose_stand_in_is_killed_is_killed(warm: WarmKernel, tmp_path: Path) -> None:
    """As when a revoke or a failed run's cleanup kills the script's group: the tool the warm
    process forked is not in that group, and goes because its stand-in went."""
    warm.ready()
    zygote = warm.process
    assert zygote is not None
    # summarypy reads its stdin to the end: it runs until it is told, or killed.
    stand_in = subprocess.Popen(
        [str(warm.tools_dir / "summarypy"), "-t", "gul", "-1", str(tmp_path / "out.bin")],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        start_new_session=True,
    )
    poll(lambda: bool(children(zygote.pid)), "the warm process to fork the tool", DEADLINE_SECONDS)
    (tool,) = children(zygote.pid)
    os.killpg(stand_in.pid, signal.SIGKILL)
    stand_in.wait()
    assert stand_in.stdin is not None
    stand_in.stdin.close()
    poll(lambda: not alive(tool), f"tool {tool} to go", DEADLINE_SECONDS)
    assert zygote.poll() is None, "the warm process must survive its tool's end"


@pytest.mark.timeout(600)
def test_a_killed_owner_leaves_no_kernel_process(
    prepared: Path, cache_folder: Path, tmp_path: Path
) -> None:
    """As when a worker's pool process is killed mid-chunk: its warm process and every tool it
    forked go with it, and its guard takes the script and the stand-ins (in the step's group)."""
    run_dir = _run_dir(prepared, tmp_path / "run")
    with subprocess.Popen(
        [sys.executable, "-c", OWNER, str(run_dir), str(cache_folder)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as owner:
        assert owner.stdout is not None
        zygote = int(owner.stdout.readline())
        poll(lambda: bool(children(zygote)), "a tool to run in the warm process", DEADLINE_SECONDS)
        tools = children(zygote)
        owner.kill()
        owner.wait()
    poll(
        lambda: not any(alive(pid) for pid in {zygote, *tools}),
        "the kernel to go",
        DEADLINE_SECONDS,
    )
    wait_until_unused(run_dir, DEADLINE_SECONDS)


@pytest.mark.timeout(600)
def test_a_warm_process_killed_mid_chunk_fails_the_chunk_and_is_started_again(
    prepared: Path, cache_folder: Path, tmp_path: Path
) -> None:
    warm = WarmKernel(cache_folder)
    # A process of this test's group: stopping the step must not reach it.
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        tools = warm.ready()
        first = warm.process
        assert first is not None
        run_dir = _run_dir(prepared, tmp_path / "run")
        failure: list[BaseException] = []

        def chunk() -> None:
            try:
                with warm.running() as watched:
                    kernel.losses_chunk(
                        run_dir, 0, 1, numba_cache_dir=cache_folder, tools_dir=watched
                    )
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                failure.append(exc)

        attempt = threading.Thread(target=chunk)
        attempt.start()
        poll(
            lambda: bool(children(first.pid)),
            "a tool to run in the warm process",
            DEADLINE_SECONDS,
        )
        first.kill()
        attempt.join(timeout=DEADLINE_SECONDS)
        assert not attempt.is_alive()
        assert [KERNEL_ERROR in str(e) for e in failure] == [True]
        assert bystander.poll() is None, "stopping the step killed a process of its caller's group"

        # The retry: the owner sees the warm process gone and starts another.
        assert warm.ready() == tools
        assert warm.process is not None and warm.process.pid != first.pid
        assert warm.starts == 2
        again = kernel.losses_chunk(run_dir, 0, 1, numba_cache_dir=cache_folder, tools_dir=tools)
        cold = _run_dir(prepared, tmp_path / "cold")
        reference = kernel.losses_chunk(cold, 0, 1, numba_cache_dir=cache_folder)
        assert _files(again) == _files(reference)
    finally:
        warm.stop()
        bystander.kill()
        bystander.wait()


# --- the exec monitor --------------------------------------------------------------------------


def test_the_exec_monitor_does_not_hold_the_scripts_stdout(tmp_path: Path) -> None:
    """oasislmf's script starts its monitor with the script's stdout and kills it on exit; the
    monitor's `sleep` lives on. Through the wrapper the worker reads the script's output to its
    end while that `sleep` still runs (it held the pipe for up to 2 s before)."""
    tools = write_tools_dir(tmp_path / "bin", stand_ins=False)
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    script = f"{MONITOR} $$ {log_dir} & pid0=$!\nsleep 0.2\nkill -9 $pid0\necho done\n"
    env = {**os.environ, "PATH": os.pathsep.join((str(tools), os.environ["PATH"]))}
    with subprocess.Popen(
        ["bash", "-c", script], stdout=subprocess.PIPE, env=env, start_new_session=True
    ) as process:
        output, _ = process.communicate(timeout=DEADLINE_SECONDS)
        sleeping = [pid for pid in in_session(process.pid) if _name(pid) == "sleep"]
        for pid in sleeping:
            os.kill(pid, signal.SIGKILL)
    assert output == b"done\n"
    assert sleeping, "the monitor's sleep ended before the script's output did"
    assert (log_dir / MONITOR_LOG).is_file()


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
