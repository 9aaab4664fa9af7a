"""Ledger operations. Each takes the session first and never commits.

Rules every operation follows, so that no two can deadlock and no number can drift:

* Lock order: idempotency keys first (inserted in sorted order), then account rows
  (`SELECT ... FOR NO KEY UPDATE` in ascending id order). Lots are only read or
  changed under their account's lock. One ledger operation per database transaction.
* Idempotency (TigerBeetle's semantics): every operation carries (origin, key).
  The same key with the same content returns the original result with status
  `exists`; with different content it is a conflict naming the differing fields.
  A request that fails (not enough points, hold expired) writes nothing and is
  not remembered: a retry is evaluated afresh.
* Materialised state (balances, chain heads, lot remainders) is written in the
  same database transaction as the postings it summarises; the database's CHECK
  constraints refuse any negative available balance even if this code erred.
* The program's issuance account is 64 shards per asset; each call picks one at
  random, so concurrent batches do not queue on one balance row.
* Debt (points a reversal could not claw back) is the `DEBT` asset: posted and
  chained like points. Points that come back to a participant who owes (a voided
  hold, a refund) pay the debt before they can be spent again; so do new credits.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import Reader, reader
from service.ledger import repository as repo
from service.ledger.chain import link, posting_digest, transaction_digest
from service.ledger.errors import (
    AlreadyReversedError,
    HoldAlreadyResolvedError,
    HoldExpiredError,
    HoldNotFoundError,
    IdempotencyConflictError,
    InsufficientPointsError,
    InvalidAmountError,
    NothingToRefundError,
    TransactionNotFoundError,
)
from service.ledger.plan import AccountState, plan_credits
from service.ledger.repository import OpenLot, StoredTransaction
from service.ledger.schemas import (
    Asset,
    Balance,
    CreditRequest,
    CreditResult,
    HoldResult,
    HoldState,
    ResolutionResult,
    SettlementLine,
    Status,
    TransferResult,
)

JOBS_ORIGIN = "ledger.jobs"
DEBT_ORIGIN = "ledger.debt"
# Shenzhen's 2022 rules: points may live at most ten years.
MAX_VALIDITY = timedelta(days=3653)
_EXPIRY_LOCK = 0x6C65_6467_6572  # pg_advisory_xact_lock key: one expiry run at a time


def _differences(stored: dict[str, Any], wanted: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(k for k in stored.keys() | wanted.keys() if stored.get(k) != wanted.get(k)))


def _conflict(origin: str, key: str, fields: Sequence[str]) -> IdempotencyConflictError:
    return IdempotencyConflictError(
        f"idempotency key {key!r} of {origin!r} was first used with different {', '.join(fields)}",
        fields=list(fields),
    )


def _aware(moment: datetime, name: str) -> None:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise InvalidAmountError(f"{name} must be a datetime with a time zone")


def _whole(name: str, value: object, minimum: int) -> int:
    """Invariant 9: amounts are Python ints (never bool, float or Decimal) within bounds."""
    if type(value) is not int or value < minimum or value > 2**62:
        raise InvalidAmountError(f"{name} must be a whole number >= {minimum}, not {value!r}")
    return value


def _shard() -> int:
    return secrets.randbelow(repo.ISSUANCE_SHARDS)


class _Writer:
    """Postings for locked accounts: updates balances and extends each account's chain."""

    def __init__(self, states: dict[int, AccountState]) -> None:
        self.states = states
        self.postings: list[dict[str, Any]] = []

    def post(self, transaction_id: int, digest: bytes, account_id: int, amount: int) -> None:
        if amount == 0:
            return
        state = self.states[account_id]
        state.chain_seq += 1
        state.chain_hash = link(
            state.chain_hash,
            posting_digest(digest, account_id, state.asset, amount, state.chain_seq),
        )
        state.posted += amount
        self.postings.append(
            {
                "transaction_id": transaction_id,
                "account_id": account_id,
                "asset": state.asset,
                "amount": amount,
                "account_seq": state.chain_seq,
                "chain_hash": state.chain_hash,
            }
        )

    async def flush(self, session: AsyncSession) -> None:
        await repo.post_and_save(session, self.postings, self.states.values())
        self.postings = []


