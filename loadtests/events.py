"""Realistic events for each partner, built with the SDK's `Event`.

- Metro trips: 1-30 km (median about 8 km), 20-55 km/h between stations plus 1-5 minutes in
  stations; bus trips: 0.8-15 km (median about 4 km) at 10-25 km/h plus 0-3 minutes at stops.
  Both happened within the last hour (a partner pushes its rush hour as it happens).
- Shared-bike rides (`mobility.bikeshare`, inputs ``distance_m`` and ``duration_s``): 0.1-8 km
  (median about 1.8 km) at 8-18 km/h, so about 3% are re-docking hops under 200 m that the
  methodology finds ineligible; ended within the last ten minutes.
- Monthly meter readings (`energy.electricity_saving`, inputs ``kwh`` and ``baseline_kwh``): a
  household's baseline (the same month a year earlier) of 120-650 kWh and this month at 80-105%
  of it, so most save something and about a third fall under the 5% threshold. The reading is
  dated the last day of the billing month (program time zone); a meter's reading for a month is
  derived from the meter and the month alone, so a re-send is byte-for-byte the same event.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from integrations import Event
from loadtests.common import BIKESHARE, TRANSIT, UTILITY, card_ref

PROGRAM_TZ = ZoneInfo("Asia/Shanghai")


def transit_trip(rng: random.Random, external_id: str, participant: int) -> Event:
    now = datetime.now(UTC)
    if rng.random() < 0.7:
        km = min(30.0, max(1.0, rng.lognormvariate(math.log(8.0), 0.6)))
        speed_kmh = rng.uniform(20.0, 55.0)
        dwell = rng.randint(60, 300)
        action, line = "transit.metro", f"station:M-{rng.randint(1, 180):03d}"
        other = f"station:M-{rng.randint(1, 180):03d}"
    else:
        km = min(15.0, max(0.8, rng.lognormvariate(math.log(4.0), 0.6)))
        speed_kmh = rng.uniform(10.0, 25.0)
        dwell = rng.randint(0, 180)
        action, line = "transit.bus", f"stop:B-{rng.randint(1, 900):04d}"
        other = f"stop:B-{rng.randint(1, 900):04d}"
    distance_m = int(km * 1000)
    duration_s = int(distance_m / (speed_kmh / 3.6)) + dwell
    occurred_at = now - timedelta(seconds=duration_s + rng.uniform(0, 3300))
    return Event(
        external_id=external_id,
        action_type=action,
        occurred_at=occurred_at.replace(microsecond=0),
        subject_ref=card_ref(TRANSIT, participant),
        quantities={"distance_m": distance_m, "duration_s": duration_s},
        place_ids=[line, other],
    )


def bike_ride(rng: random.Random, external_id: str, participant: int) -> Event:
    km = min(8.0, max(0.1, rng.lognormvariate(math.log(1.8), 0.7)))
    distance_m = int(km * 1000)
    duration_s = max(30, int(distance_m / (rng.uniform(8.0, 18.0) / 3.6)))
    ended = datetime.now(UTC) - timedelta(seconds=rng.uniform(5, 600))
    return Event(
        external_id=external_id,
        action_type="mobility.bikeshare",
        occurred_at=(ended - timedelta(seconds=duration_s)).replace(microsecond=0),
        subject_ref=card_ref(BIKESHARE, participant),
        quantities={"distance_m": distance_m, "duration_s": duration_s},
        place_ids=[f"dock:{rng.randint(1, 4000):05d}", f"dock:{rng.randint(1, 4000):05d}"],
    )


def billing_month(months_back: int, today: date | None = None) -> date:
    """The first day of the billing month `months_back` months before the current one."""
    today = today or datetime.now(PROGRAM_TZ).date()
    index = today.year * 12 + today.month - 1 - months_back
    return date(index // 12, index % 12 + 1, 1)


def meter_reading(run_id: str, meter: int, month: date) -> Event:
    """Meter `meter`'s reading for the billing month starting `month` (deterministic)."""
    rng = random.Random(f"{run_id}:{meter}:{month.isoformat()}")
    baseline = rng.randint(120, 650)
    used = Decimal(baseline * rng.randint(800, 1050)) / 1000
    next_month = billing_month(-1, month)
    last_day = next_month - timedelta(days=1)
    return Event(
        external_id=f"{run_id}-elec-{meter}-{month:%Y%m}",
        action_type="energy.electricity_saving",
        occurred_at=datetime.combine(last_day, time(23, 0), PROGRAM_TZ),
        subject_ref=card_ref(UTILITY, meter),
        quantities={"kwh": used.quantize(Decimal("0.1")), "baseline_kwh": baseline},
    )
