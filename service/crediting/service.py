"""The crediting path: partner events to outcomes, exactly once, in one transaction a request
(a batch) or a group of requests (single events, `group_commit`).

The imperative shell around the functional core in `decide.py`:

1. `prepare`, no I/O: each event is validated, its subject hashed, and evaluated once by the
   methodology in force at `occurred_at` (uncapped); a bad one gets its own problem and its
   siblings go on.
2. `ingest_prepared`, a constant number of statements: lock the partner identities, claim the
   events under the unique (partner, external id) and read their links in one statement (a
   retry finds its original and gets the original outcome; the same id with other content is
   a conflict), lock the participants' ledger accounts, load cap usage and standing credits,
   `decide` in memory, post the credits and write every outcome in sets.

The transaction commits before the response is sent, so a 2xx means every outcome in it is
durable; Redis plays no part in it. Lock order, everywhere: partner identities (advisory,
sorted), event keys (sorted), new account keys (sorted), ledger accounts (issuance shards
with SKIP LOCKED, then ascending id). Ledger keys of credits are new by construction (one per
claimed event), so no one waits on them.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from points_rules import (
    Action,
    InvalidActionError,
    Methodology,
    NoMethodologyError,
    Outcome,
    Reason,
    Registry,
    Usage,
    cap_windows,
    evaluate_uncapped,
)
from service.crediting import repository as repo
from service.crediting.decide import (
    CREDIT_STATUSES,
    FINAL_WITHOUT_SUBJECT,
    Candidate,
    Decision,
    StandingCredit,
    State,
    decide,
    jsonable_inputs,
)
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
from service.ledger.schemas import CreditRequest, TransferResult
from service.partners.auth import PartnerContext
from service.partners.credentials import subject_hash
from service.partners.errors import ActionTypeNotAllowedError
from service.review import flagging
from service.review import service as review
from service.review.rules import OFF, FlagRules

LEDGER_ORIGIN = "crediting"


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
    # The flag rules in force (`service.crediting.flags.FlagRulesCache.current`): a flagged
    # credit's points are held until a reviewer decides (`service.review`).
    flags: FlagRules = OFF


def _content_hash(event: EventIn, subject: bytes) -> bytes:
    canonical = {
        "external_id": event.external_id,
        "action_type": event.action_type,
        "occurred_at": event.occurred_at.isoformat(),
        "subject": subject.hex(),
        "quantities": jsonable_inputs(dict(event.quantities)),
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
    credited = row.status in (*CREDIT_STATUSES, "retracted") and row.participant_id is not None
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
class Prepared:
    """One event validated, hashed and evaluated (once, uncapped), ready to be claimed."""

    partner: PartnerContext
    event: EventIn
    subject: bytes
    content: bytes
    methodology: Methodology
    action: Action
    evaluation: Outcome
    known_participant: uuid.UUID | None = None

    @property
    def key(self) -> tuple[uuid.UUID, str]:
        return (self.partner.partner_id, self.event.external_id)


Item = Prepared | OutcomeOut
"""What the shell takes per event: prepared, or already answered (a problem)."""


def prepare(
    registry: Registry,
    settings: CreditingSettings,
    partner: PartnerContext,
    item: EventIn | tuple[str | None, ProblemError],
    received_at: datetime,
    known_subjects: Mapping[bytes, uuid.UUID] | None = None,
) -> Item:
    """Validate, hash and evaluate one event; no I/O. A bad event becomes its own problem."""
    if isinstance(item, tuple):
        return _problem(item[0], item[1])
    try:
        return _prepare(registry, settings, partner, item, received_at, known_subjects)
    except ProblemError as error:
        return _problem(item.external_id, error)


def _prepare(
    registry: Registry,
    settings: CreditingSettings,
    partner: PartnerContext,
    event: EventIn,
    received_at: datetime,
    known_subjects: Mapping[bytes, uuid.UUID] | None,
) -> Prepared:
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
        evaluation = evaluate_uncapped(methodology, action)
    except InvalidActionError as exc:
        raise ValidationProblem(str(exc)) from None
    subject = subject_hash(settings.pepper, partner.partner_id, event.subject_ref)
    known = known_subjects.get(subject) if known_subjects else None
    return Prepared(
        partner,
        event,
        subject,
        _content_hash(event, subject),
        methodology,
        action,
        evaluation,
        known,
    )


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
    prepared = [
        prepare(registry, settings, partner, item, received_at, known_subjects) for item in items
    ]
    return await ingest_prepared(session, settings, prepared)


async def ingest_prepared(
    session: AsyncSession, settings: CreditingSettings, items: Sequence[Item]
) -> list[OutcomeOut]:
    """Claim, decide and write prepared events, from one partner or many; one outcome per
    item, in order. A constant number of statements, whatever the number of events:

    1. lock the events' partner identities and announce an outcome writer;
    2. claim the new events and read their subjects' links;
    3. (only if some were sent before) read the stored events;
    4-5. create missing accounts and reserve ids, then lock the participants' accounts
       (`ledger.lock_for_credits`);
    6. load cap usage and standing credits;
    7. post the credits (`ledger.post_credits`);
    8. write credits, cap usage and outcomes.

    Everything between 6 and 7 is `decide`, in memory. Nothing written is read back.
    """
    results: list[OutcomeOut | None] = [None] * len(items)
    first: dict[tuple[uuid.UUID, str], Prepared] = {}
    for index, item in enumerate(items):
        if isinstance(item, OutcomeOut):
            results[index] = item
        else:
            first.setdefault(item.key, item)
    if not first:
        return [r for r in results if r is not None]

    await repo.lock_subjects_and_announce(
        session,
        [
            (p.partner.partner_id, p.subject)
            for p in first.values()
            if p.evaluation.status not in FINAL_WITHOUT_SUBJECT
        ],
    )
    churn = settings.flags.identity_churn
    claimed = await repo.claim_and_link(
        session,
        [
            {
                "partner_id": p.partner.partner_id,
                "external_id": p.event.external_id,
                "content_hash": p.content,
                "action_type": p.event.action_type,
                "occurred_at": p.event.occurred_at,
                "received_at": p.action.received_at,
                "subject_hash": p.subject,
                # The region the methodology was chosen for (the partner's, when the event
                # names none), so a release after linking chooses the same one.
                "region": p.action.region,
                "quantities": jsonable_inputs(dict(p.event.quantities)),
                "place_ids": p.event.place_ids,
            }
            for p in first.values()
        ],
        churn_since=None if churn is None else now_of(first) - timedelta(days=churn.window_days),
    )
    stored = await repo.events_by_keys(session, [k for k in first if k not in claimed])

    candidates = [
        Candidate(
            claimed[key][0],
            key[0],
            p.known_participant or claimed[key][1],
            p.methodology,
            p.action,
            p.evaluation,
        )
        for key, p in first.items()
        if key in claimed
    ]
    now = now_of(first)
    holders: dict[int, int] = {}
    for key in first:
        if key in claimed and claimed[key][2]:
            holders[claimed[key][0]] = claimed[key][2] or 0
    decisions = await _decide_and_write(
        session, settings, candidates, now=now, link_holders=holders
    )
    decided = {d.event_id: d for d in decisions}

    # Every copy of an external id is compared with the event as stored (or as claimed
    # now), so an exact re-send gets the original outcome wherever it sits in the batch.
    for index, item in enumerate(items):
        if not isinstance(item, Prepared):
            continue
        key = item.key
        if key in claimed:
            original = first[key]
            outcome = _outcome_of_decision(decided[claimed[key][0]], item.event.external_id)
            same = item.content == original.content
        else:
            row = stored[key]
            outcome = outcome_of(row)
            same = item.content == bytes(row.content_hash)
        results[index] = (
            outcome if same else _problem(item.event.external_id, _event_conflict(key[1]))
        )
    return [r for r in results if r is not None]


def now_of(first: Mapping[tuple[uuid.UUID, str], Prepared]) -> datetime:
    return max(p.action.received_at for p in first.values())


async def _decide_and_write(
    session: AsyncSession,
    settings: CreditingSettings,
    candidates: Sequence[Candidate],
    *,
    now: datetime,
    link_holders: Mapping[int, int] | None = None,
) -> list[Decision]:
    """Lock, load, decide, write: the claimed events' outcomes, committed with the caller.
    `now` starts the credits' validity."""
    if not candidates:
        return []
    crediting = [
        (c.participant, c)
        for c in candidates
        if c.participant is not None and c.evaluation.status in CREDIT_STATUSES
    ]
    context = None
    state = State({}, ())
    if crediting:
        participants = sorted({participant for participant, _ in crediting})
        context = await ledger.lock_for_credits(session, participants, capacity=len(crediting))
        window = settings.duplicate_window
        usage, standing, trips = await repo.load_state(
            session,
            [(p, key) for p, c in crediting for key in c.evaluation.usage_keys],
            [
                (
                    p,
                    c.action.action_type,
                    c.action.occurred_at - window,
                    c.action.occurred_at + window,
                )
                for p, c in crediting
            ],
            _trip_windows(settings.flags, crediting),
            sorted(settings.flags.trip_types()) if settings.flags.needs_trips else (),
        )
        state = State(
            {slot: Usage(g, p) for slot, (g, p) in usage.items()},
            [
                StandingCredit(
                    row.event_id, row.partner_id, row.participant_id, row.key, row.occurred_at
                )
                # Oldest first: a duplicate names the same original whatever the plan.
                for row in sorted(standing, key=lambda r: int(r.event_id))
            ],
        )
    plan = decide(candidates, state, duplicate_window=settings.duplicate_window)
    to_post = plan.credits
    flagged = _flag(settings.flags, to_post, trips, link_holders) if to_post else {}

    transactions: dict[int, int] = {}
    if to_post and context is not None:
        results = await ledger.post_credits(
            session,
            context,
            [
                CreditRequest(
                    origin=LEDGER_ORIGIN,
                    key=f"event:{d.event_id}",
                    participant_id=d.participant,  # type: ignore[arg-type]
                    points=d.points,
                    grams=d.grams,
                    expires_at=now + settings.validity,
                    credit_id=str(d.event_id),
                    methodology_id=d.methodology.id,
                    methodology_version=d.methodology.version,
                    review=d.event_id in flagged,
                )
                for d in to_post
            ],
            now=now,
        )
        transactions = {
            d.event_id: r.transaction_id
            for d, r in zip(to_post, results, strict=True)
            if r.transaction_id is not None
        }
        if flagged:
            await review.record_flags(
                session,
                [
                    review.FlagRecord(
                        event_id=d.event_id,
                        participant_id=d.participant,  # type: ignore[arg-type]
                        partner_id=d.partner_id,
                        action_type=d.action.action_type,
                        occurred_at=d.action.occurred_at,
                        flagged_at=now,
                        hits=[hit.jsonable() for hit in flagged[d.event_id]],
                        points=d.points,
                        grams=d.grams,
                        transaction_id=transactions[d.event_id],
                    )
                    for d in to_post
                    if d.event_id in flagged
                ],
            )
    await repo.write_outcomes(
        session,
        [
            {
                "event_id": d.event_id,
                "participant_id": d.participant,
                "partner_id": d.partner_id,
                "action_type": d.action.action_type,
                "occurred_at": d.action.occurred_at,
                "received_at": d.action.received_at,
                "region": d.action.region,
                "methodology_id": d.methodology.id,
                "methodology_version": d.methodology.version,
                "inputs": d.inputs or {},
                "usage_before": d.usage_before or {},
                "status": d.status,
                "grams": d.grams,
                "points": d.points,
                "transaction_id": transactions.get(d.event_id),
            }
            for d in plan.decisions
            if d.makes_credit
        ],
        plan.usage_added,
        [
            {
                "id": d.event_id,
                "status": d.status,
                "participant_id": d.participant,
                "methodology_id": d.methodology.id,
                "methodology_version": d.methodology.version,
                "grams": d.grams,
                "points": d.points,
                "reasons": list(d.reasons),
                "duplicate_of": d.duplicate_of,
                "transaction_id": transactions.get(d.event_id),
            }
            for d in plan.decisions
        ],
    )
    return plan.decisions


