"""`bash` for a kernel step's script: the script leads a process group of its own.

oasislmf runs each step's script as `bash <file>`, found on PATH, in its caller's process group.
When the script fails, its cleanup SIGKILLs every process of its group whose pid is not below
the script's own. Pids wrap (at 32,768 on many systems), so a process of the caller's group that
started earlier can hold a higher pid: the worker's pool process itself, or, where a step runs
in a test or a benchmark, the test runner and every server in its group. Installed as `bash`
first on PATH in the step's tools folder (`worker.kernel_tools`), this script moves itself into
a process group of its own (in the same session, so whatever ends the caller's session still
ends it), records the group's id where the step's owner finds it (`worker.step_groups`), and
becomes the real bash with the same arguments.

It runs as `python -I -S` (no site packages): standard library only, so it starts in
milliseconds.
"""

import os
import sys

# The folder this step's groups are recorded in (`worker.step_groups.ENVIRONMENT`).
RECORDS = "OASIS_STEP_GROUPS"


def real_bash() -> str:
    """The first `bash` on PATH that is not this script."""
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(folder, "bash")
        if folder and os.path.abspath(folder) != here and os.access(candidate, os.X_OK):
            return candidate
    return "/bin/bash"


def lead_own_group() -> None:
    try:
        os.setpgid(0, 0)
    except OSError as error:  # a session leader cannot move: its group is its own already
        print(f"bash (kernel step): process group unchanged: {error}", file=sys.stderr)
        return
    records = os.environ.get(RECORDS)
    if records:
        try:
            with open(os.path.join(records, str(os.getpid())), "x"):
                pass
        except OSError as error:  # the step ended meanwhile, or its folder is gone
            print(f"bash (kernel step): group not recorded: {error}", file=sys.stderr)


def main() -> None:
    lead_own_group()
    bash = real_bash()
    os.execv(bash, [bash, *sys.argv[1:]])


if __name__ == "__main__":
    main()