def _participant_account_rows(
    participant_ids: set[uuid.UUID], assets: Sequence[Asset]
) -> list[dict[str, Any]]:
    return [
        {
            "code": repo.participant_account_code(pid, asset.value),
            "owner_type": "participant",
            "owner_id": pid,
            "asset": asset.value,
            "kind": "participant",
            "bounded": True,
        }
        for pid in participant_ids
        for asset in assets
    ]


# --- credits ------------------------------------------------------------------------------


async def credit(
    session: AsyncSession, requests: Sequence[CreditRequest], *, now: datetime | None = None
) -> list[CreditResult]:
    """Credit a batch (one or many): one transaction and at most one lot per new request.

    A credit first pays off any debt left by an earlier reversal; the rest opens
    a lot that expires at `expires_at` (after `now`, at most ten years on).
    Returns one result per request, in order.
    """
    moment = now or datetime.now(UTC)
    _check_credits(requests, moment)

    first_by_key: dict[tuple[str, str], CreditRequest] = {}
    for request in requests:
        first_by_key.setdefault((request.origin, request.key), request)
    inserted = await repo.insert_transactions(
        session,
        [
            {"origin": o, "idempotency_key": k, "kind": "credit", "request": r.content()}
            for (o, k), r in first_by_key.items()
        ],
    )
    existing = await repo.find_transactions(
        session, [key for key in first_by_key if key not in inserted]
    )
    fresh = [r for key, r in first_by_key.items() if key in inserted]
    results_by_key = await _apply_credits(session, fresh, inserted) if fresh else {}
    replayed = await repo.lots_of_transactions(
        session, [tx.id for tx in existing.values() if tx.kind == "credit"]
    )
    for key, stored in existing.items():
        if stored.kind != "credit":
            continue
        lot_id, lot_amount = replayed.get(stored.id, (None, 0))
        results_by_key[key] = CreditResult(
            Status.EXISTS, stored.id, lot_id, int(stored.request["points"]) - lot_amount
        )

    results: list[CreditResult] = []
    for request in requests:
        key = (request.origin, request.key)
        first = first_by_key[key]
        if key in inserted and first is request:
            results.append(results_by_key[key])
            continue
        stored_content = (
            first.content()
            if key in inserted
            else (existing[key].request if existing[key].kind == "credit" else {"kind": "other"})
        )
        differing = _differences(stored_content, request.content())
        if differing:
            results.append(CreditResult(Status.CONFLICT, None, conflicting_fields=differing))
        else:
            original = results_by_key[key]
            results.append(
                CreditResult(
                    Status.EXISTS, original.transaction_id, original.lot_id, original.debt_paid
                )
            )
    return results


def _check_credits(requests: Sequence[CreditRequest], moment: datetime) -> None:
    _aware(moment, "now")
    for request in requests:
        _whole("points", request.points, 0)
        _whole("grams", request.grams, 0)
        if request.points + request.grams == 0:
            raise InvalidAmountError(f"credit {request.key!r}: points and grams are both zero")
        _aware(request.expires_at, "expires_at")
        if not moment < request.expires_at <= moment + MAX_VALIDITY:
            raise InvalidAmountError(
                f"credit {request.key!r}: expires_at must be after now and at most ten years on"
            )


@dataclass(slots=True)
class CreditContext:
    """The locked accounts and reserved ids for crediting a set of participants.

    Holding one means this database transaction holds the row locks of those participants'
    POINTS, GCO2E (and DEBT, if any) accounts, and of one issuance shard per asset: crediting
    them is serialised with every other writer of those accounts until commit.
    """

    participants: frozenset[uuid.UUID]
    accounts: dict[str, AccountState]
    shards: dict[Asset, str]
    transaction_ids: list[int]
    lot_ids: list[int]


