"""The discrete-event core: analyses arrive, their sub-tasks queue on their model's queue, pods
start, take one sub-task at a time and go; a scaling policy sets each model's replica count.

What it models (docs/simulate.md):
- A stage records all its sub-tasks when it starts (worker/stages.py), queues its split, then
  its chunks once the split is done, then its join once every chunk is done. A split or join
  of 0 seconds takes no worker (it is counted, and done at once).
- A model's queue is first in, first out; a pod runs up to its model's `slots_per_worker`
  sub-tasks at once (the worker's concurrency), and the slot free the longest takes the next
  sub-task (Redis serves the client blocked the longest first).
- A replica added becomes a worker after the pod start-up time. A replica removed takes a
  starting pod first; then the policy decides: idle pods first and busy ones finish their
  sub-task (ours: pod-deletion-cost), or the newest pods whatever they do, a busy one killed
  after a grace period and its sub-task delivered again (upstream).
- Cost is worker-seconds: each pod from its creation to its exit, start-up included.

Pure: time is simulated, nothing waits, nothing is read or written.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cli.simulate.trace import ModelSpec, Trace
from cli.simulate.workload import AFTER, BEFORE, UPSTREAM_SERIAL, AnalysisWork, analyses_of
from scaler.budget import MIN_PRIORITY

SPLIT, CHUNK, JOIN = 0, 1, 2
# With no sub-task done and no arrival for this long, the rest can never run (a model that
# gets no worker, as FIXED_WORKERS 0): the simulation stops and says how many analyses ended.
STALL_SECONDS = 6 * 3600.0
# A pod created this soon after one of its model was removed counts as churn (flapping).
CHURN_SECONDS = 60.0
_ARRIVE, _READY, _DONE, _CALL = 0, 1, 2, 3


class Policy(Protocol):
    """Sets each model's replicas; the engine tells it when a model's work changes."""

    name: str
    # Scale-down takes idle pods first and lets busy ones finish (else: newest pods first).
    idle_first: bool
    # Seconds a busy pod removed gets to finish its sub-task; None: as long as it takes.
    termination_grace: float | None

    def attach(self, sim: Simulation) -> None: ...

    def work_changed(self, model: ModelRun, now: float, woke: bool) -> None:
        """`model`'s counts changed at `now`; `woke`: it had no analysis before."""
        ...


@dataclass(slots=True, eq=False)
class Run:
    """One analysis on its way through its stages."""

    work: AnalysisWork
    stage: int = 0
    chunks_left: int = 0
    # Sub-tasks recorded for it so far, completed ones included: ours (worker.stages) and the
    # upstream platform's.
    recorded: int = 0
    upstream_recorded: int = 0
    # Chunks of its stage not taken by a worker yet; when its input stage's last chunk ended,
    # until its loss chunks are queued.
    untaken: int = 0
    chunks_ended: float | None = None


@dataclass(slots=True, eq=False)
class Task:
    run: Run
    kind: int
    seconds: float
    queued: float
    started: float = 0.0


@dataclass(slots=True, eq=False)
class Pod:
    created: float
    tasks: list[Task] = field(default_factory=list)
    # Asked to go: it takes nothing more and exits when its sub-tasks end (or when its grace
    # runs out).
    leaving: bool = False
    gone: bool = False


@dataclass(slots=True, eq=False)
class ModelRun:
    """One model's live state and what has been measured of it."""

    index: int
    name: str
    spec: ModelSpec
    queue: deque[Task] = field(default_factory=deque)
    starting: list[Pod] = field(default_factory=list)
    # Pods up and taking sub-tasks (or finishing theirs before they go).
    ready: list[Pod] = field(default_factory=list)
    # One entry per free slot, the longest free first; entries of pods gone or leaving are
    # skipped when met.
    free: deque[Pod] = field(default_factory=deque)
    running: int = 0
    leaving_busy: int = 0
    # The scaling inputs: active analyses, recorded sub-tasks not finished (pending), recorded
    # sub-tasks of the active analyses with finished ones included (ours and upstream's), and
    # the active analyses by priority.
    analyses: int = 0
    pending: int = 0
    recorded: int = 0
    upstream_tasks: int = 0
    by_priority: list[int] = field(default_factory=lambda: [0] * 11)
    # Chunks recorded and not queued yet (their split runs); chunks of input stages with none
    # left to take (the last ones run, then the join); seconds from an input stage's last chunk
    # ending to the loss chunks being queued, in the latest analysis to have both.
    unqueued_chunks: int = 0
    joining_chunks: int = 0
    stage_gap: float | None = None
    # Measures.
    total_analyses: int = 0
    first_arrival: float = math.inf
    last_done: float = 0.0
    waits: int = 0
    wait_sum: float = 0.0
    wait_max: float = 0.0
    worker_seconds: float = 0.0
    lost_seconds: float = 0.0
    peak: int = 0
    # Pods created within CHURN_SECONDS of a pod of the model being removed: flapping.
    churn: int = 0
    last_removal: float = -math.inf
    timeline: list[tuple[float, int, int]] = field(default_factory=list)

    @property
    def pods(self) -> int:
        """Live pods: starting, working, idle, and busy ones leaving after their sub-tasks."""
        return len(self.starting) + len(self.ready)

    @property
    def staying(self) -> int:
        """Pods not asked to go: what the replica count is compared with."""
        return len(self.starting) + len(self.ready) - self.leaving_busy

    @property
    def queued_or_running(self) -> int:
        return len(self.queue) + self.running

    @property
    def priority(self) -> int:
        """The highest priority among its active analyses (the lowest when it has none)."""
        for level in range(10, 0, -1):
            if self.by_priority[level]:
                return level
        return MIN_PRIORITY


