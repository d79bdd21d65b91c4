"""The warm kernel process: the Oasis tools imported and their compiled code loaded once, a fork
per tool run.

A chunk's `run_analysis.sh` starts evepy, gulmc, summarypy, eltpy, pltpy (and fmpy, katpy,
aalpy, lecpy, ...), each a fresh Python that spends seconds importing numba, pandas and pyarrow
and loading its numba cache, for well under a second of work. This process pays that once: it
imports every tool's command-line module, loads every compiled function numba's cache holds for
this CPU, then listens on a Unix socket. The stand-ins (`worker.stand_in`) that the script finds
first on PATH under the tools' names send it their argv, working folder, environment and
standard streams (the descriptors themselves, SCM_RIGHTS); for each it forks a child that runs
the tool's own `main` with them, exactly as the console script would, and sends the exit status
back. oasislmf still writes and runs its own script; only the start of each tool changes.

Lifetimes, so that nothing outlives the work it belongs to:
- this process gets SIGKILL when its owner (the worker's pool process) exits (PDEATHSIG, and
  it checks the owner is still its parent once that is set);
- a child gets SIGKILL when this process exits (PDEATHSIG), and when its stand-in goes (the
  stand-in's connection closes before the child has exited: the chunk's script group was killed,
  by a revoke, a failed run's cleanup or the worker's guard).

Fork safety: the parent stays single-threaded (libraries that start native threads at import,
OpenBLAS and pyarrow's jemalloc, are told not to, before anything is imported); a child starts
with fresh standard stream objects on descriptors 0-2, the signal dispositions of a new Python,
and leaves by `os._exit`, so nothing of the parent's state is flushed or run twice.

Run as `python -m worker.zygote --socket PATH --owner PID`; prints one line, `ready`, once it
accepts tool runs.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import gc
import importlib
import os
import pkgutil
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from worker.stand_in import HEADER  # the messages' frame: the stand-in's side states it

# Before any import that may load them: these libraries start worker threads at import or
# first use otherwise, and a fork copies only the forking thread (locks held by the others
# stay held forever in the child).
THREAD_ENVIRONMENT: Final = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    # pyarrow's default pool (jemalloc) runs background threads; the system allocator does not.
    "ARROW_DEFAULT_MEMORY_POOL": "system",
    # pyarrow starts jemalloc's background thread at import even when its pool is not used.
    "JE_ARROW_MALLOC_CONF": "background_thread:false",
}
# The tools served warm: console script name -> "module:function" (oasislmf 2.5's entry points).
TOOLS: Final = {
    "evepy": "oasislmf.pytools.eve.cli:main",
    "gulmc": "oasislmf.pytools.gulmc.cli:main",
    "gulpy": "oasislmf.pytools.gulpy:main",
    "modelpy": "oasislmf.pytools.modelpy:main",
    "fmpy": "oasislmf.pytools.fm.cli:main",
    "summarypy": "oasislmf.pytools.summary.cli:main",
    "eltpy": "oasislmf.pytools.elt.cli:main",
    "pltpy": "oasislmf.pytools.plt.cli:main",
    "katpy": "oasislmf.pytools.kat.cli:main",
    "aalpy": "oasislmf.pytools.aal.cli:main",
    "lecpy": "oasislmf.pytools.lec.cli:main",
    "plapy": "oasislmf.pytools.pla.cli:main",
    "join-summary-info": "oasislmf.pytools.join_summary_info.cli:main",
}
READY: Final = b"ready\n"
MAX_REQUEST: Final = 16 * 1024 * 1024
REQUEST_TIMEOUT_SECONDS: Final = 10.0
PR_SET_PDEATHSIG: Final = 1


@dataclass
class Run:
    """One tool run: the stand-in's connection and the child running the tool."""

    connection: socket.socket
    tool: str
    pid: int


