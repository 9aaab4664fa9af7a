"""Property tests of `decide`, the functional core of crediting: no database, real methodologies.

Candidates are built from the shipped library (`default_registry`) and evaluated uncapped, as
the shell does. A few participants, three partners and occurred_at times on a tight grid
around a day and month boundary make duplicates across partners and shared caps (metro and
bus count against the same `transit.daily` and `transit.monthly`) happen in most examples.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from points_rules import Action, Usage, default_registry, evaluate, evaluate_uncapped
from service.crediting.decide import (
    CREDIT_STATUSES,
    DUPLICATE,
    PENDING,
    Candidate,
    Decision,
    Plan,
    StandingCredit,
    State,
    decide,
)

REGISTRY = default_registry()
CST = dt.timezone(dt.timedelta(hours=8))
# 21:30 on the last day of March in the program's time zone: the grid below runs past
# midnight, so daily and monthly cap periods change in the middle of a batch.
BASE = dt.datetime(2025, 3, 31, 21, 30, tzinfo=CST)
STEP = dt.timedelta(minutes=7)
WINDOW = dt.timedelta(minutes=10)
PARTNERS = tuple(uuid.UUID(int=0xA000 + i) for i in range(3))
PARTICIPANTS = tuple(uuid.UUID(int=0xB000 + i) for i in range(3))
ACTION_TYPES = (
    "transit.metro",
    "transit.bus",
    "mobility.walk",
    "waste.sorting",
    "purchase.green_product",
)
# usage key family (the cap's key) -> (max grams, max points), from the library itself.
CAPS: dict[str, tuple[int | None, int | None]] = {}
for _m in REGISTRY.methodologies:
    for _cap in _m.caps:
        assert CAPS.setdefault(_cap.key, (_cap.max_grams, _cap.max_points)) == (
            _cap.max_grams,
            _cap.max_points,
        ), f"cap {_cap.key} has different limits in different methodologies"

FAST = settings(max_examples=50, deadline=None)

Slot = tuple[uuid.UUID, str]


def family(usage_key: str) -> str:
    return usage_key.split("@", 1)[0]


def _mostly(usual: Sequence[Any], rare: Sequence[Any]) -> st.SearchStrategy[Any]:
    """One of `usual` most of the time, one of `rare` now and then (one draw, no flatmap)."""
    return st.sampled_from([*usual, *usual, *usual, *rare])


def _trip(max_m: int) -> st.SearchStrategy[dict[str, Any]]:
    distance = st.integers(0, max_m).map(Decimal)
    return st.one_of(
        st.fixed_dictionaries({"distance_m": distance}),
        st.just({}),  # per-trip figure
        # a duration that makes the trip far too fast now and then: implausible
        st.fixed_dictionaries({"distance_m": distance, "duration_s": st.sampled_from([60, 3600])}),
    )


INPUTS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "transit.metro": _trip(60_000),
    "transit.bus": _trip(60_000),
    "mobility.walk": st.fixed_dictionaries(
        {"steps": st.integers(0, 40_000), "duration_s": st.just(43_200)}
    ),
    "waste.sorting": st.fixed_dictionaries(
        {
            "weight_g": st.integers(0, 6_000),
            "category": _mostly(["recyclable", "kitchen", "hazardous", "other"], ["glass"]),
        }
    ),
    "purchase.green_product": st.fixed_dictionaries(
        {"certified": _mostly([True], [False]), "amount_fen": st.integers(0, 50_000)}
    ),
}


def at(slot: int) -> dt.datetime:
    return BASE + slot * STEP


slots = st.integers(0, 40)  # 40 * 7 min: about 4 h 40 min, across midnight
# Dated after it was received (past the clock skew): implausible; past the claim window: expired.
seconds_late = _mostly([0, 30, 600], [-3600, 8 * 86_400])
partners = st.sampled_from(PARTNERS)
participants = _mostly(PARTICIPANTS, [None])
jitter = st.integers(0, 90)


@st.composite
def actions(draw: st.DrawFn) -> Action:
    action_type = draw(st.sampled_from(ACTION_TYPES))
    region = draw(st.sampled_from([None, "CN-HB-WH"])) if action_type == "transit.metro" else None
    occurred = at(draw(slots)) + dt.timedelta(seconds=draw(jitter))
    received = occurred + dt.timedelta(seconds=draw(seconds_late))
    return Action(action_type, occurred, received, draw(INPUTS[action_type]), region)


@st.composite
def candidate_lists(draw: st.DrawFn) -> list[Candidate]:
    made: list[Candidate] = []
    for event_id in range(1, draw(st.integers(0, 24)) + 1):
        partner = draw(partners)
        participant = draw(participants)
        if made and draw(st.integers(0, 3)) == 0:
            # The same real action, as another partner (or the same one) saw it: same subject
            # and type, a moment apart (sometimes just outside the window), other inputs.
            twin = draw(st.sampled_from(made))
            shift = dt.timedelta(seconds=draw(st.sampled_from([-599, -60, 0, 45, 600, 601])))
            occurred = twin.action.occurred_at + shift
            action = Action(
                twin.action.action_type,
                occurred,
                occurred + dt.timedelta(seconds=draw(seconds_late)),
                draw(INPUTS[twin.action.action_type]),
                twin.action.region,
            )
            participant = twin.participant
        else:
            action = draw(actions())
        m = REGISTRY.select(action.action_type, action.occurred_at, action.region)
        made.append(
            Candidate(event_id, partner, participant, m, action, evaluate_uncapped(m, action))
        )
    return made


@st.composite
def states(draw: st.DrawFn) -> State:
    usage: dict[Slot, Usage] = {}
    for participant in PARTICIPANTS:
        for key in (
            "transit.daily@2025-03-31",
            "transit.daily@2025-04-01",
            "transit.monthly@2025-03",
            "transit.monthly@2025-04",
            "mobility.walk.daily@2025-03-31",
            "waste.sorting.daily@2025-04-01",
            "purchase.green_product.monthly@2025-03",
        ):
            if draw(st.integers(0, 2)) == 0:
                continue
            max_grams, max_points = CAPS[family(key)]
            # Anywhere up to the limit, often close to it (Hypothesis favours small draws).
            grams = max_grams - draw(st.integers(0, max_grams)) if max_grams else 0
            points = max_points - draw(st.integers(0, max_points)) if max_points else 0
            usage[(participant, key)] = Usage(grams, points)
    standing = [
        StandingCredit(
            10_000 + i,
            draw(st.sampled_from(PARTNERS)),
            draw(st.sampled_from(PARTICIPANTS)),
            draw(st.sampled_from(ACTION_TYPES)),
            at(draw(slots)) + dt.timedelta(seconds=draw(st.integers(0, 90))),
        )
        for i in range(draw(st.integers(0, 6)))
    ]
    return State(usage, standing)


def _d(candidates: Sequence[Candidate], state: State) -> Plan:
    return decide(candidates, state, duplicate_window=WINDOW)


def _credits(plan: Plan) -> list[Decision]:
    return [d for d in plan.decisions if d.status in CREDIT_STATUSES]


def _usage_keys(d: Decision) -> tuple[str, ...]:
    return tuple(d.usage_before or {})


def _record(plan: Plan) -> None:
    for d in plan.decisions:
        event(d.status)


# --- 1. caps ---------------------------------------------------------------------------------


@FAST
@given(candidates=candidate_lists(), state=states())
def test_caps_are_never_exceeded_and_usage_added_is_what_was_credited(
    candidates: list[Candidate], state: State
) -> None:
    plan = _d(candidates, state)
    _record(plan)

    credited: dict[Slot, list[int]] = defaultdict(lambda: [0, 0])
    for d in _credits(plan):
        assert d.participant is not None
        for key in _usage_keys(d):
            # What the decision saw is the stored usage plus what earlier decisions credited.
            stored = state.usage.get((d.participant, key), Usage(0, 0))
            slot = credited[(d.participant, key)]
            assert d.usage_before is not None
            assert d.usage_before[key] == [stored.grams + slot[0], stored.points + slot[1]]
            slot[0] += d.grams
            slot[1] += d.points
    assert plan.usage_added == {
        slot: (grams, points) for slot, (grams, points) in credited.items() if grams or points
    }

    for (participant, key), (grams, points) in plan.usage_added.items():
        assert grams >= 0
        assert points >= 0
        stored = state.usage.get((participant, key), Usage(0, 0))
        max_grams, max_points = CAPS[family(key)]
        if max_grams is not None:
            assert stored.grams + grams <= max_grams, (participant, key)
            if stored.grams + grams == max_grams and grams:
                event("a grams cap filled up")
        if max_points is not None:
            assert stored.points + points <= max_points, (participant, key)


# --- 2. one real action, credited once --------------------------------------------------------


@FAST
@given(candidates=candidate_lists(), state=states())
def test_one_real_action_is_credited_once_across_partners(
    candidates: list[Candidate], state: State
) -> None:
    plan = _d(candidates, state)
    _record(plan)
    credits = _credits(plan)

    def twins(
        a_partner: uuid.UUID, a_at: dt.datetime, b_partner: uuid.UUID, b_at: dt.datetime
    ) -> bool:
        return a_partner != b_partner and abs(a_at - b_at) <= WINDOW

    for i, a in enumerate(credits):
        for b in credits[i + 1 :]:
            if (a.participant, a.action.action_type) == (b.participant, b.action.action_type):
                assert not twins(
                    a.partner_id, a.action.occurred_at, b.partner_id, b.action.occurred_at
                ), (a.event_id, b.event_id)
        for s in state.standing:
            if (a.participant, a.action.action_type) == (s.participant_id, s.action_type):
                assert not twins(a.partner_id, a.action.occurred_at, s.partner_id, s.occurred_at), (
                    a.event_id,
                    s.event_id,
                )

    seen: dict[int, tuple[uuid.UUID, uuid.UUID, str, dt.datetime]] = {
        s.event_id: (s.partner_id, s.participant_id, s.action_type, s.occurred_at)
        for s in state.standing
    }
    for d in plan.decisions:
        if d.status == DUPLICATE:
            assert d.participant is not None
            assert (d.grams, d.points) == (0, 0)
            assert d.duplicate_of in seen, d  # a standing credit or an earlier credit
            partner, participant, action_type, occurred = seen[d.duplicate_of]
            assert (participant, action_type) == (d.participant, d.action.action_type)
            assert twins(partner, occurred, d.partner_id, d.action.occurred_at)
        else:
            assert d.duplicate_of is None
        if d.status in CREDIT_STATUSES:
            assert d.participant is not None
            seen[d.event_id] = (
                d.partner_id,
                d.participant,
                d.action.action_type,
                d.action.occurred_at,
            )


# --- 3. totals and statuses -------------------------------------------------------------------


@FAST
@given(candidates=candidate_lists(), state=states())
def test_one_decision_per_candidate_and_totals_conserved(
    candidates: list[Candidate], state: State
) -> None:
    plan = _d(candidates, state)
    _record(plan)
    assert [d.event_id for d in plan.decisions] == [c.event_id for c in candidates]

    for c, d in zip(candidates, plan.decisions, strict=True):
        assert (d.partner_id, d.methodology, d.action) == (c.partner_id, c.methodology, c.action)
        assert d.grams >= 0
        assert d.points >= 0
        creditable = c.evaluation.status in CREDIT_STATUSES
        if not creditable:
            # Final whatever the subject: the evaluation's own status, nobody, nothing.
            assert d.status == c.evaluation.status
            assert d.status in {"ineligible", "implausible", "expired"}
            assert d.participant is None
            assert (d.grams, d.points) == (0, 0)
            assert not d.makes_credit
        elif c.participant is None:
            assert d.status == PENDING
            assert d.participant is None
            assert (d.grams, d.points) == (0, 0)
        else:
            assert d.status in {*CREDIT_STATUSES, DUPLICATE}
            assert d.participant == c.participant
            assert d.grams <= c.evaluation.grams
            assert d.points <= c.evaluation.points
        # pending iff no participant, for creditable evaluations
        assert (d.status == PENDING) == (creditable and c.participant is None)
        assert d.makes_credit == (d.status in CREDIT_STATUSES)
        assert d.posts == (d.makes_credit and (d.grams > 0 or d.points > 0))

    assert plan.credits == [d for d in plan.decisions if d.posts]
    # Per cap family, what the decisions credited is what usage_added adds up.
    by_family: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for d in _credits(plan):
        for key in _usage_keys(d):
            by_family[family(key)][0] += d.grams
            by_family[family(key)][1] += d.points
    added: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (_, key), (grams, points) in plan.usage_added.items():
        added[family(key)][0] += grams
        added[family(key)][1] += points
    assert {k: v for k, v in by_family.items() if v != [0, 0]} == dict(added)


# --- 4. batch independence ----------------------------------------------------------------------


def _after(state: State, plan: Plan) -> State:
    """The state the shell would load after committing `plan`."""
    usage = dict(state.usage)
    for slot, (grams, points) in plan.usage_added.items():
        used = usage.get(slot, Usage(0, 0))
        usage[slot] = Usage(used.grams + grams, used.points + points)
    standing = [
        *state.standing,
        *(
            StandingCredit(
                d.event_id, d.partner_id, d.participant, d.action.action_type, d.action.occurred_at
            )
            for d in plan.decisions
            if d.makes_credit and d.participant is not None
        ),
    ]
    return State(usage, standing)


@FAST
@given(
    candidates=candidate_lists(),
    state=states(),
    cuts=st.lists(st.integers(0, 30), max_size=4),
)
def test_the_outcome_does_not_depend_on_the_batch_that_carried_it(
    candidates: list[Candidate], state: State, cuts: list[int]
) -> None:
    whole = _d(candidates, state)
    _record(whole)

    bounds = sorted({0, len(candidates), *(c for c in cuts if c <= len(candidates))})
    decisions: list[Decision] = []
    added: dict[Slot, tuple[int, int]] = {}
    current = state
    for start, end in itertools.pairwise(bounds):
        part = _d(candidates[start:end], current)
        decisions.extend(part.decisions)
        for slot, (grams, points) in part.usage_added.items():
            g, p = added.get(slot, (0, 0))
            added[slot] = (g + grams, p + points)
        current = _after(current, part)

    assert decisions == whole.decisions
    assert added == whole.usage_added
    # One by one, as single-event requests would send them.
    current = state
    for c in candidates:
        part = _d([c], current)
        assert part.decisions == [whole.decisions[c.event_id - 1]]
        current = _after(current, part)


# --- 5. determinism ---------------------------------------------------------------------------


@FAST
@given(candidates=candidate_lists(), state=states())
def test_same_input_same_plan(candidates: list[Candidate], state: State) -> None:
    first = _d(candidates, state)
    again = _d(list(candidates), State(dict(state.usage), list(state.standing)))
    assert first == again
    assert first.usage_added == again.usage_added


# --- 6. recomputing gives the same numbers ------------------------------------------------------


@FAST
@given(candidates=candidate_lists(), state=states())
def test_a_credit_is_evaluate_with_the_usage_it_recorded(
    candidates: list[Candidate], state: State
) -> None:
    plan = _d(candidates, state)
    _record(plan)
    for d in _credits(plan):
        assert d.usage_before is not None
        usage = {key: Usage(g, p) for key, (g, p) in d.usage_before.items()}
        outcome = evaluate(d.methodology, d.action, usage)
        assert (outcome.status, outcome.grams, outcome.points) == (d.status, d.grams, d.points)
        assert d.reasons == tuple({"code": r.code, "message": r.message} for r in outcome.reasons)
        assert set(d.usage_before) == set(outcome.usage_keys)
        # The stored inputs read back (Decimals as fixed-point text) evaluate the same.
        assert d.inputs is not None
        assert d.inputs == {
            k: format(v, "f") if isinstance(v, Decimal) else v for k, v in outcome.inputs.items()
        }
        if d.status == "capped":
            event("capped, recomputed")
