"""`evaluate` is `apply_caps` over `evaluate_uncapped`: evaluating once, capping later, agrees.

The crediting path evaluates every action before it knows the subject's cap usage and caps it
afterwards (`service.crediting.decide`); this property is what makes that split safe.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from points_rules import (
    Action,
    Methodology,
    Usage,
    apply_caps,
    cap_windows,
    default_registry,
    evaluate,
    evaluate_uncapped,
)
from points_rules._methodology import InputSpec

REGISTRY = default_registry()
METHODOLOGIES = REGISTRY.methodologies
CST = dt.timezone(dt.timedelta(hours=8))
# Late in the month and the year, so the offsets below cross day, week, month and year caps.
BASE = dt.datetime(2025, 12, 30, 20, 0, tzinfo=CST)


def _number(spec: InputSpec) -> st.SearchStrategy[Any]:
    lo = int(spec.min) if spec.min is not None else 0
    hi = int(spec.max) if spec.max is not None else 1_000_000
    in_range = st.one_of(
        st.integers(lo, hi),
        st.decimals(min_value=lo, max_value=hi, places=3, allow_nan=False, allow_infinity=False),
    )
    # Mostly in range (credited, then capped), now and then just outside it (implausible).
    return _mostly(in_range, st.sampled_from([lo - 1, hi + 1]))


def _mostly(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.integers(0, 9).flatmap(lambda n: rare if n == 0 else usual)


def _value(spec: InputSpec) -> st.SearchStrategy[Any]:
    if spec.kind == "number":
        return _number(spec)
    if spec.kind == "integer":
        return _number(spec).map(int)
    if spec.kind == "category":
        return _mostly(st.sampled_from(sorted(spec.values)), st.just("not-a-category"))
    return st.booleans()


@st.composite
def cases(draw: st.DrawFn) -> tuple[Methodology, Action, dict[str, Usage]]:
    m = draw(st.sampled_from(METHODOLOGIES))
    inputs: dict[str, Any] = {}
    for spec in m.inputs:
        # A required input left out now and then: ineligible, and caps do not apply.
        if draw(st.integers(0, 9)) == 0 if spec.required else draw(st.booleans()):
            continue
        inputs[spec.name] = draw(_value(spec))
    occurred = BASE + dt.timedelta(minutes=draw(st.integers(-60 * 24 * 40, 60 * 24 * 40)))
    late = draw(
        _mostly(
            st.integers(0, 3600),
            # dated after it was received (beyond the clock skew: implausible), or reported
            # late (past some claim windows: expired)
            st.one_of(st.integers(-900, -1), st.integers(0, 70 * 86400)),
        )
    )
    action = Action(
        m.action_type, occurred, occurred + dt.timedelta(seconds=late), inputs, m.region
    )
    usage: dict[str, Usage] = {}
    for window in cap_windows(m, occurred):
        limit = max(window.max_grams or 0, window.max_points or 0)
        if draw(st.booleans()):
            # Near the limit (Hypothesis favours small draws), sometimes past it.
            grams, points = draw(st.integers(-100, limit)), draw(st.integers(-100, limit))
            usage[window.usage_key] = Usage(limit - grams, limit - points)
    if draw(st.booleans()):  # another period's usage must not matter
        usage["transit.daily@2024-01-01"] = Usage(10**6, 10**6)
    return m, action, usage


@settings(max_examples=300, deadline=None)
@given(case=cases())
def test_evaluate_is_apply_caps_of_evaluate_uncapped(
    case: tuple[Methodology, Action, dict[str, Usage]],
) -> None:
    m, action, usage = case
    uncapped = evaluate_uncapped(m, action)
    assert uncapped.status != "capped"
    assert (uncapped.uncapped_grams, uncapped.uncapped_points) == (
        (uncapped.grams, uncapped.points) if uncapped.status == "credited" else (0, 0)
    )
    assert evaluate(m, action, usage).to_dict() == apply_caps(m, uncapped, usage).to_dict()
    # Capping never raises an amount; with no usage at all it still agrees with `evaluate`.
    capped = apply_caps(m, uncapped, usage)
    event(capped.status)
    assert 0 <= capped.grams <= uncapped.grams
    assert 0 <= capped.points <= uncapped.points
    assert apply_caps(m, uncapped, {}).to_dict() == evaluate(m, action).to_dict()
