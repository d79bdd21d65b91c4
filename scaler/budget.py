"""The fleet budget: sharing `total_worker_limit` workers among every model's desired count.

Rules, in order (docs/budget.md):
1. Floors: each model keeps its `worker_count_min`, even when the floors together exceed the
   budget (the allocation then says by how much).
2. No model with work starves: a model that wants workers and has no floor gets one, while the
   budget lasts; when it does not last, the higher priority, then the higher weight, then the
   model name (alphabetical) decides who waits.
3. The rest goes by priority (10 first, as upstream's 1-10): a priority level is served fully
   before a lower one gets more, and within a level by weighted max-min fair share (water
   filling), whole workers left over going to the largest fractional shares, then by name.
4. The budget holds for pods: workers still present (busy, or draining after a scale-down) count
   against it until they leave. A model keeps what it is granted up to the workers it has; a
   grant above that is given only from what the present workers leave free, by rules 2-3, so a
   share freed by a scale-down goes elsewhere as its workers leave, not before.
5. Priority takes the free budget first. What it may take of workers already granted is the
   operator's choice (`Preemption`):
   - NONE (the default): a model keeps every worker it has, up or promised, while it wants
     them; the others wait for workers to be freed (as batch schedulers do without preemption).
   - FAIR_SHARE: a model keeps the workers it has up (not promised, not told to go) while it
     wants them only up to its fair share of the whole budget as if every model had the same
     priority (weighted max-min, whole workers rounded down), and one worker goes to each model
     with work: the rest goes over to higher priorities as it drains.
   Where the kept workers and the floors (and, with FAIR_SHARE, one worker for each model with
   work) do not fit in the budget, kept workers give way: first those a priority's share kept
   above the fair share, then down to a floor and one, then down to the floors.

Every replica of the scaler computes the same split from the same inputs: claims are sorted by
name on entry, so neither dict order nor call order changes a grant.

Pure: no I/O and nothing from flask, celery, grpc, redis or sqlalchemy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import groupby

MIN_PRIORITY = 1
MAX_PRIORITY = 10


class Preemption(StrEnum):
    """What a higher priority may take of the workers another model has (rule 5)."""

    # Only what the present workers leave free: a model keeps its workers while it wants them.
    NONE = "none"
    # Also a lower priority's workers above its fair share, and one for each model, as they drain.
    FAIR_SHARE = "fair-share"


@dataclass(frozen=True)
class Claim:
    """What one model asks of the budget.

    `desired` is the strategy's answer (floor included); `priority` the highest priority among
    its waiting analyses (MIN_PRIORITY when none is counted: work no analysis owns ranks last).
    """

    model: str
    desired: int
    floor: int = 0
    weight: float = 1.0
    priority: int = MIN_PRIORITY

    def __post_init__(self) -> None:
        if not 0 <= self.floor <= self.desired:
            raise ValueError(
                f"model {self.model!r}: need 0 <= floor <= desired, "
                f"got floor={self.floor}, desired={self.desired}"
            )
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"model {self.model!r}: weight must be above 0, got {self.weight}")
        if not MIN_PRIORITY <= self.priority <= MAX_PRIORITY:
            raise ValueError(
                f"model {self.model!r}: priority must be {MIN_PRIORITY}-{MAX_PRIORITY}, "
                f"got {self.priority}"
            )


@dataclass(frozen=True)
class Allocation:
    """Workers granted per model, and how the budget stood."""

    granted: Mapping[str, int]
    limit: int | None
    # Sum of the floors, and by how many workers they exceed the limit (0 when they fit).
    floors: int = 0
    floors_over_budget: int = 0
    # Models that want workers and got none: the budget is below their number, or (rule 5)
    # the workers other models keep fill it.
    starved: tuple[str, ...] = field(default=())

    @property
    def total(self) -> int:
        return sum(self.granted.values())


def allocate(
    claims: Iterable[Claim],
    limit: int | None,
    *,
    present: Mapping[str, int] | None = None,
    staying: Mapping[str, int] | None = None,
    working: Mapping[str, int] | None = None,
    preemption: Preemption = Preemption.NONE,
) -> Allocation:
    """Each model's share of `limit` workers (None: no budget, every model gets its desired).

    Rule 4: `present` holds the workers each model has against the budget now (draining ones
    and those already asked for included; models without a claim too), and `staying` those of
    them it keeps without asking anew (not draining; `present` when omitted), and `working`
    the workers it has up now, not promised ones (`staying` when omitted). None shares the
    budget as if no worker were running. Rule 5: `preemption` says what priority may take of
    the workers a model keeps.
    """
    ordered = sorted(claims, key=lambda claim: claim.model)
    names = [claim.model for claim in ordered]
    if len(set(names)) != len(names):
        raise ValueError("each model may claim once")
    if limit is not None and limit < 0:
        raise ValueError(f"the worker limit must be 0 or more, got {limit}")
    floors = sum(claim.floor for claim in ordered)
    if limit is None:
        return Allocation({c.model: c.desired for c in ordered}, None, floors)
    granted = {claim.model: claim.floor for claim in ordered}
    left = limit - floors
    if left > 0:
        left = _one_each(ordered, granted, left)
    if left > 0:
        _by_priority(ordered, granted, left)
    if present:
        staying = staying or present
        working = working or staying
        granted = _held(ordered, granted, present, staying, working, limit, preemption)
    starved = tuple(c.model for c in ordered if c.desired > 0 and granted[c.model] == 0)
    return Allocation(granted, limit, floors, max(0, -left), starved)


def _held(
    claims: list[Claim],
    shares: Mapping[str, int],
    present: Mapping[str, int],
    staying: Mapping[str, int],
    working: Mapping[str, int],
    limit: int,
    preemption: Preemption,
) -> dict[str, int]:
    """The shares, each above the workers the model keeps only by what the budget has free
    while every present worker counts against it."""
    if any(count < 0 for count in (*present.values(), *staying.values(), *working.values())):
        raise ValueError("present worker counts must be 0 or more")
    # Rule 5: taking a busy worker costs the model its sub-task's remaining time plus a pod
    # start before the other model gains anything (measured in docs/budget.md). Without
    # preemption every worker a model has, up or promised, is kept while it is wanted. With
    # FAIR_SHARE, priority takes workers that are up down to what the model would have were
    # priorities equal, and workers only promised (KEDA may not have started them) are kept up
    # to the share alone.
    if preemption is Preemption.NONE:
        fair = {c.model: c.desired for c in claims}
        working = staying
    else:
        fair = _fair_floor(claims, limit)
    kept = {
        c.model: max(
            min(shares[c.model], staying.get(c.model, 0)),
            min(fair[c.model], staying.get(c.model, 0), working.get(c.model, 0)),
            c.floor,
        )
        for c in claims
    }
    _make_room(claims, kept, present, limit, fair, one_each=preemption is Preemption.FAIR_SHARE)
    # Draining workers hold their place until they leave; floors hold in every case.
    held = sum(max(count, kept.get(model, 0)) for model, count in present.items())
    held += sum(count for model, count in kept.items() if model not in present)
    free = max(limit - held, 0)
    growing = [c for c in claims if shares[c.model] > kept[c.model]]
    if not growing or not free:
        return kept
    # Only the models that grow share what is free, by rules 2-3 again, from what they keep.
    wanting = [
        Claim(c.model, shares[c.model], kept[c.model], c.weight, c.priority) for c in growing
    ]
    grown = allocate(wanting, sum(kept[c.model] for c in growing) + free).granted
    return {**kept, **grown}


def _fair_floor(claims: list[Claim], limit: int) -> dict[str, int]:
    """Each model's weighted max-min fair share of `limit` over every claim, priorities left
    out, rounded down (so that a tie never keeps the odd worker from a higher priority);
    between its floor and its desired count."""
    low = {c.model: c.floor for c in claims}
    high = {c.model: c.desired for c in claims}
    if sum(high.values()) <= limit:
        return high
    if sum(low.values()) >= limit:
        return low
    weights = {c.model: c.weight for c in claims}
    level = _water_level(low, high, weights, limit, sorted(low))
    return {m: min(high[m], max(low[m], math.floor(weights[m] * level))) for m in low}


def _make_room(
    claims: list[Claim],
    kept: dict[str, int],
    present: Mapping[str, int],
    limit: int,
    fair: Mapping[str, int],
    *,
    one_each: bool,
) -> None:
    """What is kept fitted to the budget, with rules 1-2: the floors, and (`one_each`) one
    worker for each model with work and none present, while the budget lasts. Where they do not
    fit beside the kept workers, one is given up at a time: first by a model keeping more than
    its fair share (kept by its share alone: a priority's gain gives way before anyone's fair
    share), then by one keeping more than its floor and one, then more than its floor; each
    time the lowest priority, then the most kept, then the name."""
    waiting = [
        c
        for c in claims
        if one_each and c.desired > 0 and kept[c.model] == 0 and not present.get(c.model)
    ]
    waiting.sort(key=lambda c: (-c.priority, -c.weight, c.model))
    # Workers given up by one model only reach another once they have left: counting them
    # here keeps a model from giving up more than the room it makes.
    need = sum(kept.values()) + len(waiting) - limit
    if need <= 0:
        return
    # When the floors alone leave no room for one each, down to the floors (rule 1 first).
    for above_fair, above_one in ((True, True), (False, True), (False, False)):
        while need > 0:
            donors = [
                c
                for c in claims
                if kept[c.model] > max(c.floor, int(above_one), fair[c.model] if above_fair else 0)
            ]
            if not donors:
                break
            donor = min(donors, key=lambda c: (c.priority, -kept[c.model], c.model))
            kept[donor.model] -= 1
            need -= 1


def _one_each(claims: list[Claim], granted: dict[str, int], left: int) -> int:
    """One worker to each model that wants some and has none, best ranked first."""
    waiting = [c for c in claims if c.desired > 0 and granted[c.model] == 0]
    waiting.sort(key=lambda c: (-c.priority, -c.weight, c.model))
    for claim in waiting[:left]:
        granted[claim.model] = 1
    return left - min(left, len(waiting))


def _by_priority(claims: list[Claim], granted: dict[str, int], left: int) -> None:
    """Priority levels from the highest, each shared by weight until the budget is spent."""
    by_level = sorted(claims, key=lambda c: (-c.priority, c.model))
    for _, level in groupby(by_level, key=lambda c: c.priority):
        members = [c for c in level if c.desired > granted[c.model]]
        low = {c.model: granted[c.model] for c in members}
        high = {c.model: c.desired for c in members}
        weights = {c.model: c.weight for c in members}
        for model, total in fair_shares(low, high, weights, left).items():
            left -= total - granted[model]
            granted[model] = total
        if left == 0:
            return


def fair_shares(
    low: Mapping[str, int], high: Mapping[str, int], weights: Mapping[str, float], units: int
) -> dict[str, int]:
    """Weighted max-min fair totals when `units` more workers are shared among models holding
    `low` and wanting `high`: each total is clamp(weight * L, low, high) for one water level L.

    Fairness is on the totals, so workers a model already holds (its floor) count towards its
    share. All of `units` is handed out unless the wants add up to less. The whole workers the
    real-valued level leaves over go to the largest fractional parts (then by name), so a total
    is within one worker of the exact fair share.
    """
    models = sorted(low)
    if sum(high[m] - low[m] for m in models) <= units:
        return {model: high[model] for model in models}
    target = sum(low.values()) + units
    level = _water_level(low, high, weights, target, models)
    exact = {m: min(float(high[m]), max(float(low[m]), weights[m] * level)) for m in models}
    totals = {m: min(high[m], max(low[m], math.floor(exact[m]))) for m in models}
    spare = target - sum(totals.values())
    below = [m for m in models if totals[m] < high[m]]
    below.sort(key=lambda m: (-(exact[m] - totals[m]), m))
    for model in below[: max(spare, 0)]:
        totals[model] += 1
    return totals


def _water_level(
    low: Mapping[str, int],
    high: Mapping[str, int],
    weights: Mapping[str, float],
    target: int,
    models: list[str],
) -> float:
    """The level L with sum(clamp(weight * L, low, high)) == target, by a sweep over the points
    where a model starts to rise (low / weight) and where it is full (high / weight)."""
    # (point, order, model): at one point a model that fills up is taken before one that rises.
    points = []
    for model in models:
        if high[model] > low[model]:
            points.append((low[model] / weights[model], 1, model))
            points.append((high[model] / weights[model], 0, model))
    points.sort()
    base = float(sum(low.values()))  # f(L) = base + slope * L between points
    slope = 0.0
    for point, rises, model in points:
        if base + slope * point >= target:
            break
        if rises:
            base -= low[model]
            slope += weights[model]
        else:
            base += high[model]
            slope -= weights[model]
    return (target - base) / slope if slope > 0 else math.inf
