"""Holds: points reserved for a merchant, then captured (posted) or voided exactly once."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service import metrics
from service.i18n import _
from service.ledger import repository as repo
from service.ledger.chain import transaction_digest
from service.ledger.errors import (
    HoldAlreadyResolvedError,
    HoldExpiredError,
    HoldNotFoundError,
    InsufficientPointsError,
    InvalidAmountError,
    NothingToRefundError,
)
from service.ledger.plan import AccountState
from service.ledger.repository import HoldResolution, OpenLot, StoredHold
from service.ledger.schemas import (
    Asset,
    HoldResult,
    ResolutionResult,
    Status,
)
from service.ledger.service._common import (
    DEBT_ORIGIN,
    _aware,
    _conflict,
    _differences,
    _shard,
    _whole,
    _Writer,
)


def _settlement_account(merchant_id: uuid.UUID, code: str) -> dict[str, Any]:
    return {
        "code": code,
        "owner_type": "merchant",
        "owner_id": merchant_id,
        "asset": Asset.POINTS.value,
        "kind": "settlement",
        "bounded": True,
    }


async def open_merchant_accounts(session: AsyncSession, merchant_id: uuid.UUID) -> None:
    """Create a merchant's settlement shards, with the merchant: a till's first hold on a
    shard then finds it (creating it there costs the hold three more statements)."""
    await repo.ensure_accounts(
        session,
        [
            _settlement_account(merchant_id, repo.merchant_account_code(merchant_id, shard))
            for shard in range(repo.MERCHANT_SHARDS)
        ],
    )


async def place_hold(
    session: AsyncSession,
    *,
    origin: str,
    key: str,
    participant_id: uuid.UUID,
    merchant_id: uuid.UUID,
    amount: int,
    now: datetime,
    hold_for: timedelta,
) -> HoldResult:
    """Reserve points for a merchant: taken from the soonest-expiring lots, not yet spent."""
    _whole("amount", amount, 1)
    _aware(now, "now")
    if hold_for <= timedelta(0):
        raise InvalidAmountError("a hold must last a positive time")
    content = {
        "participant_id": str(participant_id),
        "merchant_id": str(merchant_id),
        "amount": amount,
        "timeout_seconds": int(hold_for.total_seconds()),
    }
    # Lock, load the lots, decide, write: three statements. A retry of this key meets the
    # stored hold at the write (ON CONFLICT), so the first-time path does not look it up.
    participant_code = repo.participant_account_code(participant_id, Asset.POINTS)
    # The capture will post to one of the merchant's settlement shards, picked now: a hold
    # never locks the merchant's account, and captures spread over the shards.
    merchant_code = repo.merchant_account_code(merchant_id, secrets.randbelow(repo.MERCHANT_SHARDS))
    locked = await repo.lock_for_hold(session, participant_code, merchant_code)
    if locked is None:
        raise InsufficientPointsError(_("the participant has no points yet"), available=0)
    account, counter_id = locked
    if counter_id is None:  # a merchant from before `open_merchant_accounts`
        settlement = _settlement_account(merchant_id, merchant_code)
        counter_id = (await repo.ensure_accounts(session, [settlement]))[merchant_code]
    lots = await repo.open_lots_at(session, account.id, now)
    taken = _take_in_order(lots, amount)
    if taken is None:
        prior = await repo.find_hold(session, origin, key)
        if prior is not None:  # a retry after the points were spent: the stored hold
            return _existing_hold(prior, origin, key, content)
        available = sum(lot.remaining for lot in lots)
        raise InsufficientPointsError(
            _(
                "%(requested)s points requested, %(available)s available",
                requested=amount,
                available=available,
            ),
            available=available,
        )
    expires_at = now + hold_for
    remaining = {lot.id: lot.remaining - taken.get(lot.id, 0) for lot in lots}
    hold_id = await repo.write_hold(
        session,
        {
            "origin": origin,
            "key": key,
            "request": content,
            "account": account.id,
            "counter": counter_id,
            "amount": amount,
            "expires_at": expires_at,
        },
        {lot_id: n for lot_id, n in taken.items() if n},
        remaining,
    )
    if hold_id is None:  # this key was used before: the stored hold, nothing written now
        return _existing_hold(await repo.find_hold(session, origin, key), origin, key, content)
    return HoldResult(Status.CREATED, hold_id, amount, expires_at)


def _existing_hold(
    row: StoredHold | None, origin: str, key: str, content: dict[str, Any]
) -> HoldResult:
    if row is None:  # the key's insert met it: it exists
        raise _conflict(origin, key, ["hold"])
    differing = _differences(row.request, content)
    if differing:
        raise _conflict(origin, key, differing)
    return HoldResult(Status.EXISTS, row.id, row.amount, row.expires_at)


def _take_in_order(lots: Sequence[OpenLot], amount: int) -> dict[int, int] | None:
    """Points to take from each lot in the given order; None when they do not suffice."""
    taken: dict[int, int] = {}
    left = amount
    for lot in lots:
        if left == 0:
            break
        take = min(lot.remaining, left)
        if take:
            taken[lot.id] = take
            left -= take
    return taken if left == 0 else None


async def _move_lots(
    session: AsyncSession,
    lots: Sequence[OpenLot],
    amounts: dict[int, int],
    *,
    kind: str,
    sign: int,
    hold_id: int | None = None,
    transaction_id: int | None = None,
) -> None:
    """Record movements and update remainders; `lots` are updated in place."""
    by_id = {lot.id: lot for lot in lots}
    movements = []
    for lot_id, amount in amounts.items():
        if amount == 0:
            continue
        by_id[lot_id].remaining += sign * amount
        movements.append(
            {
                "lot_id": lot_id,
                "kind": kind,
                "amount": sign * amount,
                "hold_id": hold_id,
                "transaction_id": transaction_id,
            }
        )
    await repo.insert_movements(session, movements)
    await repo.set_lot_remainders(
        session, {i: by_id[i].remaining for i, amount in amounts.items() if amount}
    )


@dataclass(slots=True)
class _HoldAccounts:
    """The accounts a hold's resolution may touch, locked together in id order."""

    participant: int
    merchant: int
    debt: int | None
    issuance_points: int | None
    issuance_debt: int | None
    states: dict[int, AccountState]

    @property
    def owes(self) -> int:
        return self.states[self.debt].posted if self.debt is not None else 0