async def lock_for_credits(
    session: AsyncSession,
    participant_ids: Sequence[uuid.UUID],
    *,
    capacity: int,
    with_transactions: bool = True,
) -> CreditContext:
    """Create missing accounts, reserve ids for up to `capacity` credits, lock. Two statements.

    The caller decides what to credit under these locks (caps and de-duplication read state
    that only changes under them), then calls `post_credits`.
    """
    participants = frozenset(participant_ids)
    transaction_ids, lot_ids = await repo.ensure_participant_accounts_and_reserve(
        session, participants, transactions=capacity if with_transactions else 0, lots=capacity
    )
    codes = [
        repo.participant_account_code(pid, asset.value) for pid in participants for asset in Asset
    ]
    accounts, shards = await repo.lock_for_credits(session, codes)
    return CreditContext(
        participants,
        accounts,
        {Asset(asset): code for asset, code in shards.items()},
        transaction_ids,
        lot_ids,
    )


async def post_credits(
    session: AsyncSession,
    context: CreditContext,
    requests: Sequence[CreditRequest],
    *,
    now: datetime,
) -> list[CreditResult]:
    """Post credits whose idempotency keys are new by construction (the caller owns them,
    e.g. one per claimed event): planned in memory, written in one statement, nothing read
    back. Each request's participant must be one `context` locked."""
    _check_credits(requests, now)
    if not requests:
        return []
    if len(requests) > len(context.transaction_ids):
        raise InvalidAmountError(
            f"{len(requests)} credits, ids reserved for {len(context.transaction_ids)}"
        )
    for request in requests:
        if request.participant_id not in context.participants:
            raise InvalidAmountError(f"credit {request.key!r}: its participant is not locked")
    writes = plan_credits(
        list(requests),
        transaction_ids=context.transaction_ids,
        lot_ids=context.lot_ids,
        accounts=context.accounts,
        issuance=context.shards,
        created_at=now,
    )
    del context.transaction_ids[: len(writes.tx_id)]
    del context.lot_ids[: len(writes.lot_id)]
    await repo.write_credits(session, writes)
    return writes.results


async def _apply_credits(
    session: AsyncSession,
    fresh: list[CreditRequest],
    inserted: dict[tuple[str, str], tuple[int, datetime]],
) -> dict[tuple[str, str], CreditResult]:
    ordered = sorted(fresh, key=lambda r: (r.origin, r.key))
    context = await lock_for_credits(
        session, [r.participant_id for r in ordered], capacity=len(ordered), with_transactions=False
    )
    writes = plan_credits(
        ordered,
        transaction_ids=(),
        lot_ids=context.lot_ids,
        accounts=context.accounts,
        issuance=context.shards,
        created_at=datetime.now(UTC),
        known_transactions=inserted,
    )
    await repo.write_credits(session, writes)
    return {(r.origin, r.key): result for r, result in zip(ordered, writes.results, strict=True)}


# --- holds (two-phase) ---------------------------------------------------------------------


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
        raise InsufficientPointsError("the participant has no points yet", available=0)
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
            f"{amount} points requested, {available} available", available=available
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


def _existing_hold(row: Any, origin: str, key: str, content: dict[str, Any]) -> HoldResult:
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


async def _lock_for_hold(session: AsyncSession, hold: Any) -> _HoldAccounts:
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
            raise HoldNotFoundError(f"no hold {hold_id}")
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
    )
    if start is None or start.request["participant_id"] != str(participant_id):
        raise HoldNotFoundError(f"no hold {hold_id}")
    if amount > start.amount:
        raise InvalidAmountError(f"post between 1 and {start.amount} points, not {amount}")
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
            f"hold {hold_id} was already {resolution.outcome}", outcome=resolution.outcome
        )
    if now >= start.expires_at:
        raise HoldExpiredError(f"hold {hold_id} expired at {start.expires_at.isoformat()}")

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
    pay = min(accounts.owes, sum(given for _, given in restored))
    if pay:
        lots.take(restored, pay, kind="debt", transaction_id=tx.id)
        _post_debt_payment(writer, accounts, pay, tx.id, digest)
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
    return ResolutionResult(
        Status.CREATED, hold_id, "posted", amount, tx.id, hold_expires_at=start.expires_at
    )


