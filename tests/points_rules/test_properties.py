"""Property tests: non-negative, monotone, caps never exceeded, conservative, deterministic."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction
from math import floor

from hypothesis import given, settings
from hypothesis import strategies as st

from points_rules import Action, Usage, default_registry, evaluate, explain

REGISTRY = default_registry()
CST = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2025, 3, 4, 8, 30, tzinfo=CST)
FAST = settings(max_examples=60, deadline=None)

metres = st.decimals(min_value=0, max_value=200000, places=3, allow_nan=False, allow_infinity=False)


def run(action_type: str, region: str | None = None, **inputs: object):  # type: ignore[no-untyped-def]
    action = Action(action_type, T0, T0, inputs, region)  # type: ignore[arg-type]
    return REGISTRY.evaluate(action)


@FAST
@given(distance=metres)
def test_metro_rounding_is_conservative_and_exact(distance: Decimal) -> None:
    outcome = run("transit.metro", distance_m=distance)
    assert outcome.grams >= 0
    assert outcome.points >= 0
    if outcome.status == "credited":
        exact = Fraction(distance) / 1000 * Fraction("46.7")
        assert outcome.grams == floor(exact)  # the largest integer not above the exact value
        assert outcome.points == outcome.grams
        assert Fraction(outcome.exact_grams) == exact  # type: ignore[arg-type]


@FAST
@given(a=metres, b=metres, action_type=st.sampled_from(["transit.metro", "transit.bus"]))
def test_transit_monotone_in_distance(a: Decimal, b: Decimal, action_type: str) -> None:
    lo, hi = sorted((a, b))
    hi = min(hi, Decimal(150000))  # the bus's plausible maximum
    lo = min(lo, hi)
    g_lo, g_hi = run(action_type, distance_m=lo), run(action_type, distance_m=hi)
    assert 0 <= g_lo.grams <= g_hi.grams


@FAST
@given(a=st.integers(0, 60000), b=st.integers(0, 60000))
def test_bike_monotone_in_distance(a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    long_enough = Decimal(43200)
    g_lo = run("mobility.bikeshare", distance_m=lo, duration_s=long_enough)
    g_hi = run("mobility.bikeshare", distance_m=hi, duration_s=long_enough)
    assert 0 <= g_lo.grams <= g_hi.grams


@FAST
@given(
    a=st.integers(0, 50000),
    b=st.integers(0, 50000),
    category=st.sampled_from(["recyclable", "kitchen", "hazardous", "other"]),
)
def test_waste_monotone_in_weight(a: int, b: int, category: str) -> None:
    lo, hi = sorted((a, b))
    g_lo = run("waste.sorting", weight_g=lo, category=category)
    g_hi = run("waste.sorting", weight_g=hi, category=category)
    assert 0 <= g_lo.grams <= g_hi.grams
    if g_hi.status == "credited":  # 100 g/kg, program choice
        assert g_hi.grams == floor(Fraction(hi) / 1000 * 100)


@FAST
@given(
    baseline=st.integers(1, 5000),
    use_a=st.integers(0, 5000),
    use_b=st.integers(0, 5000),
    region=st.sampled_from([None, "CN-JX"]),
)
def test_electricity_monotone_in_kwh_saved(
    baseline: int, use_a: int, use_b: int, region: str | None
) -> None:
    # among plausible readings: using under 5% of the baseline is flagged implausible on purpose
    floor_use = -(-baseline * 5 // 100)
    use_a, use_b = max(use_a, floor_use), max(use_b, floor_use)
    more_use, less_use = sorted((use_a, use_b), reverse=True)
    low = run("energy.electricity_saving", region, kwh=more_use, baseline_kwh=baseline)
    high = run("energy.electricity_saving", region, kwh=less_use, baseline_kwh=baseline)
    assert 0 <= low.grams <= high.grams
    if high.status == "credited":
        factor = Fraction("0.5395") if region else Fraction("0.5366")
        assert high.grams == floor((baseline - less_use) * factor * 1000)


@FAST
@given(a=st.integers(0, 100000), b=st.integers(0, 100000))
def test_walk_monotone_in_steps(a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    day = Decimal(86400)
    assert (
        0
        <= run("mobility.walk", steps=lo, duration_s=day).grams
        <= run("mobility.walk", steps=hi, duration_s=day).grams
    )


trip = st.tuples(
    st.sampled_from(["transit.metro", "transit.bus", "purchase.green_product", "mobility.walk"]),
    st.integers(0, 90 * 86400),  # seconds after 2025-01-01
    st.integers(0, 60000),
)


@settings(max_examples=40, deadline=None)
@given(trips=st.lists(trip, min_size=1, max_size=60))
def test_caps_are_never_exceeded(trips: list[tuple[str, int, int]]) -> None:
    start = dt.datetime(2025, 1, 1, tzinfo=CST)
    usage: dict[str, Usage] = {}
    limits: dict[str, tuple[int | None, int | None]] = {}
    for action_type, offset, amount in trips:
        at = start + dt.timedelta(seconds=offset)
        inputs: dict[str, object]
        if action_type == "purchase.green_product":
            inputs = {"certified": True, "amount_fen": 1000 + amount}
        elif action_type == "mobility.walk":
            inputs = {"steps": amount, "duration_s": 86400}
        else:
            inputs = {"distance_m": amount} if amount % 7 else {}
        action = Action(action_type, at, at, inputs)  # type: ignore[arg-type]
        m = REGISTRY.select(action_type, at)
        outcome = evaluate(m, action, usage)
        assert outcome.grams >= 0
        assert outcome.points >= 0
        assert outcome.grams <= outcome.uncapped_grams
        assert outcome.points <= outcome.uncapped_points
        if not outcome.usage_keys:  # nothing credited, nothing to count
            assert (outcome.grams, outcome.points) == (0, 0)
            continue
        for cap, key in zip(m.caps, outcome.usage_keys, strict=True):
            limits[key] = (cap.max_grams, cap.max_points)
            used = usage.get(key, Usage(0, 0))
            usage[key] = Usage(used.grams + outcome.grams, used.points + outcome.points)
    for key, (max_grams, max_points) in limits.items():
        if max_grams is not None:
            assert usage[key].grams <= max_grams, key
        if max_points is not None:
            assert usage[key].points <= max_points, key


@FAST
@given(distance=metres, used=st.integers(0, 2500), received=st.integers(-3600, 9 * 86400))
def test_deterministic_and_explain_agrees(distance: Decimal, used: int, received: int) -> None:
    m = REGISTRY.select("transit.metro", T0)
    action = Action(
        "transit.metro", T0, T0 + dt.timedelta(seconds=received), {"distance_m": distance}
    )
    usage = {"transit.daily@2025-03-04": Usage(used, used)}
    first = evaluate(m, action, usage)
    assert first == evaluate(m, action, dict(usage))
    assert explain(m, action, usage).outcome == first
