"""The folder the kernel's script finds first on PATH: `bash` that gives the script a process group
of its own, the exec monitor's wrapper, and with the warm kernel, the tools' stand-ins.

- `bash` (`worker.step_shell`, started as `python -I -S`): oasislmf starts each step's script as
  `bash <file>` in its caller's process group, and a failed script's cleanup kills processes of
  that group; in a group of its own, the script's cleanup reaches only what the script started.

- `oasis_exec_monitor.sh`: oasislmf's script starts this monitor in the background with the
  script's own stdout, and kills it on exit; but the monitor's `sleep 2` still holds that stdout,
  a pipe the worker reads to its end, so every kernel step waited up to 2 s more. The wrapper runs
  the real monitor unchanged with its output in the run's log folder instead
  (`<log>/exec_monitor.log`), where the kernel's other logs are.
- With the warm kernel, one stand-in per tool (`worker.stand_in`), started as `python -I -S`.
"""

from __future__ import annotations

import shlex
import sys
import sysconfig
from pathlib import Path
from typing import Final

from worker.zygote import TOOLS

MONITOR: Final = "oasis_exec_monitor.sh"
MONITOR_LOG: Final = "exec_monitor.log"
STAND_IN_SOURCE: Final = Path(__file__).with_name("stand_in.py")
STEP_SHELL_SOURCE: Final = Path(__file__).with_name("step_shell.py")


def write_tools_dir(folder: Path, *, stand_ins: bool) -> Path:
    """Fill `folder` (created if missing) with `bash`, the monitor's wrapper, and the stand-ins
    when `stand_ins`; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    _executable(folder / "bash", _python_script(STEP_SHELL_SOURCE))
    monitor = Path(sysconfig.get_path("scripts")) / MONITOR
    if monitor.is_file():
        _executable(
            folder / MONITOR,
            "#!/bin/bash\n"
            "# oasislmf's monitor, its output in the log folder (its second argument), so that\n"
            "# its `sleep` does not hold the script's stdout open after the script is done.\n"
            f'exec {shlex.quote(str(monitor))} "$@" >> "$2/{MONITOR_LOG}"\n',
        )
    if stand_ins:
        source = _python_script(STAND_IN_SOURCE)
        for tool in TOOLS:
            _executable(folder / tool, source)
    return folder


def _python_script(source: Path) -> str:
    return f"#!{sys.executable} -IS\n" + source.read_text()


def _executable(path: Path, text: str) -> None:
    # Written aside and renamed: a script running the folder's tools never sees half a file.
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.chmod(0o755)
    partial.replace(path)
