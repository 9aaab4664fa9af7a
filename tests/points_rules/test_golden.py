"""Golden cases: every expected number is computed by hand from the cited figures."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from points_rules import (
    CAPPED,
    CREDITED,
    EXPIRED,
    IMPLAUSIBLE,
    INELIGIBLE,
    Action,
    InvalidActionError,
    Registry,
    Usage,
    evaluate,
)

CST = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2025, 3, 4, 8, 30, tzinfo=CST)


def act(
    action_type: str,
    region: str | None = None,
    at: dt.datetime = T0,
    delay: dt.timedelta = dt.timedelta(hours=2),
    **inputs: object,
) -> Action:
    return Action(action_type, at, at + delay, inputs, region)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("action", "grams", "points"),
    [
        # metro, Shenzhen 46.7 g/pkm: 12.345 km x 46.7 = 576.5115 g -> 576 g, 1 point/g -> 576
        (act("transit.metro", distance_m=Decimal(12345), duration_s=Decimal(1800)), 576, 576),
        # metro without distance: 1 trip x 170 g/trip (Wuhan 2024) = 170 g
        (act("transit.metro"), 170, 170),
        # Wuhan override: 10 km x 78.4 g/km = 784 g
        (act("transit.metro", "CN-HB-WH", distance_m=Decimal(10000)), 784, 784),
        # another Hubei city falls back to the national default: 10 km x 46.7 = 467 g
        (act("transit.metro", "CN-HB-XG", distance_m=Decimal(10000)), 467, 467),
        # bus, Shenzhen electric bus 26.9 g/pkm: 8 km x 26.9 = 215.2 g -> 215
        (act("transit.bus", distance_m=Decimal(8000), duration_s=Decimal(1500)), 215, 215),
        # bus without distance: 150 g/trip (Wuhan 2023)
        (act("transit.bus"), 150, 150),
        # bike share, Wuhan 2023 40 g/km: 3.25 km x 40 = 130 g (13 km/h)
        (act("mobility.bikeshare", distance_m=Decimal(3250), duration_s=Decimal(900)), 130, 130),
        # walking, Hubei 0.02 g/step: 8000 steps x 0.02 = 160 g
        (act("mobility.walk", steps=Decimal(8000), duration_s=Decimal(4800)), 160, 160),
        # waste, program choice 100 g/kg for recyclables: 2.5 kg x 100 = 250 g
        (act("waste.sorting", weight_g=Decimal(2500), category="recyclable"), 250, 250),
        # 1.234 kg x 100 g/kg = 123.4 g -> 123
        (act("waste.sorting", weight_g=Decimal("1234"), category="recyclable"), 123, 123),
        # behaviour scenarios: fixed points, zero grams
        (act("purchase.green_product", certified=True, amount_fen=5000), 0, 20),
        (act("purchase.secondhand", device="phone", channel="resale"), 0, 50),
        # electricity, national 0.5366 kg/kWh: (200 - 180) kWh x 0.5366 = 10.732 kg = 10732 g
        (
            act("energy.electricity_saving", kwh=Decimal(180), baseline_kwh=Decimal(200)),
            10732,
            10732,
        ),
        # Jiangxi, Central grid 0.5395 kg/kWh: 20 kWh x 0.5395 = 10.79 kg = 10790 g
        (
            act("energy.electricity_saving", "CN-JX", kwh=Decimal(180), baseline_kwh=Decimal(200)),
            10790,
            10790,
        ),
        # exactly at the 5% threshold: 10 kWh of 200 x 0.5366 = 5.366 kg = 5366 g
        (act("energy.electricity_saving", kwh=Decimal(190), baseline_kwh=Decimal(200)), 5366, 5366),
        # 12.5 kWh x 0.5366 = 6.7075 kg = 6707.5 g -> 6707
        (
            act("energy.electricity_saving", kwh=Decimal("187.5"), baseline_kwh=Decimal(200)),
            6707,
            6707,
        ),
    ],
)
def test_golden_credits(registry: Registry, action: Action, grams: int, points: int) -> None:
    outcome = registry.evaluate(action)
    assert (outcome.status, outcome.grams, outcome.points) == (CREDITED, grams, points)
    assert outcome.reasons == ()


@pytest.mark.parametrize(
    ("action", "status", "code"),
    [
        # 8 days > 7-day claim window
        (
            act("transit.metro", delay=dt.timedelta(days=8), distance_m=Decimal(5000)),
            EXPIRED,
            "claim_window_passed",
        ),
        # received an hour before it happened (beyond the 5-minute skew)
        (act("transit.metro", delay=-dt.timedelta(hours=1)), IMPLAUSIBLE, "occurred_in_future"),
        # 30 km in 10 minutes = 180 km/h > 120 km/h
        (
            act("transit.metro", distance_m=Decimal(30000), duration_s=Decimal(600)),
            IMPLAUSIBLE,
            "speed_implausible",
        ),
        (act("transit.metro", distance_m=Decimal(300000)), IMPLAUSIBLE, "input_out_of_range"),
        (act("transit.metro", distance_m=Decimal(400)), INELIGIBLE, "trip_too_short"),
        (act("mobility.bikeshare", distance_m=Decimal(3000)), INELIGIBLE, "input_missing"),
        # 10,000 steps in 1,000 s = 10 steps/s > 4
        (
            act("mobility.walk", steps=Decimal(10000), duration_s=Decimal(1000)),
            IMPLAUSIBLE,
            "cadence_implausible",
        ),
        (
            act("waste.sorting", weight_g=Decimal(2000), category="kitchen"),
            INELIGIBLE,
            "no_reduction",
        ),
        (
            act("waste.sorting", weight_g=Decimal(2000), category="glass"),
            INELIGIBLE,
            "unknown_category",
        ),
        (
            act("purchase.green_product", certified=False, amount_fen=5000),
            INELIGIBLE,
            "not_certified",
        ),
        # 8 kWh saved of 200 = 4% < 5%
        (
            act("energy.electricity_saving", kwh=Decimal(192), baseline_kwh=Decimal(200)),
            INELIGIBLE,
            "saving_below_threshold",
        ),
    ],
)
def test_golden_refusals(registry: Registry, action: Action, status: str, code: str) -> None:
    outcome = registry.evaluate(action)
    assert outcome.status == status
    assert (outcome.grams, outcome.points) == (0, 0)
    assert code in [r.code for r in outcome.reasons]
    assert all(r.message for r in outcome.reasons)


def test_not_in_force_before_effective_date(registry: Registry) -> None:
    metro = registry.select("transit.metro", T0)
    outcome = evaluate(metro, act("transit.metro", at=dt.datetime(2024, 12, 31, 23, 0, tzinfo=CST)))
    assert (outcome.status, outcome.reasons[0].code) == (INELIGIBLE, "not_in_force")


def test_daily_cap_partially_and_fully_reached(registry: Registry) -> None:
    action = act("transit.metro", distance_m=Decimal(12345))  # 576 g uncapped
    # daily cap 2000 g / 2000 points; 1800 used -> 200 left
    partial = registry.evaluate(action, {"transit.daily@2025-03-04": Usage(1800, 1800)})
    assert (partial.status, partial.grams, partial.points) == (CAPPED, 200, 200)
    assert partial.reasons[0].code == "cap_partial"
    assert (partial.uncapped_grams, partial.uncapped_points) == (576, 576)
    full = registry.evaluate(action, {"transit.daily@2025-03-04": Usage(2000, 2000)})
    assert (full.status, full.grams, full.points) == (CAPPED, 0, 0)
    assert full.reasons[0].code == "cap_reached"
    # usage of another day does not count
    other = registry.evaluate(action, {"transit.daily@2025-03-03": Usage(2000, 2000)})
    assert (other.status, other.grams) == (CREDITED, 576)


def test_points_only_cap_leaves_grams(registry: Registry) -> None:
    # monthly cap is 40,000 points (no grams limit); 39,900 used -> 100 points, grams intact
    outcome = registry.evaluate(
        act("transit.metro", distance_m=Decimal(12345)),
        {"transit.monthly@2025-03": Usage(0, 39900)},
    )
    assert (outcome.status, outcome.grams, outcome.points) == (CAPPED, 576, 100)


def test_group_cap_is_shared_by_metro_and_bus(registry: Registry) -> None:
    metro = registry.evaluate(act("transit.metro", distance_m=Decimal(12345)))
    bus = registry.evaluate(act("transit.bus", distance_m=Decimal(8000)))
    assert "transit.daily@2025-03-04" in metro.usage_keys
    assert "transit.daily@2025-03-04" in bus.usage_keys
    used = Usage(2000 - 100, 2000 - 100)
    capped = registry.evaluate(
        act("transit.bus", distance_m=Decimal(8000)), {"transit.daily@2025-03-04": used}
    )
    assert (capped.grams, capped.points) == (100, 100)


def test_walking_daily_cap(registry: Registry) -> None:
    # 20,000 steps x 0.02 = 400 g, cap 296 g a day (Ant Forest, weak source)
    outcome = registry.evaluate(
        act("mobility.walk", steps=Decimal(20000), duration_s=Decimal(14400))
    )
    assert (outcome.status, outcome.grams, outcome.points) == (CAPPED, 296, 296)


def test_behaviour_monthly_cap(registry: Registry) -> None:
    outcome = registry.evaluate(
        act("purchase.green_product", certified=True, amount_fen=5000),
        {"purchase.green_product.monthly@2025-03": Usage(0, 90)},
    )
    assert (outcome.status, outcome.grams, outcome.points) == (CAPPED, 0, 10)


def test_inputs_used_are_normalised(registry: Registry) -> None:
    outcome = registry.evaluate(act("transit.metro", distance_m=12345, ignored="x"))
    assert outcome.inputs == {"distance_m": Decimal(12345)}
    assert outcome.to_dict()["inputs"] == {"distance_m": "12345"}
    assert (outcome.methodology_id, outcome.methodology_version) == ("transit.metro", 1)


@pytest.mark.parametrize(
    "action",
    [
        act("transit.metro", distance_m=1234.5),  # float
        act("transit.metro", distance_m="1234"),  # text for a number
        act("waste.sorting", weight_g=Decimal(1), category=3),
        act("purchase.green_product", certified="yes", amount_fen=1),
        Action("transit.metro", dt.datetime(2025, 3, 4), dt.datetime(2025, 3, 4), {}),  # naive
    ],
)
def test_malformed_actions_raise(registry: Registry, action: Action) -> None:
    with pytest.raises(InvalidActionError):
        registry.evaluate(action)


def test_wrong_action_type_raises(registry: Registry) -> None:
    from points_rules import evaluate

    bus = registry.select("transit.bus", T0)
    with pytest.raises(InvalidActionError, match="does not match"):
        evaluate(bus, act("transit.metro"))