class _LotChanges:
    """Lot movements and remainders decided in memory, written by one statement."""

    def __init__(self) -> None:
        self.movements: list[dict[str, Any]] = []
        self.remainders: dict[int, int] = {}

    def give_back(
        self, taken: Sequence[tuple[OpenLot, int]], amount: int, *, hold_id: int
    ) -> list[tuple[OpenLot, int]]:
        """Return `amount` of what a hold took to its lots, latest-expiring first (the
        order of `taken`); the lots given to and how much each got."""
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
                f"only {amount - left} of {amount} points can go back to lots"
            )
        for lot, give in given:
            self._move(lot, give, kind="release", hold_id=hold_id)
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
        raise HoldNotFoundError(f"no hold {hold_id}")
    accounts = await _lock_for_hold(session, hold)
    existing = await _unresolved_or_same(session, hold_id, origin, key, content)
    if existing is not None:
        return existing
    accounts.states[hold.account_id].held -= hold.amount
    restored = await _release(session, hold_id, hold.amount, kind="release")
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
        await _pay_debt(session, writer, accounts, restored, tx_id, digest)
    await writer.flush(session)
    await repo.insert_resolution(
        session,
        {
            "hold_id": hold_id,
            "outcome": outcome,
            "amount_posted": 0,
            "transaction_id": None,
            "origin": origin,
            "idempotency_key": key,
            "request": content,
        },
    )
    return ResolutionResult(Status.CREATED, hold_id, outcome, 0, None)


async def _unresolved_or_same(
    session: AsyncSession, hold_id: int, origin: str, key: str, content: dict[str, Any]
) -> ResolutionResult | None:
    """None when the hold is still pending; the original result for a concurrent retry."""
    resolution = await repo.get_resolution(session, hold_id)
    if resolution is None:
        return None
    if (resolution.origin, resolution.idempotency_key) == (origin, key):
        return _existing_resolution(resolution, origin, key, content)
    raise HoldAlreadyResolvedError(
        f"hold {hold_id} was already {resolution.outcome}", outcome=resolution.outcome
    )


def _existing_resolution(
    row: Any, origin: str, key: str, content: dict[str, Any]
) -> ResolutionResult:
    differing = _differences(row.request, content)
    if differing:
        raise _conflict(origin, key, differing)
    return ResolutionResult(
        Status.EXISTS, row.hold_id, row.outcome, row.amount_posted, row.transaction_id
    )


async def _release(
    session: AsyncSession,
    hold_id: int,
    amount: int,
    *,
    kind: str,
    transaction_id: int | None = None,
) -> list[tuple[OpenLot, int]]:
    """Give `amount` back to the lots the hold took, latest-expiring first.

    Returns the lots given to (updated) and how much each got.
    """
    if amount == 0:
        return []
    consumption = await repo.hold_lot_consumption(session, hold_id)
    lots = await repo.lots_by_id(session, [lot_id for lot_id, _ in consumption])
    giving: dict[int, int] = {}
    left = amount
    for lot_id, taken in consumption:
        give = min(taken, left)
        giving[lot_id] = give
        left -= give
        if left == 0:
            break
    if left:
        raise NothingToRefundError(f"only {amount - left} of {amount} points can go back to lots")
    await _move_lots(
        session,
        list(lots.values()),
        giving,
        kind=kind,
        sign=+1,
        hold_id=hold_id,
        transaction_id=transaction_id,
    )
    return [(lots[lot_id], give) for lot_id, give in giving.items()]


