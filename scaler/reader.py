"""The source, read in a child process, so that KEDA's calls never wait behind a read.

Reading a thousand models' metrics (the HTTP answers, parsing the text, building the states) is
pure-Python work of tens of milliseconds. Done on a thread of the process that serves gRPC, it
holds the interpreter while KEDA's calls wait for it: GetMetrics' p99 went from about 2 ms to
tens of milliseconds at 500 calls/s. In a child process it costs the server nothing: each read
sends back only the models whose state changed, and the parent applies them to its last mapping
(a read with no change returns that very mapping, which the refresh loop then skips).

The child owns the real source (`make_source`); its problems and failed targets come back with
the read, to be counted in the parent's metrics. A child that dies or does not answer in time is
replaced, and the read fails as any failed read does (the last good state stays).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from scaler.samples import Problem
from scaler.settings import ScalerSettings
from scaler.sources import ProblemSink, SourceError, log_problems, make_source
from scaler.state import ModelState

log = logging.getLogger(__name__)

READ, STOP = "read", "stop"
# A spawned child imports the scaler before its first read.
FIRST_READ_GRACE_SECONDS = 30.0


@dataclass
class Reply:
    """One read, as the child sends it: what changed since its last good read, or the error."""

    changed: dict[str, ModelState] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    failed_targets: list[str] = field(default_factory=list)
    error: str = ""


class ReaderProcess:
    """A `Source` whose reads run in a child process."""

    def __init__(
        self,
        settings: ScalerSettings,
        *,
        on_problems: ProblemSink | None = None,
        on_target_error: Callable[[str], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_problems = on_problems or log_problems
        self._on_target_error = on_target_error or (lambda target: None)
        # Each read may take every target's timeout, the targets being read in parallel.
        self._timeout = settings.effective_timeout_seconds + 5.0
        self._states: Mapping[str, ModelState] = {}
        self._start()

    def __call__(self) -> Mapping[str, ModelState]:
        reply = self._ask()
        for target in reply.failed_targets:
            self._on_target_error(target)
        if reply.problems:
            self._on_problems(reply.problems)
        if reply.error:
            raise SourceError(reply.error)
        if reply.changed or reply.removed:
            states = {**self._states, **reply.changed}
            for model in reply.removed:
                states.pop(model, None)
            self._states = states
        return self._states

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._connection.send(STOP)
        self._process.join(timeout=2)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._connection.close()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # grpc and threads do not survive a fork
        self._connection, theirs = context.Pipe()
        self._process: BaseProcess = context.Process(
            target=serve, args=(self._settings, theirs), name="scaler-reader", daemon=True
        )
        self._process.start()
        theirs.close()
        self._first = True
        # A new child starts from nothing: its first reply holds every model.
        self._states = {}

    def _ask(self) -> Reply:
        wait = self._timeout + (FIRST_READ_GRACE_SECONDS if self._first else 0.0)
        try:
            self._connection.send(READ)
            if self._connection.poll(wait):
                reply: Reply = self._connection.recv()
                self._first = False
                return reply
            problem = f"the reader process did not answer within {wait:g} s"
        except (OSError, EOFError) as error:
            problem = f"the reader process failed: {error or type(error).__name__}"
        log.error("%s; starting another", problem)
        self._process.kill()
        self._process.join()
        self._connection.close()
        self._start()
        raise SourceError(problem)


def serve(settings: ScalerSettings, connection: Connection) -> None:
    """The child: one read per request, answered with what changed since its last good read."""
    problems: list[Problem] = []
    failed: list[str] = []
    source = make_source(settings, on_problems=problems.extend, on_target_error=failed.append)
    last: Mapping[str, ModelState] = {}
    try:
        while connection.recv() == READ:
            problems.clear()
            failed.clear()
            try:
                states = source()
            except Exception as error:  # the parent fails the read, keeping its last good state
                reply = Reply(error=str(error) or type(error).__name__)
            else:
                reply = _difference(last, states)
                last = states
            reply.problems, reply.failed_targets = list(problems), list(failed)
            connection.send(reply)
    except (EOFError, OSError, KeyboardInterrupt):
        pass  # the parent went away or is stopping
    finally:
        source.close()


def _difference(old: Mapping[str, ModelState], new: Mapping[str, ModelState]) -> Reply:
    if new is old:
        return Reply()
    changed = {model: state for model, state in new.items() if old.get(model) != state}
    return Reply(changed=changed, removed=[model for model in old if model not in new])