async def _lock_for_hold(session: AsyncSession, hold: StoredHold) -> _HoldAccounts:
    """Lock what resolving the hold may touch, in one statement: the participant's account,
    the hold's merchant shard, and, for a participant with a DEBT account (whom released or
    captured points may pay off), that account and an issuance shard per asset."""
    participant_id = uuid.UUID(hold.request["participant_id"])
    shard = _shard()
    debt_code = repo.participant_account_code(participant_id, Asset.DEBT)
    issuance = [
        repo.issuance_account_code(Asset.POINTS, shard),
        repo.issuance_account_code(Asset.DEBT, shard),
    ]
    codes, states = await repo.lock_hold_accounts(
        session, [hold.account_id, hold.counter_account_id], debt_code, issuance
    )
    return _HoldAccounts(
        hold.account_id,
        hold.counter_account_id,
        codes.get(debt_code),
        codes.get(issuance[0]),
        codes.get(issuance[1]),
        states,
    )


async def post_hold(
    session: AsyncSession,
    *,
    origin: str,
    key: str,
    hold_id: int,
    amount: int,
    now: datetime,
    participant_id: uuid.UUID | None = None,
) -> ResolutionResult:
    """Capture a hold, in full or in part, exactly once; the rest goes back to its lots.

    Lock, load, decide, write: three statements (`participant_id`, the hold's, saves a
    fourth that looks it up). A retry of this key inserts no transaction and replays.
    """
    _whole("amount", amount, 1)
    _aware(now, "now")
    content = {"hold_id": hold_id, "outcome": "posted", "amount": amount}
    if participant_id is None:
        found = await repo.get_hold(session, hold_id)
        if found is None:
            raise HoldNotFoundError(_("no hold %(hold_id)s", hold_id=hold_id))
        participant_id = uuid.UUID(found.request["participant_id"])
    debt_code = repo.participant_account_code(participant_id, Asset.DEBT)
    shard = _shard()
    issuance = [
        repo.issuance_account_code(Asset.POINTS, shard),
        repo.issuance_account_code(Asset.DEBT, shard),
    ]
    start = await repo.begin_capture(
        session,
        hold_id=hold_id,
        origin=origin,
        key=key,
        amount=amount,
        debt_code=debt_code,
        issuance_codes=issuance,
        participant_id=participant_id,
    )
    if start is None:  # no such hold of this participant: nothing was written
        raise HoldNotFoundError(_("no hold %(hold_id)s", hold_id=hold_id))
    if amount > start.amount:
        raise InvalidAmountError(
            _(
                "post between 1 and %(maximum)s points, not %(amount)s",
                maximum=start.amount,
                amount=amount,
            )
        )
    if start.transaction is None:
        prior = await repo.find_resolution(session, origin, key)
        if prior is not None:
            return _existing_resolution(prior, origin, key, content)
        raise _conflict(origin, key, ["kind"])
    tx = start.transaction

    resolution, taken = await repo.resolution_and_taken_lots(
        session, hold_id, partial=amount < start.amount
    )
    if resolution is not None:
        if (resolution.origin, resolution.idempotency_key) == (origin, key):
            return _existing_resolution(resolution, origin, key, content)
        raise HoldAlreadyResolvedError(
            _(
                "hold %(hold_id)s was already %(outcome)s",
                hold_id=hold_id,
                outcome=resolution.outcome,
            ),
            outcome=resolution.outcome,
        )
    if now >= start.expires_at:
        raise HoldExpiredError(
            _(
                "hold %(hold_id)s expired at %(expired_at)s",
                hold_id=hold_id,
                expired_at=start.expires_at.isoformat(),
            )
        )

    accounts = _HoldAccounts(
        start.account_id,
        start.counter_account_id,
        start.codes.get(debt_code),
        start.codes.get(issuance[0]),
        start.codes.get(issuance[1]),
        start.states,
    )
    writer = _Writer(accounts.states)
    digest = transaction_digest(tx.id, origin, key, "redemption", tx.request, tx.created_at)
    writer.post(tx.id, digest, start.account_id, -amount)
    writer.post(tx.id, digest, start.counter_account_id, amount)
    accounts.states[start.account_id].held -= start.amount
    lots = _LotChanges()
    restored = lots.give_back(taken, start.amount - amount, hold_id=hold_id)
    _pay_debt_from(lots, writer, accounts, restored, tx.id, digest)
    await repo.write_resolution(
        session,
        postings=writer.postings,
        states=accounts.states.values(),
        movements=lots.movements,
        remainders=lots.remainders,
        resolution={
            "hold_id": hold_id,
            "outcome": "posted",
            "amount_posted": amount,
            "transaction_id": tx.id,
            "origin": origin,
            "idempotency_key": key,
            "request": content,
        },
    )
    metrics.count_points(session, "redeemed", amount)
    metrics.count_hold(session, "posted")
    return ResolutionResult(
        Status.CREATED, hold_id, "posted", amount, tx.id, hold_expires_at=start.expires_at
    )