@dataclass
class Zygote:
    listener: socket.socket
    selector: selectors.BaseSelector
    wakeup: tuple[int, int]
    entries: dict[str, Callable[[], Any]]
    runs: dict[int, Run] = field(default_factory=dict)  # by child pid

    def serve(self) -> None:
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wakeup[0], selectors.EVENT_READ, "children")
        while True:
            for key, _ in self.selector.select():
                if key.data == "accept":
                    self._accept()
                elif key.data == "children":
                    _drain(self.wakeup[0])
                    self._reap()
                else:
                    self._stand_in_gone(key.data)

    def _accept(self) -> None:
        try:
            connection, _ = self.listener.accept()
        except BlockingIOError:
            return
        try:
            request, fds = _receive(connection)
        except (OSError, ValueError) as exc:
            print(f"zygote: refused a request: {exc}", file=sys.stderr)
            connection.close()
            return
        try:
            tool = os.path.basename(str(request["argv"][0]))
            entry = self.entries.get(tool)
            if entry is None:
                _reply(connection, "error", f"{tool} is not a tool the warm kernel runs")
                connection.close()
                return
            try:
                pid = os.fork()
            except OSError as exc:  # out of processes or memory: this run fails, not the rest
                _reply(connection, "error", f"cannot start {tool}: {exc}")
                connection.close()
                return
            if pid == 0:
                self._child(entry, request, fds, connection)  # never returns
        finally:
            for descriptor in fds:
                os.close(descriptor)  # the child has its copies; the stand-in keeps the others
        connection.setblocking(False)
        self.runs[pid] = Run(connection, tool, pid)
        self.selector.register(connection, selectors.EVENT_READ, pid)

    def _child(
        self,
        entry: Callable[[], Any],
        request: dict[str, Any],
        fds: list[int],
        connection: socket.socket,
    ) -> None:
        code = 1
        try:
            _die_with_parent()
            signal.set_wakeup_fd(-1)
            for number, handler in _FRESH_SIGNALS.items():
                signal.signal(number, handler)
            self.selector.close()
            self.listener.close()
            for run in self.runs.values():
                run.connection.close()
            connection.close()
            os.close(self.wakeup[0])
            os.close(self.wakeup[1])
            for target, descriptor in enumerate(fds):
                os.dup2(descriptor, target)
            for descriptor in fds:
                if descriptor > 2:
                    os.close(descriptor)
            code = _run_tool(entry, request)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            run = self.runs.pop(pid, None)
            if run is None:
                continue
            self.selector.unregister(run.connection)
            if os.WIFSIGNALED(status):
                kind, value = "signal", os.WTERMSIG(status)
            else:
                kind, value = "exit", os.waitstatus_to_exitcode(status)
            try:
                run.connection.setblocking(True)
                _reply(run.connection, kind, str(value))
            except OSError:
                pass  # the stand-in has gone; its script has no use for the status
            run.connection.close()

    def _stand_in_gone(self, pid: int) -> None:
        """The stand-in's connection is readable: it sends nothing after its request, so it
        closed (the stand-in died): the tool run belongs to nobody now and is killed."""
        run = self.runs.get(pid)
        if run is None:
            return
        try:
            data = run.connection.recv(1)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return  # a stand-in that talks out of turn is ignored
        del self.runs[pid]  # reaped by _reap, which has nobody to answer any more
        self.selector.unregister(run.connection)
        run.connection.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


_FRESH_SIGNALS: dict[int, Any] = {
    signal.SIGCHLD: signal.SIG_DFL,
    signal.SIGINT: signal.default_int_handler,
    signal.SIGTERM: signal.SIG_DFL,
    signal.SIGHUP: signal.SIG_DFL,
    signal.SIGPIPE: signal.SIG_IGN,  # as Python sets it at start
}


