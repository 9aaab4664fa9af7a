"""Credits under review: the hold on a flagged credit's points released (approved) or the
credit taken back (rejected). The hold itself is written with the credit
(`plan_credits`, a `CreditRequest` with `review=True`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from service.ledger import repository as repo
from service.ledger.errors import HoldAlreadyResolvedError, TransactionNotFoundError
from service.ledger.plan import review_hold_key
from service.ledger.schemas import ResolutionResult, TransferResult
from service.ledger.service.holds import void_hold
from service.ledger.service.refunds import reverse_credit


async def review_hold_id(
    session: AsyncSession, *, credit_origin: str, credit_id: int
) -> int | None:
    """The hold on a flagged credit's points, or None (nothing was held: the points all
    paid a debt, or the credit was not flagged)."""
    hold = await repo.find_hold(session, credit_origin, review_hold_key(credit_id))
    return None if hold is None else hold.id


async def release_review_hold(
    session: AsyncSession, *, origin: str, key: str, credit_origin: str, credit_id: int
) -> ResolutionResult | None:
    """Approve: the hold on credit `credit_id`'s points is voided, exactly once (a retry
    with the same key returns the first result); the points can be spent again, paying any
    debt first. None when nothing was held, or the hold was already released under another
    key (a partner's retraction releases it before reversing the credit)."""
    original = await repo.get_transaction(session, credit_id)
    if original is None or original.kind != "credit":
        raise TransactionNotFoundError(f"no credit transaction {credit_id}")
    hold_id = await review_hold_id(session, credit_origin=credit_origin, credit_id=credit_id)
    if hold_id is None:
        return None
    try:
        return await void_hold(session, origin=origin, key=key, hold_id=hold_id)
    except HoldAlreadyResolvedError:
        return None


async def reject_reviewed_credit(
    session: AsyncSession,
    *,
    origin: str,
    key: str,
    credit_origin: str,
    credit_id: int,
    reason: str,
) -> TransferResult:
    """Reject: the hold is released and the credit reversed (`reverse_credit`, which takes
    the credit's own lot first), in the caller's transaction. A credit is reversed at most
    once, whoever asks (`AlreadyReversedError`)."""
    await release_review_hold(
        session,
        origin=origin,
        key=f"{key}:release",
        credit_origin=credit_origin,
        credit_id=credit_id,
    )
    return await reverse_credit(session, origin=origin, key=key, credit_id=credit_id, reason=reason)