class _LotChanges:
    """Lot movements and remainders decided in memory, written by one statement."""

    def __init__(self) -> None:
        self.movements: list[dict[str, Any]] = []
        self.remainders: dict[int, int] = {}

    def give_back(
        self,
        taken: Sequence[tuple[OpenLot, int]],
        amount: int,
        *,
        hold_id: int,
        kind: str = "release",
        transaction_id: int | None = None,
    ) -> list[tuple[OpenLot, int]]:
        """Return `amount` of what a hold took to its lots, latest-expiring first (the
        order of `taken`): released (`release`) or refunded (`refund`, with its ledger
        transaction). The lots given to and how much each got."""
        if amount == 0:
            return []
        given: list[tuple[OpenLot, int]] = []
        left = amount
        for lot, still_taken in taken:
            give = min(still_taken, left)
            given.append((lot, give))
            left -= give
            if left == 0:
                break
        if left:
            raise NothingToRefundError(
                _(
                    "only %(left)s of %(amount)s points can go back to lots",
                    left=amount - left,
                    amount=amount,
                )
            )
        for lot, give in given:
            self._move(lot, give, kind=kind, hold_id=hold_id, transaction_id=transaction_id)
        return given

    def take(
        self,
        restored: Sequence[tuple[OpenLot, int]],
        amount: int,
        *,
        kind: str,
        transaction_id: int,
    ) -> None:
        """Take `amount` from points just restored to lots (a debt paid from them)."""
        left = amount
        for lot, given in restored:
            take = min(given, lot.remaining, left)
            if take:
                self._move(lot, -take, kind=kind, transaction_id=transaction_id)
                left -= take

    def _move(
        self,
        lot: OpenLot,
        amount: int,
        *,
        kind: str,
        hold_id: int | None = None,
        transaction_id: int | None = None,
    ) -> None:
        if amount == 0:
            return
        lot.remaining += amount
        self.remainders[lot.id] = lot.remaining
        self.movements.append(
            {
                "lot_id": lot.id,
                "kind": kind,
                "amount": amount,
                "hold_id": hold_id,
                "transaction_id": transaction_id,
            }
        )


