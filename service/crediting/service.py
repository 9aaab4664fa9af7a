"""The crediting path: partner events to outcomes, exactly once, in one transaction a batch.

Per request (one event or a batch of up to 1,000), inside the request's transaction:

1. Each event is validated on its own; a bad one gets its own problem and its siblings go on.
2. Events are claimed by inserting them under the unique (partner, external id): a retry finds
   its original and gets the original outcome; the same id with other content is a conflict.
3. The methodology in force at `occurred_at` (by action type and region) evaluates it.
4. Subjects are resolved through identity links; an unlinked subject's event waits as
   `pending` for its claim window and is credited when the participant links it.
5. Under a per-participant lock (dedup and caps need it), cross-partner duplicates are found,
   caps are applied from the usage counters, and the credits go to the ledger as lots.

The transaction commits before the response is sent, so a 2xx means every outcome in it is
durable; Redis plays no part in it. Lock order, everywhere: event keys, participant locks,
ledger keys, ledger accounts.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from points_rules import (
    CAPPED,
    CREDITED,
    Action,
    InvalidActionError,
    Methodology,
    NoMethodologyError,
    Registry,
    Usage,
    cap_windows,
    evaluate,
)
from service.crediting import repository as repo
from service.crediting.schemas import EventIn, OutcomeOut, ReasonOut, engine_inputs
from service.errors import (
    ConflictError,
    NotFoundError,
    ProblemError,
    ServiceUnavailableError,
    ValidationProblem,
)
from service.ledger import service as ledger
from service.ledger.errors import AlreadyReversedError
from service.ledger.schemas import CreditRequest
from service.partners.auth import PartnerContext
from service.partners.credentials import subject_hash
from service.partners.errors import ActionTypeNotAllowedError

LEDGER_ORIGIN = "crediting"
_FINAL_WITHOUT_SUBJECT = frozenset({"ineligible", "implausible", "expired"})


class NoMethodologyProblem(ProblemError):
    status = 422
    slug = "no-methodology"
    title = "No methodology in force for this action"


class EventConflictError(ConflictError):
    slug = "event-conflict"
    title = "External id already used with different content"


class EventNotFoundError(NotFoundError):
    slug = "event-not-found"
    title = "Event not found"


class IdentityLinkedElsewhereError(ConflictError):
    slug = "identity-linked-elsewhere"
    title = "This partner identity is linked to another participant"


@dataclass(frozen=True, slots=True)
class CreditingSettings:
    pepper: str
    validity: timedelta
    # Two partners reporting the same person's same kind of action this close in time are
    # reporting one real-world action (a metro card system and a MaaS app).
    duplicate_window: timedelta = timedelta(minutes=5)


def _jsonable_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    # Fixed-point text ("1000", never "1E+3"), so the stored value reads back exactly.
    return {k: format(v, "f") if isinstance(v, Decimal) else v for k, v in inputs.items()}


def _content_hash(event: EventIn, subject: bytes) -> bytes:
    canonical = {
        "external_id": event.external_id,
        "action_type": event.action_type,
        "occurred_at": event.occurred_at.isoformat(),
        "subject": subject.hex(),
        "quantities": _jsonable_inputs(dict(event.quantities)),
        "region": event.region,
        "place_ids": event.place_ids,
    }
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).digest()


def _problem(external_id: str | None, error: ProblemError) -> OutcomeOut:
    return OutcomeOut(
        external_id=external_id or "",
        status="conflict" if isinstance(error, ConflictError) else "rejected",
        problem=error.to_problem(),
    )


def outcome_of(row: Any) -> OutcomeOut:
    """The outcome a partner sees, from the stored event row."""
    duplicate = None
    if row.duplicate_of is not None:
        duplicate = {"credit_id": str(row.duplicate_of)}
    credited = row.status in (CREDITED, CAPPED, "retracted") and row.participant_id is not None
    return OutcomeOut(
        external_id=row.external_id,
        status=row.status,
        grams=row.grams,
        points=row.points,
        credit_id=str(row.id) if credited else None,
        methodology_id=row.methodology_id,
        methodology_version=row.methodology_version,
        duplicate_of=duplicate,
        reasons=[ReasonOut(**r) for r in row.reasons],
        received_at=row.received_at,
    )


@dataclass(slots=True)
class _Pending:
    """An event on its way through one request."""

    index: int
    event: EventIn
    subject: bytes
    content: bytes
    methodology: Methodology
    action: Action
    status: str = "received"
    reasons: list[dict[str, str]] = field(default_factory=list)
    event_id: int = 0
    participant: uuid.UUID | None = None


@dataclass(slots=True)
class _ToCredit:
    event_id: int
    partner_id: uuid.UUID
    participant: uuid.UUID
    methodology: Methodology
    action: Action
    # Filled in by _credit:
    status: str = ""
    grams: int = 0
    points: int = 0
    reasons: list[dict[str, str]] = field(default_factory=list)
    duplicate_of: int | None = None
    transaction_id: int | None = None


async def ingest(
    session: AsyncSession,
    registry: Registry,
    settings: CreditingSettings,
    partner: PartnerContext,
    items: Sequence[EventIn | tuple[str | None, ProblemError]],
    received_at: datetime,
    *,
    known_subjects: Mapping[bytes, uuid.UUID] | None = None,
) -> list[OutcomeOut]:
    """Credit a request's events; one outcome per item, in order.

    `known_subjects` maps subject hashes to participants without an identity link: a
    claim voucher scanned by a signed-in participant names its subject that way.
    """
    results: list[OutcomeOut | None] = [None] * len(items)
    first: dict[str, _Pending] = {}
    repeats: list[_Pending] = []
    for index, item in enumerate(items):
        if isinstance(item, tuple):
            results[index] = _problem(item[0], item[1])
            continue
        try:
            pending = _prepare(registry, settings, partner, item, index, received_at)
        except ProblemError as error:
            results[index] = _problem(item.external_id, error)
            continue
        if pending.event.external_id in first:
            repeats.append(pending)
        else:
            first[pending.event.external_id] = pending

    await repo.announce_outcome_writer(session)
    claimed = await repo.claim_events(
        session,
        [
            {
                "partner_id": partner.partner_id,
                "external_id": p.event.external_id,
                "content_hash": p.content,
                "action_type": p.event.action_type,
                "occurred_at": p.event.occurred_at,
                "received_at": received_at,
                "subject_hash": p.subject,
                # The region the methodology was chosen for (the partner's, when the event
                # names none), so a release after linking chooses the same one.
                "region": p.action.region,
                "quantities": _jsonable_inputs(dict(p.event.quantities)),
                "place_ids": p.event.place_ids,
                "status": "received",
                "reasons": [],
            }
            for p in first.values()
        ],
    )
    seen_before = await repo.events_by_external_id(
        session, partner.partner_id, [x for x in first if x not in claimed]
    )
    for external_id, row in seen_before.items():
        pending = first[external_id]
        results[pending.index] = (
            outcome_of(row)
            if bytes(row.content_hash) == pending.content
            else _problem(external_id, _event_conflict(external_id))
        )

    fresh = [p for x, p in first.items() if x in claimed]
    for p in fresh:
        p.event_id = claimed[p.event.external_id][0]
    waiting = [p.subject for p in fresh if p.status not in _FINAL_WITHOUT_SUBJECT]
    await repo.lock_subjects(session, partner.partner_id, waiting)
    links = await repo.linked_participants(session, partner.partner_id, waiting)
    links.update(known_subjects or {})
    to_credit: list[_ToCredit] = []
    outcomes: list[dict[str, Any]] = []
    for p in fresh:
        if p.status in _FINAL_WITHOUT_SUBJECT:
            outcomes.append(_outcome_row(p.event_id, p.status, p.methodology, p.reasons))
            continue
        participant = links.get(p.subject)
        if participant is None:
            reasons = [
                {
                    "code": "subject_not_linked",
                    "message": "waiting for the participant to link this identity; "
                    f"credited if linked within the {p.methodology.claim_window.days}-day "
                    "claim window",
                }
            ]
            outcomes.append(_outcome_row(p.event_id, "pending", p.methodology, reasons))
            continue
        to_credit.append(
            _ToCredit(p.event_id, partner.partner_id, participant, p.methodology, p.action)
        )
    await _credit(session, settings, to_credit, now=received_at)
    outcomes.extend(_credited_row(c) for c in to_credit)
    await repo.record_outcomes(session, outcomes)

    stored = await repo.events_by_id(session, [p.event_id for p in fresh])
    for p in fresh:
        results[p.index] = outcome_of(stored[p.event_id])
    by_external = {p.event.external_id: p for p in first.values()}
    for repeat in repeats:
        original = by_external[repeat.event.external_id]
        outcome = results[original.index]
        results[repeat.index] = (
            outcome
            if repeat.content == original.content and outcome is not None
            else _problem(repeat.event.external_id, _event_conflict(repeat.event.external_id))
        )
    return [r for r in results if r is not None]


def _event_conflict(external_id: str) -> EventConflictError:
    return EventConflictError(
        f"external id {external_id!r} was first sent with different content; "
        "a retry must resend exactly the same event"
    )


def _prepare(
    registry: Registry,
    settings: CreditingSettings,
    partner: PartnerContext,
    event: EventIn,
    index: int,
    received_at: datetime,
) -> _Pending:
    if event.action_type not in partner.allowed_action_types:
        raise ActionTypeNotAllowedError(
            f"{partner.code} may report {', '.join(sorted(partner.allowed_action_types))}, "
            f"not {event.action_type}"
        )
    region = event.region or partner.region
    try:
        methodology = registry.select(event.action_type, event.occurred_at, region)
    except NoMethodologyError as exc:
        raise NoMethodologyProblem(str(exc)) from None
    action = Action(
        action_type=event.action_type,
        occurred_at=event.occurred_at,
        received_at=received_at,
        inputs=event.engine_inputs(),
        region=region,
    )
    try:
        preview = evaluate(methodology, action, {})
    except InvalidActionError as exc:
        raise ValidationProblem(str(exc)) from None
    subject = subject_hash(settings.pepper, partner.partner_id, event.subject_ref)
    pending = _Pending(index, event, subject, _content_hash(event, subject), methodology, action)
    if preview.status not in (CREDITED, CAPPED):
        pending.status = preview.status
        pending.reasons = [{"code": r.code, "message": r.message} for r in preview.reasons]
    return pending


def _outcome_row(
    event_id: int,
    status: str,
    methodology: Methodology,
    reasons: list[dict[str, str]],
    participant: uuid.UUID | None = None,
) -> dict[str, Any]:
    return {
        "id": event_id,
        "status": status,
        "participant_id": participant,
        "methodology_id": methodology.id,
        "methodology_version": methodology.version,
        "grams": 0,
        "points": 0,
        "reasons": reasons,
        "duplicate_of": None,
        "credit_transaction_id": None,
    }


def _credited_row(item: _ToCredit) -> dict[str, Any]:
    row = _outcome_row(item.event_id, item.status, item.methodology, item.reasons, item.participant)
    row.update(
        grams=item.grams,
        points=item.points,
        duplicate_of=item.duplicate_of,
        credit_transaction_id=item.transaction_id,
    )
    return row


async def _credit(
    session: AsyncSession, settings: CreditingSettings, items: list[_ToCredit], *, now: datetime
) -> None:
    """Dedup, caps and the ledger for events whose participant is known (fills `items`)."""
    if not items:
        return
    participants = [item.participant for item in items]
    await repo.lock_participants(session, participants)

    window = settings.duplicate_window
    nearby: dict[tuple[uuid.UUID, str], list[Any]] = defaultdict(list)
    for credit_row in await repo.nearby_credits(
        session,
        participants,
        [item.action.action_type for item in items],
        min(item.action.occurred_at for item in items) - window,
        max(item.action.occurred_at for item in items) + window,
    ):
        nearby[(credit_row.participant_id, credit_row.action_type)].append(credit_row)
    keys_by_item = [
        [w.usage_key for w in cap_windows(item.methodology, item.action.occurred_at)]
        for item in items
    ]
    counters = await repo.usage(
        session, participants, [key for keys in keys_by_item for key in keys]
    )
    current: dict[tuple[uuid.UUID, str], list[int]] = {k: list(v) for k, v in counters.items()}
    deltas: dict[tuple[uuid.UUID, str], list[int]] = defaultdict(lambda: [0, 0])
    credits: list[dict[str, Any]] = []
    requests: list[CreditRequest] = []
    for item, keys in zip(items, keys_by_item, strict=True):
        twin = _duplicate_of(item, nearby, window)
        if twin is not None:
            item.status, item.duplicate_of = "duplicate", twin
            item.reasons = [
                {
                    "code": "duplicate",
                    "message": f"the same action was already credited as credit {twin}, "
                    "reported by another partner",
                }
            ]
            continue
        # Copied: `current` moves on as the batch is credited; the credit keeps its "before".
        before = {k: tuple(current.get((item.participant, k), (0, 0))) for k in keys}
        try:
            outcome = evaluate(
                item.methodology, item.action, {k: Usage(g, p) for k, (g, p) in before.items()}
            )
        except InvalidActionError as exc:
            item.status = "ineligible"
            item.reasons = [{"code": "invalid_input", "message": str(exc)}]
            continue
        item.status, item.grams, item.points = outcome.status, outcome.grams, outcome.points
        item.reasons = [{"code": r.code, "message": r.message} for r in outcome.reasons]
        if outcome.status not in (CREDITED, CAPPED):
            continue
        for key in outcome.usage_keys:
            slot = current.setdefault((item.participant, key), [0, 0])
            slot[0] += outcome.grams
            slot[1] += outcome.points
            deltas[(item.participant, key)][0] += outcome.grams
            deltas[(item.participant, key)][1] += outcome.points
        credits.append(
            {
                "event_id": item.event_id,
                "participant_id": item.participant,
                "partner_id": item.partner_id,
                "action_type": item.action.action_type,
                "occurred_at": item.action.occurred_at,
                "received_at": item.action.received_at,
                "region": item.action.region,
                "methodology_id": item.methodology.id,
                "methodology_version": item.methodology.version,
                "inputs": _jsonable_inputs(outcome.inputs),
                "usage_before": {k: list(v) for k, v in before.items()},
                "status": outcome.status,
                "grams": outcome.grams,
                "points": outcome.points,
            }
        )
        # A later event of the same batch must see this one for dedup, like a stored credit.
        nearby[(item.participant, item.action.action_type)].append(
            _Nearby(item.event_id, item.partner_id, item.participant, item.action)
        )
        if outcome.grams or outcome.points:
            requests.append(
                CreditRequest(
                    origin=LEDGER_ORIGIN,
                    key=f"event:{item.event_id}",
                    participant_id=item.participant,
                    points=outcome.points,
                    grams=outcome.grams,
                    expires_at=now + settings.validity,
                    credit_id=str(item.event_id),
                    methodology_id=item.methodology.id,
                    methodology_version=item.methodology.version,
                )
            )
    results = await ledger.credit(session, requests, now=now) if requests else []
    by_event = {
        int(request.key.split(":", 1)[1]): result.transaction_id
        for request, result in zip(requests, results, strict=True)
    }
    for item in items:
        item.transaction_id = by_event.get(item.event_id)
    for credit in credits:
        credit["transaction_id"] = by_event.get(credit["event_id"])
    await repo.insert_credits(session, credits)
    await repo.add_usage(session, deltas)


@dataclass(frozen=True, slots=True)
class _Nearby:
    event_id: int
    partner_id: uuid.UUID
    participant_id: uuid.UUID
    _action: Action

    @property
    def action_type(self) -> str:
        return self._action.action_type

    @property
    def occurred_at(self) -> datetime:
        return self._action.occurred_at


def _duplicate_of(
    item: _ToCredit, nearby: dict[tuple[uuid.UUID, str], list[Any]], window: timedelta
) -> int | None:
    for other in nearby.get((item.participant, item.action.action_type), ()):
        if (
            other.partner_id != item.partner_id
            and abs(other.occurred_at - item.action.occurred_at) <= window
        ):
            return int(other.event_id)
    return None


# --- after the fact: reading, linking, retracting ------------------------------------------


async def get_outcome(
    session: AsyncSession, partner: PartnerContext, external_id: str
) -> OutcomeOut:
    rows = await repo.events_by_external_id(session, partner.partner_id, [external_id])
    if external_id not in rows:
        raise EventNotFoundError(f"no event {external_id!r} from {partner.code}")
    return outcome_of(rows[external_id])


async def list_outcomes(
    session: AsyncSession, partner: PartnerContext, after: int, limit: int
) -> tuple[list[OutcomeOut], int | None]:
    """Outcomes changed after cursor `after`, oldest change first; and the next cursor."""
    rows = await repo.outcomes_after(session, partner.partner_id, after, limit)
    next_cursor = rows[-1].outcome_seq if len(rows) == limit else None
    return [outcome_of(row) for row in rows], next_cursor


async def link_identity(
    session: AsyncSession,
    registry: Registry,
    settings: CreditingSettings,
    *,
    participant_id: uuid.UUID,
    partner_id: uuid.UUID,
    subject_ref: str,
    now: datetime,
) -> list[OutcomeOut]:
    """Link a partner identity to a participant and release the credits waiting for it."""
    subject = subject_hash(settings.pepper, partner_id, subject_ref)
    await repo.lock_subjects(session, partner_id, [subject])
    await repo.announce_outcome_writer(session)
    inserted = await repo.insert_link(
        session,
        {"participant_id": participant_id, "partner_id": partner_id, "subject_hash": subject},
    )
    if not inserted:
        existing = await repo.active_link(session, partner_id, subject)
        if existing is not None and existing.participant_id != participant_id:
            raise IdentityLinkedElsewhereError(
                "unlink it from the other account first, or contact support"
            )
    waiting = await repo.pending_for_subject(session, partner_id, subject)
    to_credit: list[_ToCredit] = []
    outcomes: list[dict[str, Any]] = []
    for row in waiting:
        try:
            methodology = registry.select(row.action_type, row.occurred_at, row.region)
        except NoMethodologyError:
            methodology = registry.get(row.methodology_id, row.methodology_version)
        if now > row.occurred_at + methodology.claim_window:
            reasons = [
                {
                    "code": "claim_window_passed",
                    "message": "the identity was linked after the claim window closed",
                }
            ]
            outcomes.append(_outcome_row(row.id, "expired", methodology, reasons, participant_id))
            continue
        action = Action(
            action_type=row.action_type,
            occurred_at=row.occurred_at,
            received_at=row.received_at,
            inputs=engine_inputs(row.quantities),
            region=row.region,
        )
        to_credit.append(_ToCredit(row.id, partner_id, participant_id, methodology, action))
    await _credit(session, settings, to_credit, now=now)
    outcomes.extend(_credited_row(c) for c in to_credit)
    await repo.record_outcomes(session, outcomes)
    stored = await repo.events_by_id(session, [row.id for row in waiting])
    return [outcome_of(stored[row.id]) for row in waiting]


async def expire_pending(
    session: AsyncSession, registry: Registry, *, now: datetime, batch_size: int = 500
) -> int:
    """Close pending events whose claim window passed unlinked; returns how many."""
    expired: list[dict[str, Any]] = []
    await repo.announce_outcome_writer(session)
    for row in await repo.oldest_pending(session, batch_size):
        methodology = registry.get(row.methodology_id, row.methodology_version)
        if now <= row.occurred_at + methodology.claim_window:
            continue
        reasons = [
            {
                "code": "claim_window_passed",
                "message": "no participant linked this identity within the claim window",
            }
        ]
        expired.append(_outcome_row(row.id, "expired", methodology, reasons))
    await repo.record_outcomes(session, expired)
    return len(expired)


async def retract(
    session: AsyncSession,
    registry: Registry,
    partner: PartnerContext,
    external_id: str,
    reason: str,
) -> OutcomeOut:
    """Take an event back: its credit is reversed through the ledger, its cap room freed."""
    row = await repo.lock_event(session, partner.partner_id, external_id)
    if row is None:
        raise EventNotFoundError(f"no event {external_id!r} from {partner.code}")
    if row.status == "retracted":
        return outcome_of(row)
    await repo.announce_outcome_writer(session)
    if row.credit_transaction_id is not None and row.participant_id is not None:
        await repo.lock_participants(session, [row.participant_id])
        # Reversed already by another path (a fraud review): the retraction still stands.
        with contextlib.suppress(AlreadyReversedError):
            await ledger.reverse_credit(
                session,
                origin=LEDGER_ORIGIN,
                key=f"retract:{row.id}",
                credit_id=row.credit_transaction_id,
                reason=reason,
            )
        try:
            methodology = registry.get(row.methodology_id, row.methodology_version)
        except NoMethodologyError:
            # Filed moments ago by another process; this one's cache catches up within seconds.
            error = ServiceUnavailableError("methodology cache refreshing; retry shortly")
            error.headers["retry-after"] = "5"
            raise error from None
        keys = [w.usage_key for w in cap_windows(methodology, row.occurred_at)]
        await repo.subtract_usage(session, row.participant_id, keys, row.grams, row.points)
    reasons = [
        *row.reasons,
        {"code": "retracted", "message": f"retracted by the partner: {reason}"},
    ]
    await repo.record_outcomes(
        session,
        [
            {
                "id": row.id,
                "status": "retracted",
                "participant_id": row.participant_id,
                "methodology_id": row.methodology_id,
                "methodology_version": row.methodology_version,
                "grams": row.grams,
                "points": row.points,
                "reasons": reasons,
                "duplicate_of": row.duplicate_of,
                "credit_transaction_id": row.credit_transaction_id,
            }
        ],
    )
    stored = await repo.events_by_id(session, [row.id])
    return outcome_of(stored[row.id])
