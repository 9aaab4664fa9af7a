"""The flag rules' settings: which rules run and their thresholds.

They live in the `review_rules` table (one row per rule, edited through the admin API and
audited); each process keeps a snapshot (`FlagRulesCache`), refreshed in the background every
few seconds, so the crediting path reads them without a round trip. Thresholds are integers
(no floats anywhere), range-checked here, the one place that says what each means.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.fields import plain_text

VELOCITY: Final = "velocity"
OVERLAP: Final = "overlap"
TRAVEL: Final = "travel"
IDENTITY_CHURN: Final = "identity_churn"
PARTNER_VOLUME: Final = "partner_volume"
RULES: Final = (VELOCITY, OVERLAP, TRAVEL, IDENTITY_CHURN, PARTNER_VOLUME)

_TRIPS = ["transit.bus", "transit.metro", "mobility.bikeshare"]
ActionTypes = Annotated[
    list[Annotated[str, plain_text(61, min_length=3)]], Field(min_length=1, max_length=32)
]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class VelocityParams(_Params):
    """More than `max_trips` trips of one participant within any `window_minutes`."""

    window_minutes: int = Field(default=60, ge=1, le=24 * 60)
    max_trips: int = Field(default=8, ge=1, le=1000)
    action_types: ActionTypes = Field(default_factory=lambda: list(_TRIPS))


class OverlapParams(_Params):
    """Two trips of one participant whose [occurred_at, occurred_at + duration_s] overlap by
    more than `tolerance_seconds` (a trip without `duration_s` cannot overlap)."""

    tolerance_seconds: int = Field(default=60, ge=0, le=3600)
    action_types: ActionTypes = Field(default_factory=lambda: list(_TRIPS))


class TravelParams(_Params):
    """Trips of one participant in two regions less than `min_minutes_between_regions`
    apart (end of one to start of the other). Events carry a region and station ids, not
    coordinates: a distance-based speed check needs the partners' place coordinates."""

    min_minutes_between_regions: int = Field(default=60, ge=1, le=24 * 60)
    action_types: ActionTypes = Field(default_factory=lambda: list(_TRIPS))


class IdentityChurnParams(_Params):
    """One partner identity (card, account) linked to more than `max_participants`
    different participants within `window_days`."""

    window_days: int = Field(default=30, ge=1, le=3650)
    max_participants: int = Field(default=2, ge=1, le=1000)


class PartnerVolumeParams(_Params):
    """A partner's events in the last hour above `multiplier_percent` % of its usual hourly
    volume (the mean over the `baseline_hours` before) and above `min_events_per_hour`."""

    multiplier_percent: int = Field(default=500, ge=101, le=100_000)
    min_events_per_hour: int = Field(default=500, ge=1, le=100_000_000)
    baseline_hours: int = Field(default=168, ge=2, le=24 * 90)


PARAMS: Final[Mapping[str, type[_Params]]] = {
    VELOCITY: VelocityParams,
    OVERLAP: OverlapParams,
    TRAVEL: TravelParams,
    IDENTITY_CHURN: IdentityChurnParams,
    PARTNER_VOLUME: PartnerVolumeParams,
}


class InvalidRuleParams(ValueError):
    """Thresholds a rule does not take (unknown name, wrong type, out of range)."""


def parse_params(rule: str, params: Mapping[str, Any]) -> _Params:
    """A rule's thresholds, validated; defaults fill what `params` leaves out."""
    model = PARAMS.get(rule)
    if model is None:
        raise InvalidRuleParams(f"no rule {rule!r}; rules: {', '.join(RULES)}")
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or rule}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidRuleParams(problems) from None


def default_params(rule: str) -> dict[str, Any]:
    return PARAMS[rule]().model_dump()


@dataclass(frozen=True, slots=True)
class PartnerSurge:
    """A partner whose last hour is far above its usual level."""

    events_last_hour: int
    usual_per_hour: int


@dataclass(frozen=True, slots=True)
class FlagRules:
    """The rules in force: a rule set to None is off. What the crediting path reads."""

    velocity: VelocityParams | None = None
    overlap: OverlapParams | None = None
    travel: TravelParams | None = None
    identity_churn: IdentityChurnParams | None = None
    partner_volume: PartnerVolumeParams | None = None
    surges: Mapping[uuid.UUID, PartnerSurge] = field(default_factory=dict)

    @property
    def any(self) -> bool:
        return any(
            r is not None
            for r in (
                self.velocity,
                self.overlap,
                self.travel,
                self.identity_churn,
                self.partner_volume,
            )
        )

    @property
    def needs_trips(self) -> bool:
        return any(r is not None for r in (self.velocity, self.overlap, self.travel))

    def trip_types(self) -> frozenset[str]:
        types: set[str] = set()
        for rule in (self.velocity, self.overlap, self.travel):
            if rule is not None:
                types.update(rule.action_types)
        return frozenset(types)

    def lookback_minutes(self) -> int:
        """How far from an event's start the start of a trip the rules compare it with can
        lie: velocity counts trips within its window either side; two trips overlap only if
        each starts before the other ends (a trip lasts at most MAX_TRIP_MINUTES); a travel
        gap runs from one trip's end to the other's start."""
        minutes = 0
        if self.velocity is not None:
            minutes = max(minutes, self.velocity.window_minutes)
        if self.overlap is not None:
            minutes = max(minutes, MAX_TRIP_MINUTES)
        if self.travel is not None:
            minutes = max(minutes, self.travel.min_minutes_between_regions + MAX_TRIP_MINUTES)
        return minutes


MAX_TRIP_MINUTES: Final = 6 * 60
"""The longest trip the overlap and travel rules take a duration at its word for."""

OFF: Final = FlagRules()


def flag_rules(
    rows: Mapping[str, tuple[bool, Mapping[str, Any]]], surges: Mapping[uuid.UUID, PartnerSurge]
) -> FlagRules:
    """The rules in force from the stored rows (rule -> (enabled, params)); a row whose
    params no longer validate is treated as its defaults."""
    chosen: dict[str, Any] = {}
    for rule in RULES:
        enabled, params = rows.get(rule, (False, {}))
        if not enabled:
            continue
        try:
            chosen[rule] = parse_params(rule, params)
        except InvalidRuleParams:
            chosen[rule] = PARAMS[rule]()
    return FlagRules(**chosen, surges=dict(surges) if PARTNER_VOLUME in chosen else {})
