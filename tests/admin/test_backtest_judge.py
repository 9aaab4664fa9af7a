"""The back-test's judgement of an event without a credit, in memory (no database).

Property: for any metro trip, whatever crediting stored for it without a credit (the
evaluation's own status, or pending / expired / duplicate when the evaluation credited but
no one was linked or another partner's report came first), the version that judged it
reproduces that status, and a draft identical to it changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import event, given, settings
from hypothesis import strategies as st

from points_rules import Action, Methodology, evaluate_uncapped, parse_methodology
from service.crediting.decide import CREDIT_STATUSES, jsonable_inputs
from service.crediting.schemas import engine_inputs
from service.crediting.service import UncreditedEvent
from service.methodologies.backtest import judge_uncredited
from service.methodologies.service import library_sources

AT = datetime(2026, 11, 20, 4, tzinfo=UTC)
RIDER = uuid.UUID(int=7)


def _metro(**replacements: str) -> Methodology:
    source = dict(library_sources())["transit.metro.yaml"]
    for old, new in replacements.items():
        assert source.count(old) == 1
        source = source.replace(old, new, 1)
    return parse_methodology(source, "transit.metro.yaml")


V1 = _metro()
FASTER = _metro(**{"version: 1": "version: 2", "    value: 120\n": "    value: 200\n"})


def _event(
    status: str,
    quantities: dict[str, object],
    *,
    participant: uuid.UUID | None = RIDER,
    late: timedelta = timedelta(minutes=5),
) -> UncreditedEvent:
    return UncreditedEvent(
        event_id=1,
        participant_id=participant,
        action_type="transit.metro",
        occurred_at=AT,
        received_at=AT + late,
        region=None,
        methodology_id=V1.id,
        methodology_version=V1.version,
        quantities=jsonable_inputs(engine_inputs(quantities)),
        status=status,
        reasons=[],
    )


TOO_FAST = {"distance_m": "30000", "duration_s": "600"}  # 180 km/h


def test_a_rejection_the_version_reproduces_is_no_mismatch_and_the_draft_may_accept_it() -> None:
    judged = judge_uncredited(V1, FASTER, _event("implausible", TOO_FAST))
    assert (judged.in_force.status, judged.in_force.points, judged.mismatch) == (
        "implausible",
        0,
        False,
    )
    assert judged.draft_credits and judged.draft.status == "credited"
    assert judged.draft.points == 1401 and judged.draft.usage_keys


def test_a_draft_accepting_an_event_nobody_was_linked_to_leaves_it_pending() -> None:
    judged = judge_uncredited(V1, FASTER, _event("implausible", TOO_FAST, participant=None))
    assert not judged.draft_credits
    assert (judged.draft.status, judged.draft.points) == ("pending", 0)


def test_a_stored_status_the_version_does_not_reproduce_is_a_mismatch() -> None:
    # The version credits a normal trip: it cannot have been ineligible under it.
    normal = {"distance_m": "10000", "duration_s": "1800"}
    assert judge_uncredited(V1, V1, _event("ineligible", normal)).mismatch
    # Nor can a trip it finds implausible have waited for a link.
    assert judge_uncredited(V1, V1, _event("pending", TOO_FAST, participant=None)).mismatch


def test_a_reason_outside_the_methodology_is_kept_by_the_draft() -> None:
    normal = {"distance_m": "10000", "duration_s": "1800"}
    for status in ("pending", "expired", "duplicate"):
        judged = judge_uncredited(V1, FASTER, _event(status, normal))
        assert not judged.mismatch
        assert (judged.in_force.status, judged.draft.status, judged.draft_credits) == (
            status,
            status,
            False,
        )


def test_a_retracted_event_stays_retracted_unchecked() -> None:
    judged = judge_uncredited(V1, FASTER, _event("retracted", TOO_FAST))
    assert not judged.mismatch and not judged.draft_credits
    assert (judged.in_force.status, judged.draft.status) == ("retracted", "retracted")
    assert judged.in_force.points == judged.draft.points == 0


@settings(max_examples=300)
@given(
    distance=st.one_of(st.none(), st.integers(0, 200_000)),
    duration=st.one_of(st.none(), st.integers(1, 36_000)),
    late_minutes=st.integers(-10, 12 * 24 * 60),
    linked=st.booleans(),
    twin=st.booleans(),
    expired_unlinked=st.booleans(),
)
def test_the_version_in_force_reproduces_every_stored_outcome_without_a_credit(
    distance: int | None,
    duration: int | None,
    late_minutes: int,
    linked: bool,
    twin: bool,
    expired_unlinked: bool,
) -> None:
    quantities: dict[str, object] = {}
    if distance is not None:
        quantities["distance_m"] = Decimal(distance)
    if duration is not None:
        quantities["duration_s"] = Decimal(duration)
    late = timedelta(minutes=late_minutes)
    evaluation = evaluate_uncapped(V1, _action_of(_event("?", quantities, late=late)))
    # What crediting stores when it makes no credit (service.crediting.decide).
    if evaluation.status not in CREDIT_STATUSES:
        stored, participant = evaluation.status, None
    elif not linked:
        stored, participant = ("expired" if expired_unlinked else "pending"), None
    elif twin:
        stored, participant = "duplicate", RIDER
    else:
        return  # credited: the credits stream's case
    event(stored)
    judged_event = _event(stored, quantities, participant=participant, late=late)
    judged = judge_uncredited(V1, V1, judged_event)
    assert not judged.mismatch
    assert (judged.in_force.status, judged.in_force.grams, judged.in_force.points) == (stored, 0, 0)
    assert not judged.draft_credits
    assert (judged.draft.status, judged.draft.grams, judged.draft.points) == (stored, 0, 0)


def _action_of(event: UncreditedEvent) -> Action:
    return Action(
        action_type=event.action_type,
        occurred_at=event.occurred_at,
        received_at=event.received_at,
        inputs=engine_inputs(event.quantities),
        region=event.region,
    )
