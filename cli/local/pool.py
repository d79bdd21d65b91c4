"""Each model's worker processes, grown and shrunk to a replica count as a ReplicaSet would.

Shrinking picks its victims as Kubernetes does with our workers' pod-deletion-cost: a worker
that has not registered yet (a pod not ready) first, then idle ones, busy ones last, the newest
first within each. A victim gets SIGTERM, Celery's warm shutdown: it takes no new message and
finishes the chunk it runs; one still running after the grace is killed (its chunk is delivered
again, as the no-loss design says). A stopping worker no longer counts as a replica, as a
terminating pod does not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from cli.local.supervisor import Child, Supervisor
from worker.presence import WorkerPresence

log = logging.getLogger(__name__)

# Victim order: not registered, idle, busy.
UNREGISTERED, IDLE, BUSY = 0, 1, 2


@dataclass(frozen=True)
class PoolCounts:
    running: int = 0
    busy: int = 0
    stopping: int = 0


@dataclass
class WorkerPool:
    supervisor: Supervisor
    # queue -> the argv of one worker of it, with the environment it needs.
    command: Callable[[str], tuple[list[str], dict[str, str]]]
    # queue -> the live workers' records (worker.presence.live_workers over the broker).
    presence: Callable[[str], Sequence[WorkerPresence]]
    grace_seconds: float
    _workers: dict[str, list[Child]] = field(default_factory=dict)
    _started: int = 0

    def scale(self, queue: str, replicas: int) -> None:
        """Start or stop workers of `queue` until `replicas` of them run."""
        self.supervisor.reap(self.grace_seconds)
        running = self._running(queue)
        for _ in range(replicas - len(running)):
            self._start(queue)
        excess = len(running) - replicas
        if excess > 0:
            for child in self._victims(queue, running)[:excess]:
                log.info("stopping %s (warm shutdown)", child.name)
                self.supervisor.terminate(child)

    def counts(self, queue: str) -> PoolCounts:
        children = [c for c in self._workers.get(queue, []) if c in self.supervisor.children]
        running = [c for c in children if c.stopping_since is None]
        pids = {c.process.pid for c in running}
        busy = sum(1 for w in self._safe_presence(queue) if w.busy and w.pid in pids)
        return PoolCounts(len(running), busy, len(children) - len(running))

    def queues(self) -> list[str]:
        return sorted(self._workers)

    def _running(self, queue: str) -> list[Child]:
        children = [c for c in self._workers.get(queue, []) if c in self.supervisor.children]
        self._workers[queue] = children
        return [c for c in children if c.stopping_since is None]

    def _start(self, queue: str) -> None:
        argv, env = self.command(queue)
        self._started += 1
        child = self.supervisor.start(f"worker-{queue}-{self._started}", argv, env)
        self._workers.setdefault(queue, []).append(child)

    def _victims(self, queue: str, running: list[Child]) -> list[Child]:
        state = {w.pid: BUSY if w.busy else IDLE for w in self._safe_presence(queue)}
        order = list(reversed(running))  # newest first within a rank (a stable sort keeps it)
        return sorted(order, key=lambda c: state.get(c.process.pid, UNREGISTERED))

    def _safe_presence(self, queue: str) -> Sequence[WorkerPresence]:
        try:
            return self.presence(queue)
        except (RedisError, OSError) as error:  # no broker: every worker ranks alike
            log.warning("cannot read the workers' presence: %s", error)
            return []
