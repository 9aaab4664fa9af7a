"""Refunds of captured redemptions and reversals of credits."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service import metrics
from service.ledger import repository as repo
from service.ledger.chain import transaction_digest
from service.ledger.errors import (
    AlreadyReversedError,
    InvalidAmountError,
    NothingToRefundError,
    TransactionNotFoundError,
)
from service.ledger.repository import StoredTransaction
from service.ledger.repository import pooling as pooling_repo
from service.ledger.schemas import (
    Asset,
    Status,
    TransferResult,
)
from service.ledger.service._common import _conflict, _differences, _shard, _whole, _Writer
from service.ledger.service.credits import _participant_account_rows
from service.ledger.service.holds import (
    _lock_for_hold,
    _LotChanges,
    _move_lots,
    _pay_debt_from,
)


async def refund(
    session: AsyncSession, *, origin: str, key: str, redemption_id: int, amount: int
) -> TransferResult:
    """Give back (part of) a redemption: the points return to exactly the lots it took."""
    _whole("amount", amount, 1)
    content = {"refund_of": redemption_id, "amount": amount}
    existing = await _existing_transfer(session, origin, key, "refund", content)
    if existing is not None:
        return existing
    redemption = await repo.get_transaction(session, redemption_id)
    if redemption is None or redemption.kind != "redemption":
        raise TransactionNotFoundError(f"no redemption {redemption_id}")
    hold = await repo.get_hold(session, int(redemption.request["hold_id"]))
    if hold is None:  # a redemption's hold is its foreign key: never missing
        raise TransactionNotFoundError(f"redemption {redemption_id} has no hold")
    inserted = await repo.insert_transactions(
        session, [{"origin": origin, "idempotency_key": key, "kind": "refund", "request": content}]
    )
    if (origin, key) not in inserted:
        again = await _existing_transfer(session, origin, key, "refund", content)
        if again is None:
            raise _conflict(origin, key, ["kind"])
        return again
    tx_id, created_at = inserted[(origin, key)]
    accounts = await _lock_for_hold(session, hold)
    refunded = await repo.sum_transactions_by_request(
        session, "refund", "refund_of", redemption_id, "amount"
    )
    posted = int(redemption.request["amount"])
    if refunded > posted:
        raise NothingToRefundError(
            f"redemption {redemption_id} took {posted} points; "
            f"{refunded - amount} already refunded",
            refundable=posted - (refunded - amount),
        )
    # The lots the hold still takes from (read under the lock), given back latest-expiring
    # first; the debt, if any, is paid from them first.
    _resolution, taken = await repo.resolution_and_taken_lots(session, hold.id, partial=True)
    lots = _LotChanges()
    restored = lots.give_back(taken, amount, hold_id=hold.id, kind="refund", transaction_id=tx_id)
    writer = _Writer(accounts.states)
    digest = transaction_digest(tx_id, origin, key, "refund", content, created_at)
    writer.post(tx_id, digest, hold.counter_account_id, -amount)
    writer.post(tx_id, digest, hold.account_id, amount)
    _pay_debt_from(lots, writer, accounts, restored, tx_id, digest)
    await repo.write_postings_and_lots(
        session,
        postings=writer.postings,
        states=accounts.states.values(),
        movements=lots.movements,
        remainders=lots.remainders,
    )
    metrics.count_points(session, "refunded", amount)
    return TransferResult(Status.CREATED, tx_id, amount)


async def reverse_credit(
    session: AsyncSession, *, origin: str, key: str, credit_id: int, reason: str
) -> TransferResult:
    """Take a credit back (a partner's retraction, a fraud review), at most once.

    Policy, never a negative balance: points of the credit that already expired
    come back from the expiry account; the rest comes out of the credit's own lot
    first, then the participant's other lots, soonest-expiring first; whatever is
    held or already spent becomes debt (the `DEBT` asset), paid off by the next
    points that reach the participant. The grams go back in full.
    """
    if not reason or len(reason) > 64:
        raise InvalidAmountError("a reversal needs a reason code of 1 to 64 characters")
    content = {"reverses": credit_id, "reason": reason}
    existing = await _existing_transfer(session, origin, key, "reversal", content)
    if existing is not None:
        return existing
    original = await repo.get_transaction(session, credit_id)
    if original is None or original.kind != "credit":
        raise TransactionNotFoundError(f"no credit transaction {credit_id}")
    inserted = await repo.insert_transactions(
        session,
        [{"origin": origin, "idempotency_key": key, "kind": "reversal", "request": content}],
        any_conflict=True,
    )
    if (origin, key) not in inserted:
        again = await _existing_transfer(session, origin, key, "reversal", content)
        if again is not None:
            return again
        raise AlreadyReversedError(f"credit {credit_id} was already reversed")
    tx_id, created_at = inserted[(origin, key)]

    pid = uuid.UUID(original.request["participant_id"])
    points, grams = int(original.request["points"]), int(original.request["grams"])
    ids = await repo.ensure_accounts(session, _participant_account_rows({pid}, list(Asset)))
    shard = _shard()
    issuance = {asset: repo.issuance_account_code(asset.value, shard) for asset in Asset}
    ids.update(
        await repo.account_ids_by_code(session, [*issuance.values(), repo.EXPIRY_ACCOUNT_CODE])
    )
    states = await repo.lock_accounts(session, ids.values())
    # A credit whose grams a reductions pool took: they come back from the pool's account
    # (locked last, after every other account: the order pooling takes them in), and the
    # pool's batches record the shortfall (`service.reductions`).
    pooled = await pooling_repo.pooled_credit(session, credit_id)
    if pooled is not None:
        states.update(await repo.lock_accounts(session, [pooled.pool_account_id]))

    own = await repo.lot_of_transaction(session, credit_id)
    expired = await repo.expired_from_lot(session, own.id) if own else 0
    lots = await repo.open_lots(
        session, ids[repo.participant_account_code(pid, Asset.POINTS)], not_expired_at=None
    )
    ordered = sorted(lots, key=lambda lot: (not own or lot.id != own.id, lot.expires_at, lot.id))
    wanted = points - expired
    taking: dict[int, int] = {}
    left = wanted
    for lot in ordered:
        take = min(lot.remaining, left)
        if take:
            taking[lot.id] = take
            left -= take
    clawed = wanted - left
    await _move_lots(session, lots, taking, kind="reverse", sign=-1, transaction_id=tx_id)

    def account(asset: Asset) -> int:
        return ids[repo.participant_account_code(pid, asset)]

    writer = _Writer(states)
    digest = transaction_digest(tx_id, origin, key, "reversal", content, created_at)
    writer.post(tx_id, digest, account(Asset.POINTS), -clawed)
    writer.post(tx_id, digest, ids[issuance[Asset.POINTS]], clawed)
    writer.post(tx_id, digest, ids[repo.EXPIRY_ACCOUNT_CODE], -expired)
    writer.post(tx_id, digest, ids[issuance[Asset.POINTS]], expired)
    writer.post(tx_id, digest, pooled.pool_account_id if pooled else account(Asset.GRAMS), -grams)
    writer.post(tx_id, digest, ids[issuance[Asset.GRAMS]], grams)
    writer.post(tx_id, digest, account(Asset.DEBT), left)
    writer.post(tx_id, digest, ids[issuance[Asset.DEBT]], -left)
    await writer.flush(session)
    metrics.count_points(session, "reversed", clawed)
    return TransferResult(Status.CREATED, tx_id, clawed, unrecovered=left)


async def _existing_transfer(
    session: AsyncSession, origin: str, key: str, kind: str, content: dict[str, Any]
) -> TransferResult | None:
    found = (await repo.find_transactions(session, [(origin, key)])).get((origin, key))
    if found is None:
        return None
    stored: StoredTransaction = found
    differing = _differences(stored.request, content) if stored.kind == kind else ("kind",)
    if differing:
        raise _conflict(origin, key, differing)
    if kind == "reversal":
        totals = await repo.participant_side_totals(session, stored.id)
        return TransferResult(
            Status.EXISTS, stored.id, -totals.get("POINTS", 0), totals.get("DEBT", 0)
        )
    return TransferResult(Status.EXISTS, stored.id, int(content.get("amount", 0)))
