"""The review queue: flags recorded as credits are made, and reviewers' decisions.

One API for the JSON admin endpoints (`service.review.endpoints`) and any page built on it:
`queue` (filters, keyset pages), `explain`, `assign`, `approve`, `reject`, and the rules'
settings (`rules`, `set_rule`). Each act is audited in the caller's transaction (it commits
with the act). Other domains ask `open_flags` / `under_review` whether credits are still
held (pooling must leave those out) and `credit_review` what became of a credit's review
(the app's explanation).

A decision locks the flag's row first: two reviewers deciding at once queue on it, and the
second finds it decided (`AlreadyDecidedError`). Approval voids the hold on the credit's
points (`ledger.release_review_hold`); rejection voids it and reverses the credit
(`ledger.reject_reviewed_credit`), at most once whoever asks.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from service import audit
from service.i18n import EN, N_, translate
from service.ledger import service as ledger
from service.ledger.errors import AlreadyReversedError
from service.models import ReviewFlag, ReviewRule
from service.review.errors import (
    AlreadyDecidedError,
    FlagNotFoundError,
    InvalidRuleError,
    RuleNotFoundError,
)
from service.review.repository import QueueFilter, ReviewRepository
from service.review.rules import RULES, InvalidRuleParams, default_params, parse_params

__all__ = [
    "CREDITING_ORIGIN",
    "REJECTION_REASONS",
    "CreditReview",
    "FlagRecord",
    "QueueFilter",
    "approve",
    "assign",
    "credit_review",
    "explain",
    "open_flags",
    "queue",
    "record_flags",
    "reject",
    "rules",
    "rules_in_force",
    "set_rule",
    "under_review",
]

CREDITING_ORIGIN: Final = "crediting"
"""The ledger origin of credits (`service.crediting.service.LEDGER_ORIGIN`): their review
holds carry it."""
LEDGER_ORIGIN: Final = "review"

# Why a reviewer rejected a credit, as the participant reads it (history and explanation).
REJECTION_REASONS: Final[Mapping[str, str]] = {
    "implausible_trips": N_("the trips reported are more than one person can make"),
    "overlapping_trips": N_("the trip overlaps another trip of yours"),
    "impossible_travel": N_(
        "the trips were reported in places too far apart for the time between them"
    ),
    "shared_identity": N_("the card or account was used by several people"),
    "partner_error": N_("the partner reported the action in error"),
    "not_eligible": N_("the action does not qualify for points"),
}
HELD_FOR_REVIEW: Final = N_(
    "a low-carbon action was credited; its points are held until a reviewer has checked it"
)
UNDER_REVIEW: Final = N_("a reviewer is checking this credit; its points cannot be spent yet")
APPROVED: Final = N_("a reviewer checked this credit and released its points")
REJECTED: Final = N_("taken back after review: %(reason)s")


@dataclass(frozen=True, slots=True)
class FlagRecord:
    """A credit flagged by the crediting path, with the rules it broke."""

    event_id: int
    participant_id: uuid.UUID
    partner_id: uuid.UUID
    action_type: str
    occurred_at: datetime
    flagged_at: datetime
    hits: Sequence[dict[str, Any]]
    points: int
    grams: int
    transaction_id: int


async def record_flags(session: AsyncSession, flags: Sequence[FlagRecord]) -> None:
    """Put flagged credits in the queue, in the crediting transaction: one statement."""
    await ReviewRepository.from_session(session).insert_flags(
        [
            {
                "event_id": f.event_id,
                "participant_id": f.participant_id,
                "partner_id": f.partner_id,
                "action_type": f.action_type,
                "occurred_at": f.occurred_at,
                "flagged_at": f.flagged_at,
                "rules": sorted({h["rule"] for h in f.hits}),
                "details": list(f.hits),
                "points": f.points,
                "grams": f.grams,
                "transaction_id": f.transaction_id,
            }
            for f in flags
        ]
    )


# --- rules ---------------------------------------------------------------------------------


async def rules_in_force(session: AsyncSession) -> dict[str, tuple[bool, dict[str, Any]]]:
    """rule -> (enabled, params) as stored (a missing row is a rule switched off)."""
    return {
        row.rule: (row.enabled, dict(row.params))
        for row in await ReviewRepository.from_session(session).rule_rows()
    }


@dataclass(frozen=True, slots=True)
class RuleView:
    rule: str
    enabled: bool
    params: dict[str, Any]
    updated_at: datetime | None
    updated_by: uuid.UUID | None


async def rules(session: AsyncSession) -> list[RuleView]:
    """Every rule, stored or not (a rule never stored is off, with its defaults)."""
    stored = {r.rule: r for r in await ReviewRepository.from_session(session).rule_rows()}
    views = []
    for rule in RULES:
        row = stored.get(rule)
        if row is None:
            views.append(RuleView(rule, False, default_params(rule), None, None))
        else:
            params = {**default_params(rule), **row.params}
            views.append(RuleView(rule, row.enabled, params, row.updated_at, row.updated_by))
    return views


def _rule_state(row: ReviewRule | None) -> dict[str, Any] | None:
    return None if row is None else {"enabled": row.enabled, "params": row.params}


async def set_rule(
    session: AsyncSession,
    actor: audit.Actor,
    rule: str,
    *,
    enabled: bool,
    params: Mapping[str, Any],
    now: datetime | None = None,
) -> RuleView:
    """Switch a rule on or off and set its thresholds (validated; defaults fill the rest).
    Audited; every process's snapshot picks it up within seconds."""
    if rule not in RULES:
        raise RuleNotFoundError(f"no rule {rule!r}; rules: {', '.join(RULES)}")
    try:
        checked = parse_params(rule, params).model_dump()
    except InvalidRuleParams as exc:
        raise InvalidRuleError(str(exc)) from None
    repo = ReviewRepository.from_session(session)
    before = _rule_state(await repo.lock_rule(rule))
    moment = now or datetime.now(UTC)
    saved = await repo.save_rule(rule, enabled, checked, actor.admin_id or uuid.UUID(int=0), moment)
    after = _rule_state(saved)
    await audit.record(
        session,
        actor,
        action="review.rule.set",
        target_type="review-rule",
        target_id=rule,
        before=before,
        after=after,
        detail={"enabled": enabled, "params": checked},
        now=moment,
    )
    return RuleView(rule, saved.enabled, dict(saved.params), saved.updated_at, saved.updated_by)


