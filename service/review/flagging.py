"""The flag rules, in memory: which of a set of credits look suspicious, and why.

The crediting path (`service.crediting.service`) loads, under the participants' locks and in
the statement that already reads their cap usage, the trips each participant made around the
events being credited; the claim statement returns how many participants linked each event's
partner identity lately; a partner's surge comes from the per-process snapshot of the rules
(`FlagRules.surges`). `evaluate` then decides with no I/O: the same inputs always flag the
same credits, and a batch flags as the same events sent one by one in that order would.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from service.review.rules import (
    IDENTITY_CHURN,
    MAX_TRIP_MINUTES,
    OVERLAP,
    PARTNER_VOLUME,
    TRAVEL,
    VELOCITY,
    FlagRules,
)


@dataclass(slots=True, eq=False)
class Trip:
    """A credited trip as the rules see it: when it started, how long it lasted, where.
    (Not frozen: a frozen dataclass's constructor costs several times more, and the crediting
    path builds one per credit and per stored trip.)"""

    event_id: int
    action_type: str
    occurred_at: datetime
    duration_s: int | None
    region: str | None
    ends_at: datetime = field(init=False)

    def __post_init__(self) -> None:
        seconds = min(self.duration_s or 0, MAX_TRIP_MINUTES * 60)
        self.ends_at = self.occurred_at + timedelta(seconds=max(seconds, 0))


@dataclass(slots=True, eq=False)
class Check:
    """One credit about to be posted, with what the rules need to know about it."""

    event_id: int
    participant: uuid.UUID
    partner_id: uuid.UUID
    trip: Trip
    link_holders: int | None = None
    """Participants who linked this event's partner identity within the churn window."""


@dataclass(frozen=True, slots=True)
class Hit:
    rule: str
    detail: dict[str, Any]

    def jsonable(self) -> dict[str, Any]:
        return {"rule": self.rule, **self.detail}


def duration_of(inputs: Mapping[str, Any] | None) -> int | None:
    """A trip's `duration_s` from an event's quantities or a credit's stored inputs (an
    integer, or exact decimal text); None when absent or unreadable."""
    if not inputs:
        return None
    value = inputs.get("duration_s")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).split(".", 1)[0]) if value is not None else None
    except ValueError:
        return None


def evaluate(
    rules: FlagRules,
    checks: Sequence[Check],
    recent: Mapping[uuid.UUID, Sequence[Trip]],
) -> dict[int, list[Hit]]:
    """The rules each check breaks (event id -> hits; only flagged events appear). Checks are
    taken in order; each is compared with the participant's stored trips and the checks
    before it."""
    flagged: dict[int, list[Hit]] = {}
    if not rules.any:
        return flagged
    seen: dict[uuid.UUID, list[Trip]] = defaultdict(list)
    for participant, trips in recent.items():
        seen[participant].extend(trips)
    trip_rules = rules.needs_trips
    for check in checks:
        hits: list[Hit] = []
        trip = check.trip
        # Alone in its windows (the common case), a trip breaks no trip rule: a velocity
        # limit is at least one trip.
        known = seen.get(check.participant) if trip_rules else None
        trips = [t for t in known if t.event_id != check.event_id] if known else []
        if trips:
            hits.extend(_trip_hits(rules, trip, trips))
        churn = rules.identity_churn
        if (
            churn is not None
            and check.link_holders is not None
            and check.link_holders > churn.max_participants
        ):
            hits.append(
                Hit(
                    IDENTITY_CHURN,
                    {
                        "participants": check.link_holders,
                        "max_participants": churn.max_participants,
                        "window_days": churn.window_days,
                    },
                )
            )
        surge = rules.surges.get(check.partner_id) if rules.partner_volume else None
        if surge is not None and rules.partner_volume is not None:
            hits.append(
                Hit(
                    PARTNER_VOLUME,
                    {
                        "events_last_hour": surge.events_last_hour,
                        "usual_per_hour": surge.usual_per_hour,
                        "multiplier_percent": rules.partner_volume.multiplier_percent,
                    },
                )
            )
        if hits:
            flagged[check.event_id] = hits
        if trip_rules:
            seen[check.participant].append(trip)
    return flagged


def _trip_hits(rules: FlagRules, trip: Trip, trips: Sequence[Trip]) -> list[Hit]:
    hits: list[Hit] = []
    ordered = sorted(trips, key=lambda t: (t.occurred_at, t.event_id))
    if rules.velocity is not None and trip.action_type in rules.velocity.action_types:
        hit = _velocity(rules, trip, ordered)
        if hit is not None:
            hits.append(hit)
    if rules.overlap is not None and trip.action_type in rules.overlap.action_types:
        hit = _overlap(rules, trip, ordered)
        if hit is not None:
            hits.append(hit)
    if rules.travel is not None and trip.action_type in rules.travel.action_types:
        hit = _travel(rules, trip, ordered)
        if hit is not None:
            hits.append(hit)
    return hits


def _velocity(rules: FlagRules, trip: Trip, others: Sequence[Trip]) -> Hit | None:
    assert rules.velocity is not None
    window = timedelta(minutes=rules.velocity.window_minutes)
    types = rules.velocity.action_types
    times = sorted([t.occurred_at for t in others if t.action_type in types] + [trip.occurred_at])
    # The busiest window of that length containing this trip: every window [end - w, end]
    # whose end is this trip or a later one within w.
    most = 0
    for end in times:
        if not trip.occurred_at <= end <= trip.occurred_at + window:
            continue
        count = sum(1 for t in times if end - window < t <= end)
        most = max(most, count)
    if most > rules.velocity.max_trips:
        return Hit(
            VELOCITY,
            {
                "trips": most,
                "window_minutes": rules.velocity.window_minutes,
                "max_trips": rules.velocity.max_trips,
            },
        )
    return None


def _overlap(rules: FlagRules, trip: Trip, others: Sequence[Trip]) -> Hit | None:
    assert rules.overlap is not None
    tolerance = timedelta(seconds=rules.overlap.tolerance_seconds)
    for other in others:
        if other.action_type not in rules.overlap.action_types:
            continue
        if (
            other.occurred_at < trip.ends_at - tolerance
            and trip.occurred_at < other.ends_at - tolerance
        ):
            overlap = min(trip.ends_at, other.ends_at) - max(trip.occurred_at, other.occurred_at)
            return Hit(
                OVERLAP,
                {
                    "other_credit_id": str(other.event_id),
                    "overlap_seconds": int(overlap.total_seconds()),
                    "tolerance_seconds": rules.overlap.tolerance_seconds,
                },
            )
    return None


def _travel(rules: FlagRules, trip: Trip, others: Sequence[Trip]) -> Hit | None:
    assert rules.travel is not None
    if trip.region is None:
        return None
    least = timedelta(minutes=rules.travel.min_minutes_between_regions)
    for other in others:
        if (
            other.region is None
            or other.region == trip.region
            or other.action_type not in rules.travel.action_types
        ):
            continue
        gap = max(other.occurred_at - trip.ends_at, trip.occurred_at - other.ends_at)
        if gap < least:
            return Hit(
                TRAVEL,
                {
                    "other_credit_id": str(other.event_id),
                    "regions": [other.region, trip.region],
                    "minutes_apart": max(int(gap.total_seconds() // 60), 0),
                    "min_minutes_between_regions": rules.travel.min_minutes_between_regions,
                },
            )
    return None