def _run_tool(entry: Callable[[], Any], request: dict[str, Any]) -> int:
    """Run a tool's `main` as its console script would, in this (forked) process."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # Fresh stream objects on the descriptors the stand-in sent, as a new Python makes them.
    streams = {
        "stdin": open(0, closefd=False),  # noqa: SIM115
        "stdout": open(1, "w", closefd=False),  # noqa: SIM115
        "stderr": open(2, "w", errors="backslashreplace", closefd=False),  # noqa: SIM115
    }
    for name, stream in streams.items():
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)
    sys.argv = [str(a) for a in request["argv"]]
    # A parser made at import took this process's name for its messages: the tool's, as cold.
    for value in vars(sys.modules[entry.__module__]).values():
        if isinstance(value, argparse.ArgumentParser):
            value.prog = os.path.basename(sys.argv[0])
    try:
        code = _exit_code(entry())
    except SystemExit as exit_:
        code = _exit_code(exit_.code)
    except BaseException:
        traceback.print_exc()
        code = 1
    # As at a Python's exit: what the tool registered runs (logging's flush, for one).
    atexit._run_exitfuncs()
    for output in (sys.stdout, sys.stderr):
        try:
            output.flush()
        except (BrokenPipeError, ValueError):
            code = code or 120  # what Python reports when it cannot flush at exit
    return code


def _exit_code(value: object) -> int:
    """The exit status Python gives `sys.exit(value)`."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def _receive(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """A stand-in's request (`worker.stand_in` writes it), its stdin/stdout/stderr attached:
    `argv`, `cwd` and `env` as a fresh Python would decode them."""
    connection.settimeout(REQUEST_TIMEOUT_SECONDS)
    data, fds, _, _ = socket.recv_fds(connection, 65536, 3)
    if len(fds) != 3:
        for descriptor in fds:
            os.close(descriptor)
        raise ValueError(f"expected 3 descriptors, got {len(fds)}")
    try:
        while len(data) < HEADER.size:
            data += _more(connection)
        (length,) = HEADER.unpack_from(data)
        if length > MAX_REQUEST:
            raise ValueError(f"a request of {length} bytes")
        while len(data) < HEADER.size + length:
            data += _more(connection)
        request = parse_request(data[HEADER.size : HEADER.size + length])
    except BaseException:
        for descriptor in fds:
            os.close(descriptor)
        raise
    return request, list(fds)


def parse_request(body: bytes) -> dict[str, Any]:
    """`<count>\\0<arguments>\\0<folder>\\0<NAME=value>...`, every field as the system gave
    it; raises ValueError for anything else."""
    fields = body.split(b"\0")
    if not fields[0].isdigit() or not 0 < int(fields[0]) <= len(fields) - 2:
        raise ValueError("a request without its arguments and folder")
    count = int(fields[0])
    variables = [field.partition(b"=") for field in fields[count + 2 :] if field]
    if any(not separator for _, separator, _ in variables):
        raise ValueError("a request with a variable that is not NAME=value")
    return {
        "argv": [os.fsdecode(argument) for argument in fields[1 : count + 1]],
        "cwd": os.fsdecode(fields[count + 1]),
        "env": {os.fsdecode(name): os.fsdecode(value) for name, _, value in variables},
    }


def _more(connection: socket.socket) -> bytes:
    chunk = connection.recv(65536)
    if not chunk:
        raise ValueError("the stand-in closed its connection mid-request")
    return chunk


def _reply(connection: socket.socket, kind: str, value: str) -> None:
    """`exit <status>`, `signal <number>` or `error <message>` (`worker.stand_in` reads it)."""
    body = f"{kind} {value}".encode()
    connection.sendall(HEADER.pack(len(body)) + body)


def _drain(descriptor: int) -> None:
    try:
        while os.read(descriptor, 4096):
            pass
    except BlockingIOError:
        pass


def _die_with_parent(expected_parent: int | None = None) -> None:
    """SIGKILL this process when its parent exits; if the parent exited already, exit now."""
    parent = os.getppid() if expected_parent is None else expected_parent
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)


# --- warming ----------------------------------------------------------------------------------


def load_tools() -> dict[str, Callable[[], Any]]:
    """Import every tool's entry point, and every module of the pytools package (tools import
    some lazily, inside functions, which each run would otherwise pay for)."""
    entries = {}
    for name, target in TOOLS.items():
        module, _, function = target.partition(":")
        entries[name] = getattr(importlib.import_module(module), function)
    import oasislmf.pytools as pytools  # type: ignore[import-untyped]

    for found in pkgutil.walk_packages(pytools.__path__, "oasislmf.pytools."):
        try:
            importlib.import_module(found.name)
        except Exception as exc:  # noqa: BLE001 - a module that cannot load is simply not warm
            print(f"zygote: not preloaded: {found.name} ({exc})", file=sys.stderr)
    return entries


def load_compiled() -> tuple[int, int]:
    """Load every compiled function numba's cache holds for this CPU into this process.

    A numba function is compiled (or loaded from the cache) at its first call with given argument
    types; a forked child would pay for that on every run. The cache's index names the argument
    types of every compilation saved, for which CPU: compiling those signatures here loads them
    from the cache, without compiling. Returns (loaded, failed)."""
    from numba.core.dispatcher import Dispatcher

    loaded = failed = 0
    seen: set[int] = set()
    for name, module in list(sys.modules.items()):
        if not name.startswith("oasislmf.") or module is None:
            continue
        for value in list(vars(module).values()):
            if not isinstance(value, Dispatcher) or id(value) in seen:
                continue
            seen.add(id(value))
            for signature in _cached_signatures(value):
                try:
                    value.compile(signature)
                    loaded += 1
                except Exception:  # noqa: BLE001 - left for a child to compile, as cold
                    failed += 1
    return loaded, failed


def _cached_signatures(dispatcher: Any) -> list[Any]:
    cache = getattr(dispatcher, "_cache", None)
    index_file = getattr(cache, "_cache_file", None)
    if index_file is None:
        return []
    magic = dispatcher.targetctx.codegen().magic_tuple()
    try:
        index = index_file._load_index()
    except Exception:  # noqa: BLE001 - an unreadable index is a cold function
        return []
    return [key[0] for key in index if key[1] == magic and key[0] not in dispatcher.overloads]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.zygote")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--owner", type=int, required=True)
    args = parser.parse_args(argv)
    _die_with_parent(args.owner)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the worker to handle
    started = time.monotonic()
    entries = load_tools()
    loaded, failed = load_compiled()
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1
    if threads != 1:
        print(f"zygote: {threads} threads after warming: forking is unsafe", file=sys.stderr)
        return 1
    # What warming made is kept for good: the collector no longer walks it, here or in a forked
    # child, whose walks would write to (and so copy) every page of the warm heap it shares.
    gc.collect()
    gc.freeze()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(args.socket)
    listener.listen(64)
    listener.setblocking(False)
    wakeup = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wakeup[1], warn_on_full_buffer=False)
    zygote = Zygote(listener, selectors.DefaultSelector(), wakeup, entries)
    print(
        f"zygote: {len(entries)} tools warm, {loaded} compiled functions loaded"
        f" ({failed} not) in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
    with open(1, "wb", closefd=False) as out:
        out.write(READY)
    zygote.serve()
    return 0


if __name__ == "__main__":
    for _name, _value in THREAD_ENVIRONMENT.items():
        os.environ.setdefault(_name, _value)
    sys.exit(main())
