"""The fleet budget core: worked cases, then the properties every split must have."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.budget import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    Allocation,
    Claim,
    Preemption,
    _fair_floor,
    allocate,
    fair_shares,
)


def grants(claims: list[Claim], limit: int | None) -> dict[str, int]:
    return dict(allocate(claims, limit).granted)


@pytest.mark.parametrize(
    ("claims", "limit", "expected"),
    [
        # No budget: every model gets what it asked for.
        ([Claim("a", 9), Claim("b", 5)], None, {"a": 9, "b": 5}),
        # Enough budget: the same.
        ([Claim("a", 9), Claim("b", 5)], 14, {"a": 9, "b": 5}),
        # Equal weights, equal priority: max-min fair, the small need is met in full.
        ([Claim("a", 9), Claim("b", 2)], 8, {"a": 6, "b": 2}),
        ([Claim("a", 9), Claim("b", 9)], 8, {"a": 4, "b": 4}),
        # An odd worker goes by name when the fractional parts tie.
        ([Claim("a", 9), Claim("b", 9)], 7, {"a": 4, "b": 3}),
        ([Claim("b", 9), Claim("a", 9)], 7, {"a": 4, "b": 3}),
        # Weights 3:1.
        ([Claim("a", 10, weight=3), Claim("b", 10)], 8, {"a": 6, "b": 2}),
        # Priority: the level 8 is served fully before level 4 gets more than its one worker.
        ([Claim("a", 9, priority=8), Claim("b", 9, priority=4)], 8, {"a": 7, "b": 1}),
        ([Claim("a", 3, priority=8), Claim("b", 9, priority=4)], 8, {"a": 3, "b": 5}),
        # Floors first; the rest by fair share above them.
        ([Claim("a", 9, floor=5), Claim("b", 9)], 8, {"a": 5, "b": 3}),
        # Floors above the budget still hold; nobody else gets anything.
        (
            [Claim("a", 9, floor=5), Claim("b", 9, floor=4), Claim("c", 3)],
            6,
            {"a": 5, "b": 4, "c": 0},
        ),
        # Budget below the models with work: the higher priority keeps its one worker.
        ([Claim("a", 5, priority=2), Claim("b", 5, priority=9)], 1, {"a": 0, "b": 1}),
        # ... the higher weight at equal priority, then the name.
        ([Claim("a", 5), Claim("b", 5, weight=2)], 1, {"a": 0, "b": 1}),
        ([Claim("b", 5), Claim("a", 5)], 1, {"a": 1, "b": 0}),
        # Idle models get nothing and take nothing.
        ([Claim("a", 0), Claim("b", 4)], 3, {"a": 0, "b": 3}),
        # A zero budget: no worker for anyone without a floor.
        ([Claim("a", 3), Claim("b", 1, floor=1)], 0, {"a": 0, "b": 1}),
        # The brief's three analyses x 15 chunks (9 workers) against a model of 5, budget 10.
        ([Claim("chaz", 9), Claim("piwind", 5)], 10, {"chaz": 5, "piwind": 5}),
    ],
)
def test_worked_cases(claims: list[Claim], limit: int | None, expected: dict[str, int]) -> None:
    assert grants(claims, limit) == expected


def test_floors_over_budget_are_reported() -> None:
    allocation = allocate([Claim("a", 9, floor=5), Claim("b", 4, floor=4)], 6)
    assert allocation.floors == 9
    assert allocation.floors_over_budget == 3
    assert allocation.total == 9


def test_floors_within_budget_report_nothing() -> None:
    allocation = allocate([Claim("a", 9, floor=5), Claim("b", 4, floor=1)], 6)
    assert (allocation.floors, allocation.floors_over_budget) == (6, 0)


def test_starved_models_are_named() -> None:
    allocation = allocate([Claim("a", 2), Claim("b", 2), Claim("c", 2), Claim("d", 0)], 2)
    assert allocation.starved == ("c",)
    assert allocate([Claim("a", 2), Claim("b", 2)], 2).starved == ()


@pytest.mark.parametrize(
    ("claim", "field"),
    [
        (lambda: Claim("a", 2, floor=3), "floor"),
        (lambda: Claim("a", -1), "floor"),
        (lambda: Claim("a", 2, weight=0), "weight"),
        (lambda: Claim("a", 2, weight=float("nan")), "weight"),
        (lambda: Claim("a", 2, priority=0), "priority"),
        (lambda: Claim("a", 2, priority=11), "priority"),
    ],
)
def test_bad_claims_are_refused(claim: object, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        claim()  # type: ignore[operator]


def test_bad_limit_and_repeated_models_are_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        allocate([Claim("a", 1)], -1)
    with pytest.raises(ValueError, match="once"):
        allocate([Claim("a", 1), Claim("a", 2)], 5)


def test_fair_shares_hand_out_every_unit_within_wants() -> None:
    zero = {"a": 0, "b": 0, "c": 0}
    wants = {"a": 10, "b": 1, "c": 10}
    weights = {"a": 1.0, "b": 1.0, "c": 2.0}
    assert fair_shares(zero, wants, weights, 10) == {"a": 3, "b": 1, "c": 6}


def test_fair_shares_count_what_a_model_already_holds() -> None:
    # a holds 5 (its floor): the 3 more go to b, whose total is then closest to a's.
    assert fair_shares({"a": 5, "b": 0}, {"a": 9, "b": 9}, {"a": 1.0, "b": 1.0}, 3) == {
        "a": 5,
        "b": 3,
    }
    assert fair_shares({"a": 5, "b": 0}, {"a": 9, "b": 9}, {"a": 1.0, "b": 1.0}, 7) == {
        "a": 6,
        "b": 6,
    }


# --- properties ---------------------------------------------------------------------------

names = st.text(alphabet="abcdefgh", min_size=1, max_size=3)


@st.composite
def claim_sets(draw: st.DrawFn) -> list[Claim]:
    models = draw(st.lists(names, min_size=1, max_size=8, unique=True))
    claims = []
    for model in models:
        desired = draw(st.integers(0, 30))
        claims.append(
            Claim(
                model,
                desired,
                floor=draw(st.integers(0, desired)),
                weight=draw(st.sampled_from([0.5, 1.0, 1.0, 2.0, 3.0, 0.1])),
                priority=draw(st.integers(MIN_PRIORITY, MAX_PRIORITY)),
            )
        )
    return claims


limits = st.one_of(st.none(), st.integers(0, 120))


@given(claim_sets(), limits)
def test_sum_within_budget_unless_floors_force_it(claims: list[Claim], limit: int | None) -> None:
    allocation = allocate(claims, limit)
    if limit is not None:
        assert allocation.total <= max(limit, allocation.floors)
        assert allocation.floors_over_budget == max(0, allocation.floors - limit)


@given(claim_sets(), limits)
def test_each_grant_between_floor_and_desired(claims: list[Claim], limit: int | None) -> None:
    granted = allocate(claims, limit).granted
    for claim in claims:
        assert claim.floor <= granted[claim.model] <= claim.desired


@given(claim_sets(), limits)
def test_budget_is_used_while_anyone_wants_more(claims: list[Claim], limit: int | None) -> None:
    allocation = allocate(claims, limit)
    wanted = sum(claim.desired for claim in claims)
    if limit is not None:
        assert allocation.total == max(min(wanted, limit), allocation.floors)


@given(claim_sets(), limits)
def test_no_model_with_work_starves_while_the_budget_has_room(
    claims: list[Claim], limit: int | None
) -> None:
    allocation = allocate(claims, limit)
    working = [claim for claim in claims if claim.desired > 0]
    if limit is None or limit >= allocation.floors + sum(1 for c in working if c.floor == 0):
        assert allocation.starved == ()
    assert all(allocation.granted[model] == 0 for model in allocation.starved)


@given(claim_sets(), st.integers(0, 40), st.data())
def test_models_left_without_a_worker_are_starved_whatever_the_cause(
    claims: list[Claim], limit: int, data: st.DataObject
) -> None:
    staying = {c.model: data.draw(st.integers(0, 10)) for c in claims}
    preemption = data.draw(st.sampled_from(Preemption))
    allocation = allocate(claims, limit, present=staying, staying=staying, preemption=preemption)
    left = tuple(c.model for c in claims if c.desired > 0 and allocation.granted[c.model] == 0)
    assert allocation.starved == tuple(sorted(left))


def test_a_model_waiting_for_workers_others_keep_is_starved() -> None:
    claims = [Claim("a", 8, priority=4), Claim("b", 3, priority=8)]
    allocation = allocate(claims, 8, present={"a": 8}, staying={"a": 8})
    assert (dict(allocation.granted), allocation.starved) == ({"a": 8, "b": 0}, ("b",))


@given(claim_sets(), limits, st.randoms(use_true_random=False))
def test_permutation_invariant(
    claims: list[Claim], limit: int | None, shuffler: random.Random
) -> None:
    shuffled = list(claims)
    shuffler.shuffle(shuffled)
    first, second = allocate(claims, limit), allocate(shuffled, limit)
    assert dict(first.granted) == dict(second.granted)
    assert first.starved == second.starved


@given(claim_sets(), st.integers(0, 120), st.data())
def test_monotone_in_priority(claims: list[Claim], limit: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(claims) - 1))
    claim = claims[index]
    higher = data.draw(st.integers(claim.priority, MAX_PRIORITY))
    raised = list(claims)
    raised[index] = Claim(claim.model, claim.desired, claim.floor, claim.weight, higher)
    before = allocate(claims, limit).granted[claim.model]
    assert allocate(raised, limit).granted[claim.model] >= before


@given(claim_sets(), st.integers(0, 120))
def test_a_model_never_gets_more_than_an_equal_peer_that_ranks_higher(
    claims: list[Claim], limit: int
) -> None:
    granted = allocate(claims, limit).granted
    for one in claims:
        for other in claims:
            same_shape = (one.desired, one.floor, one.weight) == (
                other.desired,
                other.floor,
                other.weight,
            )
            if same_shape and one.priority > other.priority:
                assert granted[one.model] >= granted[other.model]


@given(claim_sets(), st.integers(0, 120))
@settings(max_examples=50)
def test_deterministic(claims: list[Claim], limit: int) -> None:
    assert allocate(claims, limit) == allocate(list(claims), limit)


def test_allocation_is_comparable() -> None:
    assert isinstance(allocate([], 3), Allocation)
    assert allocate([], 3).total == 0


# --- rule 4: the budget holds for pods --------------------------------------------------

HELD_CASES: list[
    tuple[str, list[Claim], int, dict[str, int], dict[str, int], dict[str, int], dict[str, int]]
] = [
    # (id, claims, limit, present, staying, granted with fair-share preemption, without)
    (
        "a share freed by a scale-down waits for the draining workers",
        [Claim("a", 2, priority=4), Claim("b", 6, priority=8)],
        8,
        {"a": 8},
        {"a": 8},
        {"a": 2, "b": 0},
        {"a": 2, "b": 0},
    ),
    (
        "as they leave, the share goes over",
        [Claim("a", 2, priority=4), Claim("b", 6, priority=8)],
        8,
        {"a": 5},
        {"a": 5},
        {"a": 2, "b": 3},
        {"a": 2, "b": 3},
    ),
    (
        "draining workers of a model growing again still count",
        [Claim("a", 6)],
        6,
        {"a": 6},
        {"a": 3},
        {"a": 3},
        {"a": 3},
    ),
    (
        "workers of a model with no claim count too",
        [Claim("b", 4)],
        6,
        {"gone": 3},
        {"gone": 0},
        {"b": 3},
        {"b": 3},
    ),
    (
        "floors hold whatever is present",
        [Claim("a", 2, floor=2), Claim("b", 5)],
        4,
        {"b": 4},
        {"b": 4},
        {"a": 2, "b": 2},
        {"a": 2, "b": 2},
    ),
    (
        "a lower priority keeps its workers up to its fair share; the rest goes over as it drains",
        [Claim("a", 6, priority=4), Claim("b", 6, priority=8)],
        8,
        {"a": 6},
        {"a": 6},
        {"a": 4, "b": 2},
        {"a": 6, "b": 2},
    ),
    (
        "it keeps only what it still wants",
        [Claim("a", 3, priority=4), Claim("b", 6, priority=8)],
        8,
        {"a": 6},
        {"a": 6},
        {"a": 3, "b": 2},
        {"a": 3, "b": 2},
    ),
    (
        "the budget full: higher priorities wait for the workers above the fair share to drain",
        [Claim("a", 8, priority=4), Claim("b", 6, priority=8), Claim("c", 5, priority=6)],
        8,
        {"a": 8},
        {"a": 8},
        {"a": 2, "b": 0, "c": 0},
        {"a": 8, "b": 0, "c": 0},
    ),
    (
        "each lower priority keeps its fair share, rounded down",
        [Claim("a", 4, priority=4), Claim("b", 3, priority=4), Claim("c", 5, priority=8)],
        7,
        {"a": 4, "b": 3},
        {"a": 4, "b": 3},
        {"a": 2, "b": 2, "c": 0},
        {"a": 4, "b": 3, "c": 0},
    ),
    (
        "a higher priority's grant above its workers waits for the others' to drain",
        [Claim("a", 8, priority=4), Claim("b", 6, priority=8)],
        8,
        {"a": 7, "b": 1},
        {"a": 7, "b": 1},
        {"a": 4, "b": 1},
        {"a": 7, "b": 1},
    ),
    (
        "fair shares count weights",
        [Claim("a", 8, priority=4, weight=3), Claim("b", 8, priority=8)],
        8,
        {"a": 8},
        {"a": 8},
        {"a": 6, "b": 0},
        {"a": 8, "b": 0},
    ),
    (
        "kept workers give way to floors before one each",
        [Claim("a", 5, priority=8), Claim("b", 4, floor=4), Claim("c", 2)],
        6,
        {"a": 5},
        {"a": 5},
        {"a": 1, "b": 4, "c": 0},
        {"a": 2, "b": 4, "c": 0},
    ),
    (
        "floors over the budget: kept workers go down to nothing",
        [Claim("a", 5, priority=8), Claim("b", 7, floor=7)],
        6,
        {"a": 5},
        {"a": 5},
        {"a": 0, "b": 7},
        {"a": 0, "b": 7},
    ),
]


@pytest.mark.parametrize(
    ("claims", "limit", "present", "staying", "fair_share", "none"),
    [case[1:] for case in HELD_CASES],
    ids=[case[0] for case in HELD_CASES],
)
def test_present_workers_hold_their_place(
    claims: list[Claim],
    limit: int,
    present: dict[str, int],
    staying: dict[str, int],
    fair_share: dict[str, int],
    none: dict[str, int],
) -> None:
    for preemption, granted in ((Preemption.FAIR_SHARE, fair_share), (Preemption.NONE, none)):
        allocation = allocate(
            claims, limit, present=present, staying=staying, preemption=preemption
        )
        assert dict(allocation.granted) == granted, preemption


def test_without_preemption_is_the_default() -> None:
    claims = [Claim("a", 6, priority=4), Claim("b", 6, priority=8)]
    granted = allocate(claims, 8, present={"a": 6}, staying={"a": 6}).granted
    assert dict(granted) == {"a": 6, "b": 2}


def test_without_preemption_promised_workers_are_kept_too() -> None:
    """A grant KEDA may be acting on (staying, none up yet) is kept like workers that are up;
    with fair-share preemption it is kept only up to the share, the rest held until KEDA drops
    those pods."""
    claims = [Claim("a", 6, priority=4), Claim("b", 6, priority=8)]
    promised = {"present": {"a": 6}, "staying": {"a": 6}, "working": {"a": 0}}
    assert dict(allocate(claims, 8, **promised).granted) == {"a": 6, "b": 2}
    fair_share = allocate(claims, 8, **promised, preemption=Preemption.FAIR_SHARE).granted
    assert dict(fair_share) == {"a": 2, "b": 2}


@given(claim_sets(), st.integers(0, 40), st.data())
def test_pods_never_exceed_the_budget_once_the_grants_are_acted_on(
    claims: list[Claim], limit: int, data: st.DataObject
) -> None:
    """Pods after KEDA acts: each model's grant (its staying pods and new ones) plus its
    draining ones. Starting from pods within the budget, they stay within it, but for floors."""
    floors = sum(c.floor for c in claims)
    staying = {c.model: data.draw(st.integers(0, 10)) for c in claims}
    draining = {c.model: data.draw(st.integers(0, 5)) for c in claims}
    present = {m: staying[m] + draining[m] for m in staying}
    if sum(present.values()) > limit or floors > limit:
        return
    preemption = data.draw(st.sampled_from(Preemption))
    granted = allocate(
        claims, limit, present=present, staying=staying, preemption=preemption
    ).granted
    after = sum(max(granted[m], staying[m]) + draining[m] for m in staying)
    # A floor is kept at once, even while draining workers still fill the budget.
    forced = sum(max(0, c.floor - staying[c.model]) for c in claims)
    assert after <= limit + forced
    for claim in claims:
        assert claim.floor <= granted[claim.model] <= claim.desired


@given(claim_sets(), st.integers(0, 40), st.data())
def test_priority_takes_workers_that_are_up_only_down_to_a_fair_share(
    claims: list[Claim], limit: int, data: st.DataObject
) -> None:
    """A model keeps the workers it has up, while it wants them, down to its fair share of the
    budget with priorities left out (rounded down), whenever those, the floors and one worker
    for each model with work fit in the budget."""
    staying = {c.model: data.draw(st.integers(0, 10)) for c in claims}
    fair = _fair_floor(claims, limit)
    kept = {c.model: max(min(staying[c.model], fair[c.model]), c.floor) for c in claims}
    room = sum(max(kept[c.model], 1 if c.desired else 0) for c in claims)
    granted = allocate(
        claims, limit, present=staying, staying=staying, preemption=Preemption.FAIR_SHARE
    ).granted
    if room <= limit:
        for claim in claims:
            assert granted[claim.model] >= kept[claim.model]
    assert all(c.floor <= granted[c.model] <= c.desired for c in claims)


@given(claim_sets(), st.integers(0, 40), st.data())
def test_without_preemption_a_model_keeps_its_workers_while_it_wants_them(
    claims: list[Claim], limit: int, data: st.DataObject
) -> None:
    """Whatever the priorities, a model keeps every worker it has (up or promised) that it still
    wants, whenever those and the floors fit in the budget; and it is granted more only from
    what the present workers leave free."""
    staying = {c.model: data.draw(st.integers(0, 10)) for c in claims}
    kept = {c.model: max(min(staying[c.model], c.desired), c.floor) for c in claims}
    granted = allocate(claims, limit, present=staying, staying=staying).granted
    if sum(kept.values()) <= limit:
        for claim in claims:
            assert granted[claim.model] >= kept[claim.model]
        grown = sum(granted[m] - kept[m] for m in kept)
        assert grown <= max(limit - sum(max(staying[m], kept[m]) for m in kept), 0)
    assert all(c.floor <= granted[c.model] <= c.desired for c in claims)


@pytest.mark.parametrize(
    ("claims", "limit", "fair"),
    [
        ([Claim("a", 6, priority=4), Claim("b", 6, priority=8)], 8, {"a": 4, "b": 4}),
        ([Claim("a", 9), Claim("b", 9)], 9, {"a": 4, "b": 4}),
        ([Claim("a", 2), Claim("b", 9)], 8, {"a": 2, "b": 6}),
        ([Claim("a", 8, weight=3), Claim("b", 8)], 8, {"a": 6, "b": 2}),
        ([Claim("a", 3, floor=3), Claim("b", 9)], 4, {"a": 3, "b": 1}),
        ([Claim("a", 5, floor=5), Claim("b", 9)], 4, {"a": 5, "b": 0}),
        ([Claim("a", 2), Claim("b", 3)], 8, {"a": 2, "b": 3}),
    ],
    ids=[
        "equal wants: half each, priority left out",
        "an odd worker is kept by nobody",
        "a small want is met in full",
        "weights 3:1",
        "floors count towards the share",
        "floors over the budget: the floors",
        "wants within the budget: the wants",
    ],
)
def test_fair_floor(claims: list[Claim], limit: int, fair: dict[str, int]) -> None:
    assert _fair_floor(claims, limit) == fair