@dataclass(frozen=True)
class ModelResult:
    name: str
    analyses: int
    sub_tasks: int
    makespan: float
    wait_mean: float
    wait_max: float
    worker_seconds: float
    peak_workers: int
    lost_seconds: float
    timeline: Sequence[tuple[float, int, int]]
    churn: int = 0


@dataclass(frozen=True)
class Result:
    label: str
    policy: str
    end: float
    makespan: float
    worker_seconds: float
    peak_workers: int
    models: list[ModelResult]
    # Analyses that ran to the end (all of them, unless the policy starved one for ever).
    completed: int = 0

    @property
    def churn(self) -> int:
        """Pods started soon after a pod of the same model was removed, over every model."""
        return sum(m.churn for m in self.models)

    @property
    def wait_mean(self) -> float:
        """Mean queue wait of every sub-task of every model."""
        total = sum(m.sub_tasks for m in self.models)
        return sum(m.wait_mean * m.sub_tasks for m in self.models) / total if total else 0.0


class Simulation:
    """One trace under one policy; `run()` plays it to the end and returns the measures."""

    def __init__(
        self, trace: Trace, policy: Policy, *, label: str | None = None, record: bool = True
    ) -> None:
        self.trace = trace
        self.policy = policy
        self.label = label or trace.name
        self.record = record
        self.now = 0.0
        self.startup = trace.keda.pod_startup
        self.models = [
            ModelRun(index, name, spec) for index, (name, spec) in enumerate(trace.models.items())
        ]
        self._works = analyses_of(trace)
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self._done = 0
        self._pods = 0
        self._peak = 0
        # Bumped whenever a pod is created or exits: a policy counting live pods reads it again.
        self.pods_changed = 0
        if not record:
            self._note = self._note_nothing  # type: ignore[method-assign]

    # --- the policy's handles -------------------------------------------------------------

    def at(self, time: float, call: Callable[[Any, float], None], argument: Any) -> None:
        """Call `call(argument, time)` at `time`."""
        self._push(time, _CALL, (call, argument))

    def set_replicas(self, model: ModelRun, replicas: int) -> None:
        """Make `model`'s pods (those not leaving) number `replicas`."""
        now = self.now
        staying = model.staying
        if replicas == staying:
            return
        if replicas > staying:
            for _ in range(replicas - staying):
                pod = Pod(now)
                model.starting.append(pod)
                self._push(now + self.startup, _READY, (model, pod))
            if now - model.last_removal < CHURN_SECONDS:
                model.churn += replicas - staying
            self._pods += replicas - staying
            self.pods_changed += 1
            self._peak = max(self._peak, self._pods)
            model.peak = max(model.peak, model.pods)
        elif replicas < staying:
            model.last_removal = now
            self._remove(model, staying - replicas)
        self._note(model)

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> Result:
        # Arrivals enter the heap one at a time, each pushing the next: a smaller heap.
        if self._works:
            self._push(self._works[0].arrival, _ARRIVE, 0)
        self.policy.attach(self)
        stop_at = math.inf
        heap = self._heap
        pop = heapq.heappop
        progress = 0.0
        while heap:
            time, _, kind, payload = pop(heap)
            if time > stop_at or time - progress > STALL_SECONDS:
                break
            if kind in (_DONE, _ARRIVE):
                progress = time
            self.now = time
            if kind == _DONE:
                self._finished(*payload)
            elif kind == _READY:
                self._ready(*payload)
            elif kind == _ARRIVE:
                if payload + 1 < len(self._works):
                    self._push(self._works[payload + 1].arrival, _ARRIVE, payload + 1)
                self._arrive(Run(self._works[payload]))
            else:
                call, argument = payload
                call(argument, time)
            if self._done == len(self._works) and stop_at == math.inf:
                stop_at = time + self._settle()
        end = self.now
        return self._result(end)

    def _settle(self) -> float:
        """After the last analysis, long enough for any policy to scale every model down."""
        keda, upstream = self.trace.keda, self.trace.upstream
        return (
            keda.cooldown_period
            + keda.scale_down_stabilization
            + keda.polling_interval
            + 2 * keda.hpa_sync_period
            + upstream.scale_to_zero_delay
            + upstream.message_delay
            + self.startup
            + 1.0
        )

    def _push(self, time: float, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (time, self._seq, kind, payload))

    # --- analyses -------------------------------------------------------------------------

    def _arrive(self, run: Run) -> None:
        model = self.models[run.work.model]
        woke = model.analyses == 0
        model.analyses += 1
        model.total_analyses += 1
        model.by_priority[run.work.priority] += 1
        model.first_arrival = min(model.first_arrival, self.now)
        self._start_stage(model, run)
        self._feed(model)
        self._note(model)
        self.policy.work_changed(model, self.now, woke)

    def _start_stage(self, model: ModelRun, run: Run) -> None:
        stage = run.work.stages[run.stage]
        model.pending += stage.sub_tasks
        run.recorded += stage.sub_tasks
        model.recorded += stage.sub_tasks
        model.unqueued_chunks += stage.chunks
        upstream = stage.chunks + UPSTREAM_SERIAL[stage.stage]
        run.upstream_recorded += upstream
        model.upstream_tasks += upstream
        if stage.split_seconds:
            model.queue.append(Task(run, SPLIT, stage.split_seconds, self.now))
        else:
            self._progress(model, Task(run, SPLIT, 0.0, self.now))

    def _progress(self, model: ModelRun, task: Task) -> None:
        """`task` is done: the next sub-tasks of its analysis are queued."""
        run = task.run
        stage = run.work.stages[run.stage]
        if task.kind == SPLIT:
            model.pending -= BEFORE[stage.stage]
            model.unqueued_chunks -= stage.chunks
            run.chunks_left = run.untaken = stage.chunks
            now = self.now
            if run.chunks_ended is not None:
                model.stage_gap = now - run.chunks_ended
                run.chunks_ended = None
            model.queue.extend([Task(run, CHUNK, s, now) for s in stage.chunk_seconds])
        elif task.kind == CHUNK:
            model.pending -= 1
            run.chunks_left -= 1
            if run.chunks_left == 0:
                if stage.stage == "lookup":
                    run.chunks_ended = self.now
                if stage.join_seconds:
                    model.queue.append(Task(run, JOIN, stage.join_seconds, self.now))
                else:
                    self._progress(model, Task(run, JOIN, 0.0, self.now))
        else:
            model.pending -= AFTER[stage.stage]
            if stage.stage == "lookup":
                model.joining_chunks -= stage.chunks
            run.stage += 1
            if run.stage < len(run.work.stages):
                self._start_stage(model, run)
            else:
                model.analyses -= 1
                model.by_priority[run.work.priority] -= 1
                model.recorded -= run.recorded
                model.upstream_tasks -= run.upstream_recorded
                model.last_done = self.now
                self._done += 1

    # --- pods -----------------------------------------------------------------------------

    def _ready(self, model: ModelRun, pod: Pod) -> None:
        if pod.gone:
            return  # removed while it was starting
        model.starting.remove(pod)
        model.ready.append(pod)
        model.free.extend([pod] * model.spec.slots_per_worker)
        self._feed(model)
        self._note(model)

    def _feed(self, model: ModelRun) -> None:
        """Free slots take queued sub-tasks, first in first out."""
        queue, free, now = model.queue, model.free, self.now
        while free and queue:
            pod = free.popleft()
            if pod.gone or pod.leaving:
                continue
            task = queue.popleft()
            if task.kind == CHUNK:
                self._taken(model, task.run, -1)
            wait = now - task.queued
            model.waits += 1
            model.wait_sum += wait
            if wait > model.wait_max:
                model.wait_max = wait
            task.started = now
            pod.tasks.append(task)
            model.running += 1
            self._push(now + task.seconds, _DONE, (model, pod, task))

    def _taken(self, model: ModelRun, run: Run, change: int) -> None:
        """A chunk of `run` was taken from the queue (-1) or put back on it (+1): an input
        stage with no chunk left to take counts its chunks as joining."""
        joining = run.untaken == 0
        run.untaken += change
        if run.work.stages[run.stage].stage == "lookup" and joining != (run.untaken == 0):
            chunks = run.work.stages[run.stage].chunks
            model.joining_chunks += chunks if run.untaken == 0 else -chunks

    def _finished(self, model: ModelRun, pod: Pod, task: Task) -> None:
        if pod.gone or task not in pod.tasks:
            return  # the pod was killed and its sub-task delivered again
        pod.tasks.remove(task)
        model.running -= 1
        self._progress(model, task)
        if not pod.leaving:
            model.free.append(pod)
        elif not pod.tasks:
            model.leaving_busy -= 1
            model.ready.remove(pod)
            self._exit(model, pod)
        self._feed(model)
        self._note(model)
        self.policy.work_changed(model, self.now, False)

    def _remove(self, model: ModelRun, count: int) -> None:
        # Pods not yet running go first (the ReplicaSet's own preference), newest first.
        while count and model.starting:
            self._exit(model, model.starting.pop())
            count -= 1
        if not count:
            return
        staying = [p for p in model.ready if not p.leaving]
        if self.policy.idle_first:
            # Idle pods carry a low deletion cost and go first, the most recently idle first;
            # busy ones a high cost: the newest go, each after its sub-tasks.
            idle = [p for p in staying if not p.tasks]
            busy = sorted((p for p in staying if p.tasks), key=lambda p: p.created, reverse=True)
            candidates = idle[::-1] + busy
        else:
            candidates = sorted(staying, key=lambda p: p.created, reverse=True)
        for pod in candidates[:count]:
            if not pod.tasks:
                model.ready.remove(pod)
                self._exit(model, pod)
                continue
            pod.leaving = True
            model.leaving_busy += 1
            grace = self.policy.termination_grace
            if grace is not None:
                self.at(self.now + grace, self._kill, (model, pod))

    def _kill(self, target: tuple[ModelRun, Pod], now: float) -> None:
        model, pod = target
        if pod.gone:
            return  # it finished in time
        # Acknowledged late: its messages are delivered again, from the start.
        for task in pod.tasks:
            model.lost_seconds += now - task.started
            task.queued = now
            model.queue.append(task)
            if task.kind == CHUNK:
                self._taken(model, task.run, 1)
        model.running -= len(pod.tasks)
        pod.tasks = []
        model.leaving_busy -= 1
        model.ready.remove(pod)
        self._exit(model, pod)
        self._feed(model)
        self._note(model)

    def _exit(self, model: ModelRun, pod: Pod) -> None:
        pod.gone = True
        model.worker_seconds += self.now - pod.created
        self._pods -= 1
        self.pods_changed += 1

    # --- measures -------------------------------------------------------------------------

    def _note_nothing(self, model: ModelRun) -> None:
        pass

    def _note(self, model: ModelRun) -> None:
        point = (self.now, len(model.queue) + model.running, model.pods)
        timeline = model.timeline
        if timeline and timeline[-1][1:] == point[1:]:
            return
        if timeline and timeline[-1][0] == point[0]:
            timeline[-1] = point
        else:
            timeline.append(point)

    def _result(self, end: float) -> Result:
        models = []
        for model in self.models:
            # Pods still there at the end count up to it (a floor keeps them for ever).
            alive = model.starting + model.ready
            worker_seconds = model.worker_seconds + sum(end - pod.created for pod in alive)
            makespan = model.last_done - model.first_arrival if model.total_analyses else 0.0
            models.append(
                ModelResult(
                    name=model.name,
                    analyses=model.total_analyses,
                    sub_tasks=model.waits,
                    makespan=makespan,
                    wait_mean=model.wait_sum / model.waits if model.waits else 0.0,
                    wait_max=model.wait_max,
                    worker_seconds=worker_seconds,
                    peak_workers=model.peak,
                    lost_seconds=model.lost_seconds,
                    timeline=model.timeline,
                    churn=model.churn,
                )
            )
        first = min((w.arrival for w in self._works), default=0.0)
        last = max((m.last_done for m in self.models), default=0.0)
        return Result(
            label=self.label,
            policy=self.policy.name,
            end=end,
            makespan=last - first,
            worker_seconds=sum(m.worker_seconds for m in models),
            peak_workers=self._peak,
            models=models,
            completed=self._done,
        )