# --- the queue -----------------------------------------------------------------------------


async def queue(
    session: AsyncSession, where: QueueFilter, *, cursor: int | None, limit: int
) -> tuple[list[ReviewFlag], int | None]:
    """A page of flagged credits, newest first, and the cursor of the next page (None at the
    end). Keyset paging on the credit id: a page costs the same however deep."""
    rows = await ReviewRepository.from_session(session).page(where, before=cursor, limit=limit)
    return rows, rows[-1].event_id if len(rows) == limit else None


async def explain(session: AsyncSession, event_id: int) -> ReviewFlag:
    """The flag with every rule it broke and the figures that broke it (`details`)."""
    flag = await ReviewRepository.from_session(session).get(event_id)
    if flag is None:
        raise FlagNotFoundError(f"no flagged credit {event_id}")
    return flag


def _flag_state(flag: ReviewFlag) -> dict[str, Any]:
    return {
        "status": flag.status,
        "assignee": str(flag.assignee) if flag.assignee else None,
        "decided_by": str(flag.decided_by) if flag.decided_by else None,
        "reason": flag.reason,
    }


async def assign(
    session: AsyncSession,
    actor: audit.Actor,
    event_id: int,
    assignee: uuid.UUID | None,
    *,
    now: datetime | None = None,
) -> ReviewFlag:
    """Give an open flagged credit to a reviewer (None: back to the pool). The caller checks
    the assignee is an active reviewer. Audited."""
    repo = ReviewRepository.from_session(session)
    flag = await repo.lock(event_id)
    if flag is None:
        raise FlagNotFoundError(f"no flagged credit {event_id}")
    if flag.status != "open":
        raise AlreadyDecidedError(f"credit {event_id} was already {flag.status}")
    before = _flag_state(flag)
    moment = now or datetime.now(UTC)
    await repo.assign(event_id, assignee, moment)
    flag = await repo.lock(event_id)
    assert flag is not None
    await audit.record(
        session,
        actor,
        action="review.assign",
        target_type="review-flag",
        target_id=str(event_id),
        before=before,
        after=_flag_state(flag),
        detail={"assignee": str(assignee) if assignee else None},
        now=moment,
    )
    return flag


