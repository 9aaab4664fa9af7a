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
from dataclasses import dataclass
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


class Trip:
    """A credited trip as the rules see it: when it started, when it ended (its start plus
    `duration_s`, capped at `MAX_TRIP_MINUTES`; an instant without one), where.

    A plain class with slots: the crediting path builds one per credit and per stored trip,
    and a dataclass's constructor (with `__post_init__`) costs about twice as much. Stored
    trips come with `ends_at` already worked out by the statement that reads them.
    """

    __slots__ = ("action_type", "duration_s", "ends_at", "event_id", "occurred_at", "region")

    def __init__(
        self,
        event_id: int,
        action_type: str,
        occurred_at: datetime,
        duration_s: int | None,
        region: str | None,
        ends_at: datetime | None = None,
    ) -> None:
        self.event_id = event_id
        self.action_type = action_type
        self.occurred_at = occurred_at
        self.duration_s = duration_s
        self.region = region
        if ends_at is None:
            seconds = min(duration_s or 0, MAX_TRIP_MINUTES * 60)
            ends_at = occurred_at + timedelta(seconds=seconds) if seconds > 0 else occurred_at
        self.ends_at = ends_at

    def __repr__(self) -> str:
        return (
            f"Trip({self.event_id}, {self.action_type!r}, {self.occurred_at.isoformat()},"
            f" ends {self.ends_at.isoformat()}, {self.region!r})"
        )


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
    before it. `recent` is read, never changed.

    The crediting path runs this for every credit, so each check makes one pass over the
    participant's trips: it counts the velocity rule's trips (the busiest window is worked
    out only when there are more trips than the rule allows at all), and keeps the earliest
    trip each of the overlap and travel rules finds.
    """
    flagged: dict[int, list[Hit]] = {}
    if not rules.any:
        return flagged
    trip_rules = rules.needs_trips
    velocity, overlap, travel = rules.velocity, rules.overlap, rules.travel
    velocity_types = frozenset(velocity.action_types) if velocity else frozenset()
    overlap_types = frozenset(overlap.action_types) if overlap else frozenset()
    travel_types = frozenset(travel.action_types) if travel else frozenset()
    tolerance = timedelta(seconds=overlap.tolerance_seconds) if overlap else timedelta()
    least_gap = timedelta(minutes=travel.min_minutes_between_regions) if travel else timedelta()
    churn = rules.identity_churn
    surges = rules.surges if rules.partner_volume else {}
    # This batch's trips so far, per participant (`recent` stays as it was given).
    batch: dict[uuid.UUID, list[Trip]] = defaultdict(list)
    no_trips: Sequence[Trip] = ()
    for check in checks:
        hits: list[Hit] = []
        trip = check.trip
        if trip_rules:
            known = recent.get(check.participant, no_trips)
            earlier = batch.get(check.participant, no_trips)
            # Alone in its windows (the common case), a trip breaks no trip rule: a velocity
            # limit is at least one trip.
            if known or earlier:
                hits.extend(
                    _trip_hits(
                        rules,
                        trip,
                        (known, earlier),
                        velocity_types,
                        overlap_types,
                        travel_types,
                        tolerance,
                        least_gap,
                    )
                )
            batch[check.participant].append(trip)
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
        surge = surges.get(check.partner_id) if surges else None
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
    return flagged


def _earlier(a: Trip, b: Trip | None) -> bool:
    """Whether `a` comes before `b` (by start, then event id): the trip a hit names."""
    return b is None or (a.occurred_at, a.event_id) < (b.occurred_at, b.event_id)


def _trip_hits(
    rules: FlagRules,
    trip: Trip,
    groups: tuple[Sequence[Trip], Sequence[Trip]],
    velocity_types: frozenset[str],
    overlap_types: frozenset[str],
    travel_types: frozenset[str],
    tolerance: timedelta,
    least_gap: timedelta,
) -> list[Hit]:
    """The trip rules `trip` breaks against the participant's other trips, in one pass."""
    kind = trip.action_type
    by_velocity = kind in velocity_types
    by_overlap = kind in overlap_types
    by_travel = kind in travel_types and trip.region is not None
    start, end, region, event_id = trip.occurred_at, trip.ends_at, trip.region, trip.event_id
    counted: list[datetime] = []
    overlapping: Trip | None = None
    elsewhere: Trip | None = None
    for group in groups:
        for other in group:
            if other.event_id == event_id:
                continue
            other_kind = other.action_type
            if by_velocity and other_kind in velocity_types:
                counted.append(other.occurred_at)
            if (
                by_overlap
                and other_kind in overlap_types
                and other.occurred_at < end - tolerance
                and start < other.ends_at - tolerance
                and _earlier(other, overlapping)
            ):
                overlapping = other
            if (
                by_travel
                and other.region is not None
                and other.region != region
                and other_kind in travel_types
                and max(other.occurred_at - end, start - other.ends_at) < least_gap
                and _earlier(other, elsewhere)
            ):
                elsewhere = other
    hits: list[Hit] = []
    velocity = rules.velocity
    # No window can hold more trips than there are: only then is the busiest one worth finding.
    if velocity is not None and by_velocity and len(counted) + 1 > velocity.max_trips:
        most = _busiest(start, counted, timedelta(minutes=velocity.window_minutes))
        if most > velocity.max_trips:
            hits.append(
                Hit(
                    VELOCITY,
                    {
                        "trips": most,
                        "window_minutes": velocity.window_minutes,
                        "max_trips": velocity.max_trips,
                    },
                )
            )
    if overlapping is not None and rules.overlap is not None:
        overlap = min(end, overlapping.ends_at) - max(start, overlapping.occurred_at)
        hits.append(
            Hit(
                OVERLAP,
                {
                    "other_credit_id": str(overlapping.event_id),
                    "overlap_seconds": int(overlap.total_seconds()),
                    "tolerance_seconds": rules.overlap.tolerance_seconds,
                },
            )
        )
    if elsewhere is not None and rules.travel is not None:
        gap = max(elsewhere.occurred_at - end, start - elsewhere.ends_at)
        hits.append(
            Hit(
                TRAVEL,
                {
                    "other_credit_id": str(elsewhere.event_id),
                    "regions": [elsewhere.region, region],
                    "minutes_apart": max(int(gap.total_seconds() // 60), 0),
                    "min_minutes_between_regions": rules.travel.min_minutes_between_regions,
                },
            )
        )
    return hits


def _busiest(at: datetime, others: list[datetime], window: timedelta) -> int:
    """The most trips in a window of this length that contains the trip at `at`: every
    window [end - window, end] whose end is this trip or a later one within `window`."""
    times = sorted([*others, at])
    most = 0
    for end in times:
        if not at <= end <= at + window:
            continue
        count = sum(1 for t in times if end - window < t <= end)
        most = max(most, count)
    return most
