"""explain(): the full trace regenerated from the methodology and stored inputs."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from points_rules import Action, Registry, Usage, evaluate, explain

CST = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2025, 3, 4, 8, 30, tzinfo=CST)


def test_trace_has_every_value_and_source(registry: Registry) -> None:
    action = Action(
        "transit.metro", T0, T0, {"distance_m": Decimal(12345), "duration_s": Decimal(1800)}
    )
    m = registry.select("transit.metro", T0)
    usage = {"transit.daily@2025-03-04": Usage(100, 100)}
    trace = explain(m, action, usage)
    assert trace.outcome == evaluate(m, action, usage)
    params = {p.name: p for p in trace.parameters}
    assert params["saving_per_km"].value == "46.7"
    assert params["saving_per_km"].unit == "g/km"
    assert "citysz.net" in params["saving_per_km"].source
    assert (params["saving_per_km"].region, params["saving_per_km"].year) == ("CN-GD-SZ", 2022)
    assert params["max_speed"].program_choice
    steps = {s.name: s for s in trace.steps}
    assert (steps["reduction"].value, steps["reduction"].unit) == ("576.5115", "g")
    assert all(c.passed for c in trace.checks)
    assert [c.usage_key for c in trace.caps] == [
        "transit.daily@2025-03-04",
        "transit.monthly@2025-03",
    ]
    assert trace.caps[0].used_grams == 100
    text = trace.render_text()
    assert "576.5115 g" in text
    assert "outcome: credited: 576 g CO2e, 576 points" in text
    assert m.content_hash in text
    data = json.loads(json.dumps(trace.to_dict()))
    assert data["outcome"]["grams"] == 576
    assert data["methodology"]["content_hash"] == m.content_hash


def test_trace_of_a_failed_check_shows_where_it_stopped(registry: Registry) -> None:
    action = Action(
        "energy.electricity_saving", T0, T0, {"kwh": Decimal(195), "baseline_kwh": Decimal(200)}
    )
    trace = explain(registry.select(action.action_type, T0), action)
    checks = {c.code: c.passed for c in trace.checks}
    assert checks == {"saving_implausible": True, "saving_below_threshold": False}
    assert trace.outcome.status == "ineligible"
    steps = {s.name: s.value for s in trace.steps}
    assert steps["saved_kwh"] == "5"
    assert "FAIL" in trace.render_text()


def test_behaviour_trace(registry: Registry) -> None:
    action = Action("purchase.secondhand", T0, T0, {"device": "phone", "channel": "recycling"})
    trace = explain(registry.select(action.action_type, T0), action)
    assert "50 points per action" in trace.points_rule
    assert (trace.outcome.grams, trace.outcome.points) == (0, 50)