async def _pay_debt(
    session: AsyncSession,
    writer: _Writer,
    accounts: _HoldAccounts,
    restored: list[tuple[OpenLot, int]],
    tx_id: int,
    digest: bytes,
) -> int:
    """Use points just restored to lots to pay the participant's debt; returns the amount."""
    pay = min(accounts.owes, sum(given for _, given in restored))
    if pay == 0:
        return 0
    if accounts.debt is None or accounts.issuance_points is None or accounts.issuance_debt is None:
        raise RuntimeError("debt payment without the debt and issuance accounts locked")
    taking: dict[int, int] = {}
    left = pay
    for lot, given in restored:
        take = min(given, lot.remaining, left)
        if take:
            taking[lot.id] = take
            left -= take
    await _move_lots(
        session, [lot for lot, _ in restored], taking, kind="debt", sign=-1, transaction_id=tx_id
    )
    writer.post(tx_id, digest, accounts.participant, -pay)
    writer.post(tx_id, digest, accounts.issuance_points, pay)
    writer.post(tx_id, digest, accounts.debt, -pay)
    writer.post(tx_id, digest, accounts.issuance_debt, pay)
    return pay


# --- refunds and reversals -----------------------------------------------------------------


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
    restored = await _release(session, hold.id, amount, kind="refund", transaction_id=tx_id)
    writer = _Writer(accounts.states)
    digest = transaction_digest(tx_id, origin, key, "refund", content, created_at)
    writer.post(tx_id, digest, hold.counter_account_id, -amount)
    writer.post(tx_id, digest, hold.account_id, amount)
    await _pay_debt(session, writer, accounts, restored, tx_id, digest)
    await writer.flush(session)
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
    writer.post(tx_id, digest, account(Asset.GRAMS), -grams)
    writer.post(tx_id, digest, ids[issuance[Asset.GRAMS]], grams)
    writer.post(tx_id, digest, account(Asset.DEBT), left)
    writer.post(tx_id, digest, ids[issuance[Asset.DEBT]], -left)
    await writer.flush(session)
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


# --- jobs ----------------------------------------------------------------------------------


async def expire_lots(session: AsyncSession, *, now: datetime, batch_size: int = 500) -> int:
    """Expire up to `batch_size` due lots; returns how many lots it expired.

    One expiry transaction per account per batch, keyed by the lots and their
    latest movement, so a retried batch is recognised and a lot refilled later
    (a voided hold, a refund) expires again under a new key. Run it in a loop,
    one commit per batch: after a crash it resumes where the last commit ended.
    """
    _aware(now, "now")
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _EXPIRY_LOCK})
    due = await repo.due_lots(session, now, batch_size)
    if not due:
        return 0
    by_account: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for lot_id, account_id, last_movement in due:
        by_account[account_id].append((lot_id, int(last_movement)))
    expiry_account = (await repo.account_ids_by_code(session, [repo.EXPIRY_ACCOUNT_CODE]))[
        repo.EXPIRY_ACCOUNT_CODE
    ]
    states = await repo.lock_accounts(session, [*by_account, expiry_account])
    lots = await repo.lots_by_id(session, [lot_id for lot_id, _, _ in due])

    # Amounts are read after the locks: a hold may have taken points since the scan.
    amounts_by_account: dict[int, dict[int, int]] = {}
    rows: dict[int, dict[str, Any]] = {}
    for account_id, entries in by_account.items():
        amounts = {i: lots[i].remaining for i, _ in entries if lots[i].remaining > 0}
        if not amounts:
            continue
        amounts_by_account[account_id] = amounts
        fingerprint = hashlib.sha256(repr(sorted(entries)).encode()).hexdigest()[:40]
        rows[account_id] = {
            "origin": JOBS_ORIGIN,
            "idempotency_key": f"expire:{account_id}:{fingerprint}",
            "kind": "expiry",
            "request": {"account_id": account_id, "lots": [list(e) for e in sorted(entries)]},
        }
    inserted = await repo.insert_transactions(session, list(rows.values()))
    writer = _Writer(states)
    expired = 0
    for account_id, amounts in sorted(amounts_by_account.items()):
        row = rows[account_id]
        key: str = row["idempotency_key"]
        if (JOBS_ORIGIN, key) not in inserted:
            continue
        tx_id, created_at = inserted[(JOBS_ORIGIN, key)]
        total = sum(amounts.values())
        await _move_lots(
            session,
            [lots[i] for i in amounts],
            amounts,
            kind="expire",
            sign=-1,
            transaction_id=tx_id,
        )
        digest = transaction_digest(tx_id, JOBS_ORIGIN, key, "expiry", row["request"], created_at)
        writer.post(tx_id, digest, account_id, -total)
        writer.post(tx_id, digest, expiry_account, total)
        expired += len(amounts)
    await writer.flush(session)
    return expired


