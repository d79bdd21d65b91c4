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


def test_the_cold_tools_folder_holds_only_the_monitors_wrapper(tmp_path: Path) -> None:
    folder = write_tools_dir(tmp_path / "bin", stand_ins=False)
    assert sorted(p.name for p in folder.iterdir()) == [MONITOR]
    assert os.access(folder / MONITOR, os.X_OK)


def test_the_warm_tools_folder_has_a_stand_in_per_tool(tmp_path: Path) -> None:
    folder = write_tools_dir(tmp_path / "bin", stand_ins=True)
    assert sorted(p.name for p in folder.iterdir()) == sorted([MONITOR, *TOOLS])
    for tool in TOOLS:
        assert os.access(folder / tool, os.X_OK)
        assert (folder / tool).read_text().startswith(f"#!{sys.executable} -IS\n")


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