def _trip_windows(
    rules: FlagRules, crediting: Sequence[tuple[uuid.UUID, Candidate]]
) -> list[tuple[uuid.UUID, datetime, datetime]]:
    """The stored trips the flag rules compare with: per participant, one window around all
    of its trips in this transaction (empty when no trip rule is on)."""
    if not rules.needs_trips:
        return []
    types = rules.trip_types()
    around = timedelta(minutes=rules.lookback_minutes())
    spans: dict[uuid.UUID, tuple[datetime, datetime]] = {}
    for participant, c in crediting:
        if c.action.action_type not in types or not c.evaluation.points:
            continue
        at = c.action.occurred_at
        low, high = spans.get(participant, (at, at))
        spans[participant] = (min(low, at), max(high, at))
    return [
        (participant, low - around, high + around) for participant, (low, high) in spans.items()
    ]


def _flag(
    rules: FlagRules,
    credits: Sequence[Decision],
    stored: Sequence[Any],
    link_holders: Mapping[int, int] | None,
) -> dict[int, list[flagging.Hit]]:
    """The credits the rules flag (event id -> hits), in memory; only credits with points
    (there is nothing to hold otherwise)."""
    if not rules.any:
        return {}
    recent: dict[uuid.UUID, list[flagging.Trip]] = {}
    for row in stored:
        recent.setdefault(row.participant_id, []).append(
            flagging.Trip(row.event_id, row.key, row.occurred_at, None, row.region, row.ends_at)
        )
    holders = link_holders or {}
    checks = [
        flagging.Check(
            d.event_id,
            d.participant,
            d.partner_id,
            flagging.Trip(
                d.event_id,
                d.action.action_type,
                d.action.occurred_at,
                flagging.duration_of(d.action.inputs),
                d.action.region,
            ),
            holders.get(d.event_id),
        )
        for d in credits
        if d.points > 0 and d.participant is not None
    ]
    return flagging.evaluate(rules, checks, recent)