async def void_overdue_holds(session: AsyncSession, *, now: datetime, batch_size: int = 100) -> int:
    """Void holds whose timeout passed without a post (outcome `expired`); returns how many."""
    _aware(now, "now")
    voided = 0
    for hold_id in await repo.overdue_holds(session, now, batch_size):
        try:
            async with session.begin_nested():
                result = await void_hold(
                    session,
                    origin=JOBS_ORIGIN,
                    key=f"timeout:{hold_id}",
                    hold_id=hold_id,
                    outcome="expired",
                )
        except HoldAlreadyResolvedError:
            continue  # a till posted or voided it between the scan and the lock
        if result.status is Status.CREATED:  # not another runner's timeout of the same hold
            voided += 1
    return voided


# --- reads ---------------------------------------------------------------------------------


async def balance(source: AsyncSession | Reader, participant_id: uuid.UUID) -> Balance:
    """Available, held, debt and grams, with what expires when. One statement."""
    accounts: dict[str, tuple[int, int]] = {}
    expiring: list[tuple[datetime, int]] = []
    for asset, posted, held, expires_at in await repo.balance_rows(reader(source), participant_id):
        if asset == "LOT":
            expiring.append((expires_at, posted))
        else:
            accounts[asset] = (posted, held)
    posted, held = accounts.get("POINTS", (0, 0))
    return Balance(
        participant_id=participant_id,
        posted=posted,
        held=held,
        available=posted - held,
        debt=accounts.get("DEBT", (0, 0))[0],
        grams=accounts.get("GCO2E", (0, 0))[0],
        expiring=expiring,
    )


async def hold_state(session: AsyncSession, hold_id: int) -> HoldState:
    """Where a hold stands: pending, or resolved (posted, voided, expired), with what was
    captured and refunded since. One statement."""
    row = await repo.hold_state(session, hold_id)
    if row is None:
        raise HoldNotFoundError(f"no hold {hold_id}")
    return HoldState(
        hold_id=hold_id,
        expires_at=row.expires_at,
        outcome=row.outcome,
        amount_posted=row.amount_posted or 0,
        refunded=int(row.refunded or 0),
        transaction_id=row.transaction_id,
    )


async def history(
    source: AsyncSession | Reader,
    participant_id: uuid.UUID,
    *,
    before_seq: int | None,
    limit: int,
    kinds: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Sequence[Any]:
    """A page of the participant's points postings, newest first: rows of (account_seq,
    amount, kind, request, created_at). One statement."""
    return await repo.history_rows(
        reader(source),
        participant_id,
        before_seq=before_seq,
        limit=limit,
        kinds=kinds,
        since=since,
        until=until,
    )


async def settlement_lines(
    session: AsyncSession, merchant_id: uuid.UUID, *, start: datetime, end: datetime
) -> list[SettlementLine]:
    """Every capture (+) and refund (-) posted to a merchant's settlement accounts in
    [start, end), oldest first. One statement."""
    return [
        SettlementLine(at, kind, tx, amount)
        for at, kind, tx, amount in await repo.settlement_lines(session, merchant_id, start, end)
    ]