async def _decide(
    session: AsyncSession,
    actor: audit.Actor,
    event_id: int,
    *,
    status: str,
    reason: str | None,
    note: str | None,
    now: datetime | None,
) -> tuple[ReviewFlag, dict[str, Any]]:
    repo = ReviewRepository.from_session(session)
    flag = await repo.lock(event_id)
    if flag is None:
        raise FlagNotFoundError(f"no flagged credit {event_id}")
    if flag.status != "open":
        raise AlreadyDecidedError(
            f"credit {event_id} was already {flag.status}", decided=flag.status
        )
    before = _flag_state(flag)
    ledger_detail: dict[str, Any] = {}
    if status == "approved":
        released = await ledger.release_review_hold(
            session,
            origin=LEDGER_ORIGIN,
            key=f"approve:{event_id}",
            credit_origin=CREDITING_ORIGIN,
            credit_id=flag.transaction_id,
        )
        ledger_detail["released_hold"] = released.hold_id if released else None
    else:
        assert reason is not None
        try:
            reversal = await ledger.reject_reviewed_credit(
                session,
                origin=LEDGER_ORIGIN,
                key=f"reject:{event_id}",
                credit_origin=CREDITING_ORIGIN,
                credit_id=flag.transaction_id,
                reason=f"review:{reason}",
            )
            ledger_detail.update(
                reversal=reversal.transaction_id,
                points_taken_back=reversal.amount,
                owed=reversal.unrecovered,
            )
        except AlreadyReversedError:
            # The partner retracted it first: nothing left to take back; the decision stands.
            ledger_detail["reversal"] = None
    moment = now or datetime.now(UTC)
    await repo.decide(
        event_id,
        status=status,
        admin_id=actor.admin_id or uuid.UUID(int=0),
        now=moment,
        reason=reason,
        note=note,
    )
    flag = await repo.lock(event_id)
    assert flag is not None
    await audit.record(
        session,
        actor,
        action=f"review.{'approve' if status == 'approved' else 'reject'}",
        target_type="review-flag",
        target_id=str(event_id),
        before=before,
        after=_flag_state(flag),
        detail={"reason": reason, "rules": list(flag.rules), **ledger_detail},
        now=moment,
    )
    return flag, ledger_detail


async def approve(
    session: AsyncSession,
    actor: audit.Actor,
    event_id: int,
    *,
    note: str | None = None,
    now: datetime | None = None,
) -> ReviewFlag:
    """Release the credit's points. Exactly one decision per flag; audited."""
    flag, _detail = await _decide(
        session, actor, event_id, status="approved", reason=None, note=note, now=now
    )
    return flag


async def reject(
    session: AsyncSession,
    actor: audit.Actor,
    event_id: int,
    *,
    reason: str,
    note: str | None = None,
    now: datetime | None = None,
) -> ReviewFlag:
    """Take the credit back through the ledger; `reason` (a `REJECTION_REASONS` code) is
    what the participant reads. Exactly one decision per flag; audited."""
    if reason not in REJECTION_REASONS:
        raise InvalidRuleError(
            f"reason must be one of {', '.join(REJECTION_REASONS)}", field="reason"
        )
    flag, _detail = await _decide(
        session, actor, event_id, status="rejected", reason=reason, note=note, now=now
    )
    return flag


# --- what other domains ask ----------------------------------------------------------------


async def open_flags(session: AsyncSession, participant_id: uuid.UUID) -> list[int]:
    """The participant's credits (event ids) still under review: their points are held."""
    return await ReviewRepository.from_session(session).open_for_participant(participant_id)


async def under_review(session: AsyncSession, credit_ids: Sequence[int]) -> set[int]:
    """Which of these credits (event ids) are under review now. Pooling leaves them out."""
    found = await ReviewRepository.from_session(session).statuses(credit_ids)
    return {event_id for event_id, flag in found.items() if flag.status == "open"}


@dataclass(frozen=True, slots=True)
class CreditReview:
    status: str
    reason: str | None
    text: str


def rejection_text(reason: str | None, language: str = EN) -> str:
    """A rejection's reason as the participant reads it, in `language`."""
    known = REJECTION_REASONS.get(reason or "")
    because = translate(known, language) if known is not None else (reason or "")
    return translate(REJECTED, language).replace("%(reason)s", because)


async def credit_review(
    session: AsyncSession, credit_id: int, language: str = EN
) -> CreditReview | None:
    """What became of a credit's review, in `language`; None if it was never flagged."""
    flag = await ReviewRepository.from_session(session).get(credit_id)
    if flag is None:
        return None
    if flag.status == "open":
        text = translate(UNDER_REVIEW, language)
    elif flag.status == "approved":
        text = translate(APPROVED, language)
    else:
        text = rejection_text(flag.reason, language)
    return CreditReview(flag.status, flag.reason, text)
