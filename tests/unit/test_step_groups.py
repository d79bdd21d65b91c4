"""The records of a process's kernel step groups: one folder per process, forks included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from worker import step_groups

FORKS = """
import os, sys
from worker import step_groups
parent = step_groups.root()
child = os.fork()
if child == 0:
    print(step_groups.root(), flush=True)
    sys.exit(0)  # a normal exit: the parent's exit handlers run in the child too
os.waitpid(child, 0)
print(parent, parent.is_dir(), flush=True)
"""


def test_a_forked_child_records_its_steps_apart_from_its_parent() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FORKS], capture_output=True, text=True, check=True, timeout=30
    )
    childs, parents = done.stdout.splitlines()
    assert childs != parents.split()[0]
    assert parents.split()[1] == "True", "the child's exit removed its parent's records"


def test_only_recorded_groups_that_still_run_are_killed(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "300"], process_group=0)
    try:
        (tmp_path / str(sleeper.pid)).touch()
        (tmp_path / "not-a-group").touch()
        (tmp_path / "999999999").touch()  # no such group
        assert step_groups.kill(tmp_path) == 1
        assert sleeper.wait(timeout=10) == -9
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_step_that_never_ran_a_script_kills_nothing() -> None:
    with step_groups.recorded() as environment:
        folder = Path(environment[step_groups.ENVIRONMENT])
        assert folder.parent == step_groups.root()
    assert not folder.exists()
    assert step_groups.kill_all() == 0