def _pay_debt_from(
    lots: _LotChanges,
    writer: _Writer,
    accounts: _HoldAccounts,
    restored: Sequence[tuple[OpenLot, int]],
    tx_id: int,
    digest: bytes,
) -> int:
    """Points just restored to lots pay the participant's debt first: taken back from those
    lots, and POINTS and DEBT both go down. Returns the amount paid."""
    pay = min(accounts.owes, sum(given for _, given in restored))
    if pay:
        lots.take(restored, pay, kind="debt", transaction_id=tx_id)
        _post_debt_payment(writer, accounts, pay, tx_id, digest)
    return pay


def _post_debt_payment(
    writer: _Writer, accounts: _HoldAccounts, pay: int, tx_id: int, digest: bytes
) -> None:
    """Points back to someone who owes settle the debt: POINTS and DEBT both go down."""
    if accounts.debt is None or accounts.issuance_points is None or accounts.issuance_debt is None:
        raise RuntimeError("debt payment without the debt and issuance accounts locked")
    writer.post(tx_id, digest, accounts.participant, -pay)
    writer.post(tx_id, digest, accounts.issuance_points, pay)
    writer.post(tx_id, digest, accounts.debt, -pay)
    writer.post(tx_id, digest, accounts.issuance_debt, pay)


async def void_hold(
    session: AsyncSession,
    *,
    origin: str,
    key: str,
    hold_id: int,
    outcome: str = "voided",
) -> ResolutionResult:
    """Release a hold exactly once, restoring exactly the lots it took."""
    content = {"hold_id": hold_id, "outcome": outcome}
    prior = await repo.find_resolution(session, origin, key)
    if prior is not None:
        return _existing_resolution(prior, origin, key, content)
    hold = await repo.get_hold(session, hold_id)
    if hold is None:
        raise HoldNotFoundError(_("no hold %(hold_id)s", hold_id=hold_id))
    accounts = await _lock_for_hold(session, hold)
    # Under the lock: its resolution, if a concurrent call made one, and the lots it took.
    resolution, taken = await repo.resolution_and_taken_lots(session, hold_id, partial=True)
    if resolution is not None:
        if (resolution.origin, resolution.idempotency_key) == (origin, key):
            return _existing_resolution(resolution, origin, key, content)
        raise HoldAlreadyResolvedError(
            _(
                "hold %(hold_id)s was already %(outcome)s",
                hold_id=hold_id,
                outcome=resolution.outcome,
            ),
            outcome=resolution.outcome,
        )
    accounts.states[hold.account_id].held -= hold.amount
    lots = _LotChanges()
    restored = lots.give_back(taken, hold.amount, hold_id=hold_id)
    writer = _Writer(accounts.states)
    if accounts.owes:
        # Points coming back to someone who owes settle the debt first. The key is
        # unique per hold: a hold is released once.
        request = {"hold_id": hold_id}
        debt_key = f"hold:{hold_id}"
        inserted = await repo.insert_transactions(
            session,
            [
                {
                    "origin": DEBT_ORIGIN,
                    "idempotency_key": debt_key,
                    "kind": "debt_payment",
                    "request": request,
                }
            ],
        )
        tx_id, created_at = inserted[(DEBT_ORIGIN, debt_key)]
        digest = transaction_digest(
            tx_id, DEBT_ORIGIN, debt_key, "debt_payment", request, created_at
        )
        _pay_debt_from(lots, writer, accounts, restored, tx_id, digest)
    await repo.write_resolution(
        session,
        postings=writer.postings,
        states=accounts.states.values(),
        movements=lots.movements,
        remainders=lots.remainders,
        resolution={
            "hold_id": hold_id,
            "outcome": outcome,
            "amount_posted": 0,
            "transaction_id": None,
            "origin": origin,
            "idempotency_key": key,
            "request": content,
        },
    )
    if outcome in metrics.HOLD_OUTCOMES:
        metrics.count_hold(session, outcome)
    return ResolutionResult(Status.CREATED, hold_id, outcome, 0, None)


def _existing_resolution(
    row: HoldResolution, origin: str, key: str, content: dict[str, Any]
) -> ResolutionResult:
    differing = _differences(row.request, content)
    if differing:
        raise _conflict(origin, key, differing)
    return ResolutionResult(
        Status.EXISTS, row.hold_id, row.outcome, row.amount_posted, row.transaction_id
    )
