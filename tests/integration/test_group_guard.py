"""A pool process's guard: whatever ends the pool process, nothing it started runs on.

A stand-in pool process leads its group with its guard (as every worker pool process does) and
runs a fake kernel: a bash script that leaves `sleep`s running in the background, in subshells
and in a nested bash; run plainly (in the pool process's group) or as a kernel step (in a group
of its own, recorded for the guard). The stand-in and everything it started run in the test's
folder, which is how the test finds them in /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import processes_using, wait_until_gone, wait_until_unused

DEADLINE = 10.0
# The stand-in, its script, and the script's background processes: three sleeps, a subshell
# and a nested bash.
PROCESSES = 7
PIPELINE = """\
sleep 300 &
( sleep 300 & wait ) &
bash -c 'sleep 300 & wait' &
touch started
wait
"""
POOL_PROCESS = """\
import contextlib, subprocess, sys
from worker.group_guard import lead_own_group
from worker.kernel import kernel_environment
guard = lead_own_group()
print(guard.pid, flush=True)
as_step = sys.argv[1] == "step"
with kernel_environment(None, None) if as_step else contextlib.nullcontext():
    subprocess.run(["bash", "pipeline.sh"])
"""


@pytest.fixture(params=["plain", "step"], ids=["in its group", "as a kernel step"])
def pool_process(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The stand-in, once its fake kernel runs whole; with its guard's pid."""
    (tmp_path / "pipeline.sh").write_text(PIPELINE)
    process = subprocess.Popen(
        [sys.executable, "-c", POOL_PROCESS, request.param],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        guard = int(process.stdout.readline())
        stop = time.monotonic() + DEADLINE
        while not (tmp_path / "started").exists() or len(processes_using(tmp_path)) < PROCESSES:
            assert time.monotonic() < stop, processes_using(tmp_path)
            time.sleep(0.05)  # polling with a deadline
        yield process, guard
    finally:
        process.kill()
        process.wait()
        for line in processes_using(tmp_path):  # only when the guard failed
            os.kill(int(line.split()[0]), signal.SIGKILL)


@pytest.mark.parametrize(
    "stop", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "revoked with terminate"]
)
def test_what_a_pool_process_started_dies_with_it(
    pool_process: tuple[subprocess.Popen[str], int], tmp_path: Path, stop: signal.Signals
) -> None:
    process, guard = pool_process
    assert len(processes_using(tmp_path)) == PROCESSES
    process.send_signal(stop)
    assert process.wait() == -stop
    wait_until_unused(tmp_path, DEADLINE)
    wait_until_gone(guard, DEADLINE)


def test_a_pool_process_that_ends_normally_leaves_its_guard_no_work(tmp_path: Path) -> None:
    (tmp_path / "pipeline.sh").write_text("touch started\n")
    done = subprocess.run(
        [sys.executable, "-c", POOL_PROCESS, "step"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    wait_until_gone(int(done.stdout), DEADLINE)
    assert (tmp_path / "started").exists()
    assert "group_guard" not in done.stderr


@pytest.mark.parametrize(
    ("argument", "reason"),
    [
        ([], "expected two arguments"),
        (["x", "records"], "expected two arguments"),
        (["1", "records"], "process 1 is not this guard's parent"),
        (["{parent}", "records"], "does not lead its process group"),
    ],
    ids=["none", "not a pid", "not the parent", "not a group leader"],
)
def test_the_guard_refuses_anything_but_its_group_leading_parent(
    argument: list[str], reason: str
) -> None:
    # The guard's parent is a child of this test, in this test's group, which it does not lead.
    launcher = (
        "import os, subprocess, sys\n"
        "arguments = [a.format(parent=os.getpid()) for a in sys.argv[1:]]\n"
        "guard = [sys.executable, '-m', 'worker.group_guard', *arguments]\n"
        "sys.exit(subprocess.run(guard).returncode)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", launcher, *argument], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert reason in done.stderr
    assert "nothing done" in done.stderr
