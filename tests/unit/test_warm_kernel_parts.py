"""The small parts of the warm kernel: exit codes, the tools folder, the settings switch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker.kernel_tools import MONITOR, write_tools_dir
from worker.settings import WorkerSettings
from worker.zygote import TOOLS, _exit_code


@pytest.mark.parametrize(
    ("value", "code"),
    [(None, 0), (0, 0), (3, 3), (256 + 2, 2), (True, 1), ("a message", 1)],
    ids=["none", "zero", "int", "wraps-like-a-status", "true", "message"],
)
def test_exit_codes_are_those_python_gives_sys_exit(value: object, code: int) -> None:
    assert _exit_code(value) == code
    script = f"import sys; sys.exit({value!r})"
    assert subprocess.run([sys.executable, "-c", script], capture_output=True).returncode == code


def test_the_cold_tools_folder_holds_only_bash_and_the_monitors_wrapper(tmp_path: Path) -> None:
    folder = write_tools_dir(tmp_path / "bin", stand_ins=False)
    assert sorted(p.name for p in folder.iterdir()) == sorted(["bash", MONITOR])
    assert os.access(folder / MONITOR, os.X_OK)
    assert os.access(folder / "bash", os.X_OK)
    assert (folder / "bash").read_text().startswith(f"#!{sys.executable} -IS\n")


def test_the_warm_tools_folder_has_a_stand_in_per_tool(tmp_path: Path) -> None:
    folder = write_tools_dir(tmp_path / "bin", stand_ins=True)
    assert sorted(p.name for p in folder.iterdir()) == sorted(["bash", MONITOR, *TOOLS])
    for tool in TOOLS:
        assert os.access(folder / tool, os.X_OK)
        assert (folder / tool).read_text().startswith(f"#!{sys.executable} -IS\n")


def test_the_tools_folders_bash_runs_the_real_one_in_a_group_of_its_own(tmp_path: Path) -> None:
    """It is first on PATH, so it must pass over itself to find bash, and leave `$0` and the
    arguments as they were."""
    folder = write_tools_dir(tmp_path / "bin", stand_ins=False)
    path = os.pathsep.join((str(folder), os.environ["PATH"]))
    done = subprocess.run(
        ["bash", "-c", 'echo "$0 $1 $(ps -o pgid= -p $$)"; echo "$$"', "zero", "one"],
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    first, pid = done.stdout.splitlines()
    zero, one, group = first.split()
    assert (zero, one, group) == ("zero", "one", pid)


def test_a_stand_in_without_its_warm_process_fails_clearly(tmp_path: Path) -> None:
    folder = write_tools_dir(tmp_path / "bin", stand_ins=True)
    result = subprocess.run([str(folder / "evepy"), "1", "1"], capture_output=True, text=True)
    assert result.returncode == 126
    assert "the warm kernel process" in result.stderr and "is not there" in result.stderr


@pytest.mark.parametrize(
    ("environment", "warm"),
    [({}, True), ({"OASIS_AUTOSCALER_WARM_KERNEL": "false"}, False)],
    ids=["on-by-default", "turned-off"],
)
def test_the_warm_kernel_setting(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], warm: bool
) -> None:
    monkeypatch.delenv("OASIS_AUTOSCALER_WARM_KERNEL", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert WorkerSettings().warm_kernel is warm


def test_the_numba_cache_defaults_to_the_users_cache_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("OASIS_AUTOSCALER_NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    settings = WorkerSettings(data_dir=tmp_path / "data")
    assert settings.effective_numba_cache_dir == tmp_path / "oasis-autoscaler" / "numba"