def _outcome_of_decision(d: Decision, external_id: str) -> OutcomeOut:
    credited = d.status in CREDIT_STATUSES and d.participant is not None
    return OutcomeOut(
        external_id=external_id,
        status=d.status,
        grams=d.grams,
        points=d.points,
        credit_id=str(d.event_id) if credited else None,
        methodology_id=d.methodology.id,
        methodology_version=d.methodology.version,
        duplicate_of=None if d.duplicate_of is None else {"credit_id": str(d.duplicate_of)},
        reasons=[ReasonOut(**r) for r in d.reasons],
        received_at=d.action.received_at,
    )


def _event_conflict(external_id: str) -> EventConflictError:
    return EventConflictError(
        f"external id {external_id!r} was first sent with different content; "
        "a retry must resend exactly the same event"
    )


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
    await repo.lock_subjects_and_announce(session, [(partner_id, subject)])
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
    candidates: list[Candidate] = []
    for row in waiting:
        try:
            methodology = registry.select(row.action_type, row.occurred_at, row.region)
        except NoMethodologyError:
            methodology = registry.get(row.methodology_id, row.methodology_version)
        # Judged as received when it was; credited now.
        action = Action(
            action_type=row.action_type,
            occurred_at=row.occurred_at,
            received_at=row.received_at,
            inputs=engine_inputs(row.quantities),
            region=row.region,
        )
        if now > row.occurred_at + methodology.claim_window:
            reason = Reason(
                "claim_window_passed", "the identity was linked after the claim window closed"
            )
            evaluation = Outcome(
                "expired", 0, 0, (reason,), {}, methodology.id, methodology.version
            )
        else:
            try:
                evaluation = evaluate_uncapped(methodology, action)
            except InvalidActionError as exc:
                reason = Reason("invalid_input", str(exc))
                evaluation = Outcome(
                    "ineligible", 0, 0, (reason,), {}, methodology.id, methodology.version
                )
        candidates.append(
            Candidate(row.id, partner_id, participant_id, methodology, action, evaluation)
        )
    decisions = await _decide_and_write(session, settings, candidates, now=now)
    by_id = {row.id: row for row in waiting}
    return [_outcome_of_decision(d, by_id[d.event_id].external_id) for d in decisions]


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
    reversal: TransferResult | None = None
    if row.credit_transaction_id is not None and row.participant_id is not None:
        # The reversal locks the participant's accounts, the same row locks crediting takes
        # before it reads cap usage: the usage given back below is never lost to a credit.
        # A credit under review has its lot held: release it first, so the reversal takes
        # the credit's own points back (and a later approval has nothing to release).
        await ledger.release_review_hold(
            session,
            origin=LEDGER_ORIGIN,
            key=f"retract:{row.id}:release",
            credit_origin=LEDGER_ORIGIN,
            credit_id=row.credit_transaction_id,
        )
        # Reversed already by another path (a fraud review): the retraction still stands.
        with contextlib.suppress(AlreadyReversedError):
            reversal = await ledger.reverse_credit(
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
    if reversal is not None:
        # What the retraction took back: from the balance, and what the participant had
        # already spent (owed, paid off by later points); expired points needed nothing.
        reasons.append(
            {
                "code": "points_taken_back",
                "message": f"{reversal.amount} points taken back from the balance"
                + (f", {reversal.unrecovered} owed" if reversal.unrecovered else ""),
            }
        )
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


# --- the back-test's reads (`service.methodologies.backtest`) ----------------------------------

StoredCredit = repo.StoredCredit
UncreditedEvent = repo.UncreditedEvent


async def count_stored_outcomes(
    session: AsyncSession, methodology_id: str, start: datetime, end: datetime
) -> int:
    """How many stored outcomes of one methodology in [start, end) a back-test reads: the
    credits and the events without a credit."""
    credits = await repo.count_credits_in_window(session, methodology_id, start, end)
    others = await repo.count_uncredited_events_in_window(session, methodology_id, start, end)
    return credits + others


def stored_credits(
    session: AsyncSession, methodology_id: str, start: datetime, end: datetime, *, batch: int
) -> AsyncIterator[list[StoredCredit]]:
    """The stored credits of one methodology in [start, end), by event id, a page at a time."""
    return repo.credits_in_window(session, methodology_id, start, end, batch=batch)


def uncredited_events(
    session: AsyncSession, methodology_id: str, start: datetime, end: datetime, *, batch: int
) -> AsyncIterator[list[UncreditedEvent]]:
    """The stored events of one methodology in [start, end) with an outcome but no credit
    (`repo.uncredited_events_in_window`), by event id, a page at a time."""
    return repo.uncredited_events_in_window(session, methodology_id, start, end, batch=batch)


async def usage_seen_before(
    session: AsyncSession, wanted: Sequence[tuple[int, uuid.UUID, str]]
) -> dict[tuple[int, str], Usage]:
    """The cap usage each (event id, participant, usage key) would have seen when crediting
    reached that event (`repo.usage_seen`); a key absent was unused."""
    seen = await repo.usage_seen(session, wanted)
    return {slot: Usage(grams, points) for slot, (grams, points) in seen.items()}
