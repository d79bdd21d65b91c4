"""A kernel step's script leads a process group of its own: a failed script's cleanup, which
kills processes of its group, cannot reach its caller, and nothing the script leaves behind
outlives the step.

oasislmf's failed script SIGKILLs every process of its group whose pid is not below its own;
pids wrap, so without a group of its own that reached the worker's pool process, or the test
runner where a test ran a step. The scripts here kill their whole group, which is more than
that cleanup ever does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import alive, wait_until_gone
from worker.kernel import kernel_environment

pytestmark = pytest.mark.integration

DEADLINE = 10.0
CALLER = """\
import os, subprocess, sys
from tests.support.processes import alive, wait_until_gone
from worker.kernel import kernel_environment
with kernel_environment(None, None):
    done = subprocess.run(["bash", "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True)
print(os.getpgid(0), done.stdout.strip(), done.returncode, flush=True)
"""
KILL_OWN_GROUP = 'echo "$(ps -o pgid= -p $$)"; kill -9 -- -"$(ps -o pgid= -p $$ | tr -d " ")"'


def test_a_failed_scripts_cleanup_cannot_reach_its_caller() -> None:
    # The caller leads a session of its own, so that a regression kills it and not this test.
    done = subprocess.run(
        [sys.executable, "-c", CALLER, KILL_OWN_GROUP],
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
    )
    assert done.returncode == 0, f"the caller was killed ({done.returncode}): {done.stderr}"
    caller_group, script_group, status = done.stdout.split()
    assert script_group != caller_group
    assert int(status) == -9  # the script did kill its own group


def test_what_a_step_leaves_running_is_killed_when_it_ends() -> None:
    with kernel_environment(None, None):
        done = subprocess.run(
            ["bash", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
        orphan = int(done.stdout)
        assert alive(orphan), "the script's background process ended before the step did"
        assert os.getpgid(orphan) != os.getpgid(0)
    wait_until_gone(orphan, DEADLINE)


def test_a_script_outside_a_step_runs_in_its_callers_group(tmp_path: Path) -> None:
    """Only the kernel's environment puts `bash` in a group of its own."""
    done = subprocess.run(
        ["bash", "-c", "ps -o pgid= -p $$"], stdout=subprocess.PIPE, text=True, check=True
    )
    assert int(done.stdout) == os.getpgid(0)
