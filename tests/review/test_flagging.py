"""The flag rules in memory: each flags what it should and not what it should not."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.review.flagging import Check, Trip, duration_of, evaluate
from service.review.rules import FlagRules as Rules
from service.review.rules import (
    IdentityChurnParams,
    InvalidRuleParams,
    OverlapParams,
    PartnerSurge,
    PartnerVolumeParams,
    TravelParams,
    VelocityParams,
    flag_rules,
    parse_params,
)

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
RIDER = uuid.uuid4()
PARTNER = uuid.uuid4()


def trip(
    event_id: int,
    minutes: float,
    *,
    duration_s: int | None = 600,
    region: str | None = "CN-JX",
    action_type: str = "transit.metro",
) -> Trip:
    return Trip(event_id, action_type, T0 + timedelta(minutes=minutes), duration_s, region)


def check(t: Trip, **changes: object) -> Check:
    fields: dict[str, object] = {
        "event_id": t.event_id,
        "participant": RIDER,
        "partner_id": PARTNER,
        "trip": t,
    }
    fields.update(changes)
    return Check(**fields)  # type: ignore[arg-type]


def rules_of(flagged: dict[int, list[object]], event_id: int) -> set[str]:
    return {hit.rule for hit in flagged.get(event_id, [])}  # type: ignore[attr-defined]


def test_no_rule_on_flags_nothing() -> None:
    checks = [check(trip(i, i)) for i in range(1, 50)]
    assert evaluate(Rules(), checks, {}) == {}


def test_velocity_flags_the_trip_that_exceeds_the_hour_and_not_the_ones_before() -> None:
    rules = Rules(velocity=VelocityParams(window_minutes=60, max_trips=3))
    # Four trips within an hour, each 10 minutes (600 s) long: the fourth is one too many.
    checks = [check(trip(i, 12 * i)) for i in range(1, 5)]
    flagged = evaluate(rules, checks, {})
    assert set(flagged) == {4}
    assert flagged[4][0].detail == {"trips": 4, "window_minutes": 60, "max_trips": 3}


def test_velocity_counts_stored_trips_and_ignores_other_actions_and_old_trips() -> None:
    rules = Rules(velocity=VelocityParams(window_minutes=60, max_trips=3))
    stored = [trip(1, -90), trip(2, -30), trip(3, -20)]  # the first is outside the hour
    other = [trip(4, -10, action_type="waste.sorting")]
    flagged = evaluate(rules, [check(trip(5, 0))], {RIDER: [*stored, *other]})
    assert flagged == {}
    flagged = evaluate(rules, [check(trip(6, 0))], {RIDER: [*stored, trip(7, -5)]})
    assert rules_of(flagged, 6) == {"velocity"}  # type: ignore[arg-type]


def test_velocity_sees_a_later_trip_sent_earlier() -> None:
    rules = Rules(velocity=VelocityParams(window_minutes=60, max_trips=2))
    stored = [trip(1, 10), trip(2, 20)]  # credited before, though they happened later
    assert rules_of(evaluate(rules, [check(trip(3, 0))], {RIDER: stored}), 3) == {"velocity"}  # type: ignore[arg-type]


def test_overlap_flags_overlapping_trips_only() -> None:
    rules = Rules(overlap=OverlapParams(tolerance_seconds=60))
    stored = [trip(1, 0, duration_s=1800)]  # 08:00 to 08:30
    assert evaluate(rules, [check(trip(2, 31))], {RIDER: stored}) == {}  # after it
    assert evaluate(rules, [check(trip(3, 29.5))], {RIDER: stored}) == {}  # within tolerance
    flagged = evaluate(rules, [check(trip(4, 10))], {RIDER: stored})
    assert rules_of(flagged, 4) == {"overlap"}  # type: ignore[arg-type]
    assert flagged[4][0].detail["other_credit_id"] == "1"
    # Without a duration a trip is an instant: nothing to overlap.
    assert (
        evaluate(
            rules, [check(trip(5, 10, duration_s=None))], {RIDER: [trip(1, 0, duration_s=None)]}
        )
        == {}
    )
    # Another participant's trip is no overlap.
    assert evaluate(rules, [check(trip(6, 10), participant=uuid.uuid4())], {RIDER: stored}) == {}


def test_travel_flags_two_regions_too_close_in_time() -> None:
    rules = Rules(travel=TravelParams(min_minutes_between_regions=60))
    stored = [trip(1, 0, duration_s=600, region="CN-JX")]  # ends 08:10
    flagged = evaluate(rules, [check(trip(2, 40, region="CN-HB"))], {RIDER: stored})
    assert rules_of(flagged, 2) == {"travel"}  # type: ignore[arg-type]
    assert flagged[2][0].detail["minutes_apart"] == 30
    assert evaluate(rules, [check(trip(3, 80, region="CN-HB"))], {RIDER: stored}) == {}
    assert evaluate(rules, [check(trip(4, 20, region="CN-JX"))], {RIDER: stored}) == {}
    assert evaluate(rules, [check(trip(5, 20, region=None))], {RIDER: stored}) == {}


def test_identity_churn_flags_a_card_shared_by_more_than_the_limit() -> None:
    rules = Rules(identity_churn=IdentityChurnParams(max_participants=2))
    assert evaluate(rules, [check(trip(1, 0), link_holders=2)], {}) == {}
    assert evaluate(rules, [check(trip(2, 0), link_holders=None)], {}) == {}
    flagged = evaluate(rules, [check(trip(3, 0), link_holders=3)], {})
    assert rules_of(flagged, 3) == {"identity_churn"}  # type: ignore[arg-type]


def test_partner_volume_flags_only_the_surging_partner() -> None:
    rules = Rules(
        partner_volume=PartnerVolumeParams(),
        surges={PARTNER: PartnerSurge(events_last_hour=9000, usual_per_hour=100)},
    )
    flagged = evaluate(rules, [check(trip(1, 0)), check(trip(2, 0), partner_id=uuid.uuid4())], {})
    assert set(flagged) == {1}
    assert flagged[1][0].detail["events_last_hour"] == 9000


def test_a_batch_flags_as_the_same_events_sent_one_by_one() -> None:
    rules = Rules(
        velocity=VelocityParams(max_trips=2),
        overlap=OverlapParams(),
        travel=TravelParams(),
    )
    trips = [trip(1, 0), trip(2, 5, region="CN-HB"), trip(3, 30), trip(4, 31)]
    at_once = evaluate(rules, [check(t) for t in trips], {})
    one_by_one: dict[int, list[object]] = {}
    stored: list[Trip] = []
    for t in trips:
        one_by_one.update(evaluate(rules, [check(t)], {RIDER: list(stored)}))
        stored.append(t)
    assert at_once == one_by_one


@given(st.lists(st.integers(min_value=0, max_value=600), min_size=1, max_size=30))
def test_velocity_never_flags_when_no_hour_holds_more_than_the_limit(minutes: list[int]) -> None:
    limit = 4
    rules = Rules(velocity=VelocityParams(window_minutes=60, max_trips=limit))
    checks = [check(trip(i + 1, m)) for i, m in enumerate(minutes)]
    flagged = evaluate(rules, checks, {})
    times = sorted(minutes)
    busiest = max(sum(1 for t in times if end - 60 < t <= end) for end in times)
    if busiest <= limit:
        assert flagged == {}
    else:
        assert flagged  # something in the busiest hour was flagged


def test_thresholds_are_checked() -> None:
    with pytest.raises(InvalidRuleParams):
        parse_params("velocity", {"max_trips": 0})
    with pytest.raises(InvalidRuleParams):
        parse_params("velocity", {"max_trips": 2.5})  # no floats
    with pytest.raises(InvalidRuleParams):
        parse_params("velocity", {"speed": 3})
    with pytest.raises(InvalidRuleParams):
        parse_params("no-such-rule", {})
    with pytest.raises(InvalidRuleParams):
        parse_params("velocity", {"action_types": ["transit.metro\x00"]})
    assert parse_params("velocity", {"max_trips": 5}).model_dump()["window_minutes"] == 60


def test_stored_rows_become_the_rules_in_force() -> None:
    rules = flag_rules(
        {"velocity": (True, {"max_trips": 5}), "overlap": (False, {})},
        {PARTNER: PartnerSurge(1, 1)},
    )
    assert rules.velocity is not None and rules.velocity.max_trips == 5
    assert rules.overlap is None and rules.travel is None
    assert rules.surges == {}  # the volume rule is off


def test_duration_is_read_from_integers_or_decimal_text() -> None:
    assert duration_of({"duration_s": 1500}) == 1500
    assert duration_of({"duration_s": "1500.5"}) == 1500
    assert duration_of({"duration_s": True}) is None
    assert duration_of({"duration_s": "abc"}) is None
    assert duration_of(None) is None


# --- the one-pass evaluation against the rules' plain definition ------------------------------


def _plain(rules: Rules, checks: list[Check], recent: dict[uuid.UUID, list[Trip]]) -> set[object]:
    """Each rule as its definition reads, trip against trip, no shortcut: the earliest other
    trip (by start, then id) that breaks overlap or travel, and the busiest velocity window."""
    found: set[object] = set()
    seen = {p: list(ts) for p, ts in recent.items()}
    for c in checks:
        t = c.trip
        others = sorted(
            (o for o in seen.get(c.participant, []) if o.event_id != t.event_id),
            key=lambda o: (o.occurred_at, o.event_id),
        )
        v = rules.velocity
        if v is not None and t.action_type in v.action_types and others:
            w = timedelta(minutes=v.window_minutes)
            times = sorted(
                [o.occurred_at for o in others if o.action_type in v.action_types] + [t.occurred_at]
            )
            most = max(
                (
                    sum(1 for x in times if end - w < x <= end)
                    for end in times
                    if t.occurred_at <= end <= t.occurred_at + w
                ),
                default=0,
            )
            if most > v.max_trips:
                found.add((c.event_id, "velocity", most))
        o_ = rules.overlap
        if o_ is not None and t.action_type in o_.action_types:
            tol = timedelta(seconds=o_.tolerance_seconds)
            hit = next(
                (
                    o
                    for o in others
                    if o.action_type in o_.action_types
                    and o.occurred_at < t.ends_at - tol
                    and t.occurred_at < o.ends_at - tol
                ),
                None,
            )
            if hit is not None:
                found.add((c.event_id, "overlap", hit.event_id))
        tr = rules.travel
        if tr is not None and t.action_type in tr.action_types and t.region is not None:
            least = timedelta(minutes=tr.min_minutes_between_regions)
            hit = next(
                (
                    o
                    for o in others
                    if o.region is not None
                    and o.region != t.region
                    and o.action_type in tr.action_types
                    and max(o.occurred_at - t.ends_at, t.occurred_at - o.ends_at) < least
                ),
                None,
            )
            if hit is not None:
                found.add((c.event_id, "travel", hit.event_id))
        seen.setdefault(c.participant, []).append(t)
    return found


def _found(flagged: dict[int, list[object]]) -> set[object]:
    out: set[object] = set()
    for event_id, hits in flagged.items():
        for hit in hits:
            rule, detail = hit.rule, hit.detail  # type: ignore[attr-defined]
            key = detail["trips"] if rule == "velocity" else int(detail["other_credit_id"])
            out.add((event_id, rule, key))
    return out


_trip_strategy = st.tuples(
    st.integers(min_value=0, max_value=720),  # start, minutes
    st.one_of(st.none(), st.integers(min_value=-100, max_value=30_000)),  # duration_s
    st.sampled_from(["CN-JX", "CN-HB", None]),
    st.sampled_from(["transit.metro", "transit.bus", "waste.sorting"]),
    st.booleans(),  # stored (True) or in the batch
    st.booleans(),  # which of two riders
)


@given(
    st.lists(_trip_strategy, min_size=1, max_size=25),
    st.integers(min_value=1, max_value=5),
    st.integers(min_value=1, max_value=120),
    st.integers(min_value=0, max_value=900),
    st.integers(min_value=1, max_value=300),
)
def test_one_pass_flags_exactly_what_the_definitions_flag(
    drawn: list[tuple[int, int | None, str | None, str, bool, bool]],
    max_trips: int,
    window: int,
    tolerance: int,
    gap: int,
) -> None:
    rules = Rules(
        velocity=VelocityParams(window_minutes=window, max_trips=max_trips),
        overlap=OverlapParams(tolerance_seconds=tolerance),
        travel=TravelParams(
            min_minutes_between_regions=gap, action_types=["transit.metro", "transit.bus"]
        ),
    )
    riders = [RIDER, uuid.uuid4()]
    recent: dict[uuid.UUID, list[Trip]] = {}
    checks: list[Check] = []
    for i, (start, duration, region, kind, is_stored, second) in enumerate(drawn, start=1):
        t = Trip(i, kind, T0 + timedelta(minutes=start), duration, region)
        if is_stored:
            recent.setdefault(riders[second], []).append(t)
        else:
            checks.append(check(t, participant=riders[second]))
    before = {p: list(ts) for p, ts in recent.items()}
    assert _found(evaluate(rules, checks, recent)) == _plain(rules, checks, recent)  # type: ignore[arg-type]
    assert recent == before  # read, never changed


@settings(max_examples=300)
@given(
    st.sampled_from(["velocity", "overlap", "travel"]),
    st.integers(min_value=1, max_value=400),
    st.booleans(),
    st.one_of(st.none(), st.integers(min_value=0, max_value=30_000)),
    st.one_of(st.none(), st.integers(min_value=0, max_value=30_000)),
    st.integers(min_value=1, max_value=1440),
)
def test_no_rule_reaches_past_the_lookback(
    rule: str,
    beyond: int,
    later: bool,
    stored_duration: int | None,
    duration: int | None,
    threshold: int,
) -> None:
    """The crediting path reads stored trips within `lookback_minutes` of an event: no rule
    may flag a trip that starts further away than that (each rule alone, so that another's
    reach does not hide it)."""
    rules = Rules(
        velocity=VelocityParams(window_minutes=threshold, max_trips=1)
        if rule == "velocity"
        else None,
        overlap=OverlapParams(tolerance_seconds=0) if rule == "overlap" else None,
        travel=TravelParams(min_minutes_between_regions=threshold) if rule == "travel" else None,
    )
    apart = (rules.lookback_minutes() + beyond) * (1 if later else -1)
    stored = Trip(1, "transit.metro", T0 + timedelta(minutes=apart), stored_duration, "A")
    flagged = evaluate(
        rules, [check(trip(2, 0, duration_s=duration, region="B"))], {RIDER: [stored]}
    )
    assert flagged == {}
