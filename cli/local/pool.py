"""Each model's worker processes, grown and shrunk to a replica count as a ReplicaSet would.

Shrinking picks its victims as Kubernetes does with our workers' pod-deletion-cost: a worker
that has not registered yet (a pod not ready) first, then idle ones, busy ones last, the newest
first within each. A victim gets SIGTERM, Celery's warm shutdown: it takes no new message and
finishes the chunk it runs; one still running after the grace is killed (its chunk is delivered
again, as the no-loss design says). A stopping worker no longer counts as a replica, as a
terminating pod does not.

`limit` is the machine's budget (`cli.local.machine`): workers of every queue together, a
stopping one included until it has gone (as the fleet budget counts pods). Replicas beyond it are
not started, and counted as such for the view: the scaler shares the same budget out by its
rules, so only floors (`worker_count_min`) that add up to more than the budget meet it.
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
    not_started: int = 0
    # Running, but taking nothing yet: not registered (Celery still starting) or registered and
    # warming its pool processes (worker/warm_gate.py).
    warming: int = 0


@dataclass
class WorkerPool:
    supervisor: Supervisor
    # queue -> the argv of one worker of it, with the environment it needs.
    command: Callable[[str], tuple[list[str], dict[str, str]]]
    # queue -> the live workers' records (worker.presence.live_workers over the broker).
    presence: Callable[[str], Sequence[WorkerPresence]]
    grace_seconds: float
    limit: int | None = None
    _workers: dict[str, list[Child]] = field(default_factory=dict)
    _started: int = 0
    _not_started: dict[str, int] = field(default_factory=dict)

    def scale(self, queue: str, replicas: int) -> None:
        """Start or stop workers of `queue` until `replicas` of them run (as far as the budget
        lets: the rest are counted as not started)."""
        if replicas == 0 and not self._workers.get(queue) and not self._not_started.get(queue):
            return  # an idle model with no worker, as most of a thousand are: nothing to do
        self.supervisor.reap(self.grace_seconds)
        running = self._running(queue)
        missing = max(0, replicas - len(running))
        starting = min(missing, self.room()) if self.limit is not None else missing
        for _ in range(starting):
            self._start(queue)
        self._not_started[queue] = missing - starting
        excess = len(running) - replicas
        if excess > 0:
            for child in self._victims(queue, running)[:excess]:
                log.info("stopping %s (warm shutdown)", child.name)
                self.supervisor.terminate(child)

    def counts(self, queue: str) -> PoolCounts:
        if not self._workers.get(queue):
            return PoolCounts(not_started=self._not_started.get(queue, 0))
        children = [c for c in self._workers.get(queue, []) if c in self.supervisor.children]
        running = [c for c in children if c.stopping_since is None]
        pids = {c.process.pid for c in running}
        busy, warming = self._activity(queue, pids)
        return PoolCounts(
            running=len(running),
            busy=busy,
            stopping=len(children) - len(running),
            not_started=self._not_started.get(queue, 0),
            warming=warming,
        )

    def _activity(self, queue: str, pids: set[int]) -> tuple[int, int]:
        """Of the running workers `pids`: how many are busy, and how many take nothing yet (not
        registered, or warming). Both 0 when the broker cannot say."""
        # Asked only of a queue with workers: with a thousand idle models, a thousand reads of
        # Redis every tick would be the stack's heaviest work.
        presence = self._safe_presence(queue) if pids else None
        if presence is None:
            return 0, 0
        records = [w for w in presence if w.pid in pids]
        unregistered = len(pids - {w.pid for w in records})
        return sum(w.busy for w in records), unregistered + sum(w.warming for w in records)

    def room(self) -> int:
        """Workers the budget still has room for (every queue's, stopping ones included)."""
        if self.limit is None:
            return 2**31 - 1
        return max(0, self.limit - self.present())

    def present(self) -> int:
        """Workers of every queue that have not gone yet, stopping ones included."""
        children = set(map(id, self.supervisor.children))
        return sum(1 for kids in self._workers.values() for c in kids if id(c) in children)

    def not_started(self) -> int:
        return sum(self._not_started.values())

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
        # No broker: every worker ranks alike.
        state = {w.pid: BUSY if w.busy else IDLE for w in self._safe_presence(queue) or ()}
        order = list(reversed(running))  # newest first within a rank (a stable sort keeps it)
        return sorted(order, key=lambda c: state.get(c.process.pid, UNREGISTERED))

    def _safe_presence(self, queue: str) -> Sequence[WorkerPresence] | None:
        """The workers' records; None when the broker cannot be read."""
        try:
            return self.presence(queue)
        except (RedisError, OSError) as error:
            log.warning("cannot read the workers' presence: %s", error)
            return None
