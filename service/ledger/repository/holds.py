"""Holds and their resolutions: a hold's three statements (lock, lots, write) and a capture's
(begin, resolution and lots under the lock, write), on the driver."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import driver, json_rows, json_text
from service.ledger.plan import (
    AccountState,
)
from service.ledger.repository.postings import (
    OpenLot,
    StoredTransaction,
    _account_rows,
    _holds,
    _insert_postings_sql,
    _locked_state,
    _posting_rows,
    _resolutions,
    _save_accounts_sql,
)

_LOCK_HOLD_ACCOUNTS = text(
    """
    SELECT id, code, asset, bounded, posted, held, chain_seq, chain_hash
    FROM ledger_accounts
    WHERE id = ANY(:ids) OR code = :debt
       OR (code = ANY(:issuance)
           AND EXISTS (SELECT 1 FROM ledger_accounts AS d WHERE d.code = :debt))
    ORDER BY id FOR NO KEY UPDATE
    """
)


async def lock_hold_accounts(
    session: AsyncSession, ids: Sequence[int], debt_code: str, issuance_codes: Sequence[str]
) -> tuple[dict[str, int], dict[int, AccountState]]:
    """Lock, in id order and in one statement, the accounts `ids`, the DEBT account
    `debt_code` if it exists and, only then, the issuance shards `issuance_codes`. Returns
    the ids of the accounts found by code, and every locked account's state by id."""
    rows = await session.execute(
        _LOCK_HOLD_ACCOUNTS,
        {"ids": sorted(set(ids)), "debt": debt_code, "issuance": list(issuance_codes)},
    )
    codes: dict[str, int] = {}
    states: dict[int, AccountState] = {}
    for row in rows:
        if row.code in (debt_code, *issuance_codes):
            codes[row.code] = row.id
        states[row.id] = AccountState(
            row.id,
            row.asset,
            row.bounded,
            row.posted,
            row.held,
            row.chain_seq,
            bytes(row.chain_hash),
        )
    return codes, states


_LOCK_FOR_HOLD = (
    # The participant's POINTS account locked (a hold changes only its `held`), and the id of
    # the merchant's settlement shard (not locked: a hold posts nothing to it).
    """
    SELECT a.id, a.asset, a.bounded, a.posted, a.held, a.chain_seq, a.chain_hash,
           (SELECT m.id FROM ledger_accounts AS m WHERE m.code = $2) AS merchant_id
    FROM ledger_accounts AS a
    WHERE a.code = $1
    FOR NO KEY UPDATE OF a
    """
)


async def lock_for_hold(
    session: AsyncSession, participant_code: str, merchant_code: str
) -> tuple[AccountState, int | None] | None:
    """The participant's account, locked, and the merchant shard's id (None if it does not
    exist yet); None when the participant has no account. One statement, on the driver."""
    connection = await driver(session)
    row = await connection.fetchrow(_LOCK_FOR_HOLD, participant_code, merchant_code)
    if row is None:
        return None
    return _locked_state(row), row["merchant_id"]


_WRITE_HOLD = (
    # Everything a new hold writes, in one statement. When the key was used before (ON
    # CONFLICT), `h` is empty and nothing else is written.
    """
    WITH h AS (
        INSERT INTO ledger_holds
            (origin, idempotency_key, request, account_id, counter_account_id, amount, expires_at)
        VALUES ($1, $2, CAST($3 AS jsonb), $4, $5, $6, $7)
        ON CONFLICT (origin, idempotency_key) DO NOTHING
        RETURNING id
    ), moved AS (
        INSERT INTO ledger_lot_movements (lot_id, kind, amount, hold_id)
        SELECT m.lot, 'hold', -m.taken, h.id
        FROM h, json_to_recordset(CAST($8 AS json)) AS m(lot bigint, taken bigint)
    ), lots AS (
        UPDATE ledger_lots AS l SET remaining = m.remaining
        FROM json_to_recordset(CAST($8 AS json)) AS m(lot bigint, remaining bigint)
        WHERE l.id = m.lot AND EXISTS (SELECT 1 FROM h)
    ), account AS (
        UPDATE ledger_accounts SET held = held + $6
        WHERE id = $4 AND EXISTS (SELECT 1 FROM h)
    )
    SELECT id FROM h
    """
)


async def write_hold(
    session: AsyncSession,
    row: dict[str, Any],
    taken: dict[int, int],
    remaining: dict[int, int],
) -> int | None:
    """Insert the hold, its lot movements and the lots' remainders, and add its amount to
    the participant's `held`: one statement. None (and nothing written) when the hold's key
    exists. `taken` and `remaining` are by lot id; the caller holds the account's lock."""
    lots = json_rows(
        lot=list(taken), taken=list(taken.values()), remaining=[remaining[i] for i in taken]
    )
    connection = await driver(session)
    hold_id: int | None = await connection.fetchval(
        _WRITE_HOLD,
        row["origin"],
        row["key"],
        json_text(row["request"]),
        row["account"],
        row["counter"],
        row["amount"],
        row["expires_at"],
        lots,
    )
    return hold_id


_BEGIN_CAPTURE = (
    # A capture's first statement: the hold, its transaction inserted (ON CONFLICT: a retry
    # of this key inserts nothing, and waits for a concurrent one), and every account the
    # capture may touch locked in id order: the hold's two accounts, the participant's DEBT
    # account if it exists and, only then, the issuance shards. No row of the hold's lots or
    # resolution is read here: a statement that waited for a lock sees them as they were
    # before the wait; they are read by the next statement, under the lock.
    """
    WITH hold AS (
        SELECT id, account_id, counter_account_id, amount, expires_at, request
        FROM ledger_holds WHERE id = $1 AND request ->> 'participant_id' = $7
    ), tx AS (
        INSERT INTO ledger_transactions (origin, idempotency_key, kind, request)
        SELECT $2, $3, 'redemption',
               jsonb_build_object('hold_id', hold.id, 'outcome', 'posted',
                                  'amount', CAST($4 AS bigint),
                                  'participant_account', hold.account_id,
                                  'merchant_account', hold.counter_account_id)
        FROM hold WHERE CAST($4 AS bigint) <= hold.amount
        ON CONFLICT (origin, idempotency_key) DO NOTHING
        RETURNING id, created_at, request
    )
    SELECT a.id, a.code, a.asset, a.bounded, a.posted, a.held, a.chain_seq, a.chain_hash,
           hold.account_id AS hold_account, hold.counter_account_id AS hold_counter,
           hold.amount AS hold_amount, hold.expires_at AS hold_expires_at,
           hold.request AS hold_request,
           tx.id AS tx_id, tx.created_at AS tx_created_at, tx.request AS tx_request
    FROM ledger_accounts AS a CROSS JOIN hold LEFT JOIN tx ON true
    WHERE a.id = ANY(ARRAY[(SELECT account_id FROM hold), (SELECT counter_account_id FROM hold)])
       OR a.code = $5
       OR (a.code = ANY($6)
           AND EXISTS (SELECT 1 FROM ledger_accounts AS d WHERE d.code = $5))
    ORDER BY a.id
    FOR NO KEY UPDATE OF a
    """
)


@dataclass(frozen=True, slots=True)
class CaptureStart:
    """What a capture's first statement found: the hold, its new transaction (None when the
    key was used before or the amount exceeds the hold), and the locked accounts."""

    account_id: int
    counter_account_id: int
    amount: int
    expires_at: datetime
    request: dict[str, Any]
    transaction: StoredTransaction | None
    codes: dict[str, int]
    states: dict[int, AccountState]


async def begin_capture(
    session: AsyncSession,
    *,
    hold_id: int,
    origin: str,
    key: str,
    amount: int,
    debt_code: str,
    issuance_codes: Sequence[str],
    participant_id: uuid.UUID,
) -> CaptureStart | None:
    """Insert the capture's transaction and lock its accounts: one statement (see
    `_BEGIN_CAPTURE`). None, with nothing written or locked, when there is no such hold of
    `participant_id`."""
    connection = await driver(session)
    rows = await connection.fetch(
        _BEGIN_CAPTURE,
        hold_id,
        origin,
        key,
        amount,
        debt_code,
        list(issuance_codes),
        str(participant_id),
    )
    if not rows:
        return None
    first = rows[0]
    transaction = (
        StoredTransaction(first["tx_id"], "redemption", first["tx_request"], first["tx_created_at"])
        if first["tx_id"] is not None
        else None
    )
    by_code = (debt_code, *issuance_codes)
    return CaptureStart(
        first["hold_account"],
        first["hold_counter"],
        first["hold_amount"],
        first["hold_expires_at"],
        first["hold_request"],
        transaction,
        {row["code"]: row["id"] for row in rows if row["code"] in by_code},
        {row["id"]: _locked_state(row) for row in rows},
    )


_RESOLUTION_AND_LOTS = (
    # Under the accounts' lock: the hold's resolution, if any, and (for a partial capture)
    # the lots it took from, with what it still takes from each and what each has left,
    # latest-expiring first (the order points go back in). One row shape for both: plain
    # columns, no arrays (an array type costs asyncpg a type introspection per connection).
    """
    SELECT true AS is_resolution, r.outcome, r.amount_posted, r.transaction_id, r.origin,
           r.idempotency_key, r.request, NULL::bigint AS lot_id, NULL::bigint AS taken,
           NULL::bigint AS remaining, NULL::timestamptz AS expires_at
    FROM ledger_hold_resolutions AS r WHERE r.hold_id = $1
    UNION ALL
    SELECT false, NULL, NULL, NULL, NULL, NULL, NULL, m.lot_id, CAST(-m.net AS bigint),
           m.remaining, m.expires_at
    FROM (
        SELECT mv.lot_id, l.expires_at, l.remaining, sum(mv.amount) AS net
        FROM ledger_lot_movements AS mv JOIN ledger_lots AS l ON l.id = mv.lot_id
        WHERE mv.hold_id = $1 AND $2
        GROUP BY mv.lot_id, l.expires_at, l.remaining
    ) AS m
    WHERE m.net < 0
    ORDER BY is_resolution DESC, expires_at DESC, lot_id DESC
    """
)


@dataclass(frozen=True, slots=True)
class HoldResolution:
    hold_id: int
    outcome: str
    amount_posted: int
    transaction_id: int | None
    origin: str
    idempotency_key: str
    request: dict[str, Any]


async def resolution_and_taken_lots(
    session: AsyncSession, hold_id: int, *, partial: bool
) -> tuple[HoldResolution | None, list[tuple[OpenLot, int]]]:
    """The hold's resolution, and, when `partial`, the lots it took from with how much it
    still takes from each (latest-expiring first). One statement; the caller holds the lock."""
    connection = await driver(session)
    rows = await connection.fetch(_RESOLUTION_AND_LOTS, hold_id, partial)
    resolution = next(
        (
            HoldResolution(
                hold_id,
                row["outcome"],
                row["amount_posted"],
                row["transaction_id"],
                row["origin"],
                row["idempotency_key"],
                row["request"],
            )
            for row in rows
            if row["is_resolution"]
        ),
        None,
    )
    lots = [
        (OpenLot(row["lot_id"], row["remaining"], row["expires_at"]), row["taken"])
        for row in rows
        if not row["is_resolution"]
    ]
    return resolution, lots


# Postings, lot movements and the lots' new remainders, and the locked accounts' balances:
# what a hold's resolution or a refund writes. (Constant fragments only; every value is a
# bound parameter.)
_POSTINGS_AND_LOTS_CTES = (
    "WITH postings AS ("  # noqa: S608
    + _insert_postings_sql("$1")
    + """
    ), moved AS (
        INSERT INTO ledger_lot_movements (lot_id, kind, amount, hold_id, transaction_id)
        SELECT lot, kind, amount, hold, tx
        FROM json_to_recordset(CAST($3 AS json))
             AS m(lot bigint, kind text, amount bigint, hold bigint, tx bigint)
    ), lots AS (
        UPDATE ledger_lots AS l SET remaining = m.remaining
        FROM json_to_recordset(CAST($4 AS json)) AS m(lot bigint, remaining bigint)
        WHERE l.id = m.lot
    )"""
)
_WRITE_POSTINGS_AND_LOTS = _POSTINGS_AND_LOTS_CTES + _save_accounts_sql("$2")
# ... and the hold's resolution with them.
_WRITE_RESOLUTION = (
    _POSTINGS_AND_LOTS_CTES  # noqa: S608 (constant fragments; values are bound)
    + """, resolution AS (
        INSERT INTO ledger_hold_resolutions
            (hold_id, outcome, amount_posted, transaction_id, origin, idempotency_key, request)
        VALUES ($5, $6, $7, $8, $9, $10, CAST($11 AS jsonb))
    )
    """
    + _save_accounts_sql("$2")
)


def _postings_and_lots_args(
    postings: Sequence[dict[str, Any]],
    states: Iterable[AccountState],
    movements: Sequence[dict[str, Any]],
    remainders: dict[int, int],
) -> tuple[str, str, str, str]:
    return (
        _posting_rows(postings),
        _account_rows(states),
        json_rows(
            lot=[m["lot_id"] for m in movements],
            kind=[m["kind"] for m in movements],
            amount=[m["amount"] for m in movements],
            hold=[m["hold_id"] for m in movements],
            tx=[m["transaction_id"] for m in movements],
        ),
        json_rows(lot=sorted(remainders), remaining=[remainders[i] for i in sorted(remainders)]),
    )


async def write_resolution(
    session: AsyncSession,
    *,
    postings: Sequence[dict[str, Any]],
    states: Iterable[AccountState],
    movements: Sequence[dict[str, Any]],
    remainders: dict[int, int],
    resolution: dict[str, Any],
) -> None:
    """A hold's resolution with all it writes: one statement (see `_WRITE_RESOLUTION`)."""
    connection = await driver(session)
    await connection.execute(
        _WRITE_RESOLUTION,
        *_postings_and_lots_args(postings, states, movements, remainders),
        resolution["hold_id"],
        resolution["outcome"],
        resolution["amount_posted"],
        resolution["transaction_id"],
        resolution["origin"],
        resolution["idempotency_key"],
        json_text(resolution["request"]),
    )


async def write_postings_and_lots(
    session: AsyncSession,
    *,
    postings: Sequence[dict[str, Any]],
    states: Iterable[AccountState],
    movements: Sequence[dict[str, Any]],
    remainders: dict[int, int],
) -> None:
    """Postings, lot movements, remainders and balances: one statement (a refund's write)."""
    connection = await driver(session)
    await connection.execute(
        _WRITE_POSTINGS_AND_LOTS,
        *_postings_and_lots_args(postings, states, movements, remainders),
    )


_HOLD_COLUMNS = (
    _holds.c.id,
    _holds.c.origin,
    _holds.c.idempotency_key,
    _holds.c.request,
    _holds.c.account_id,
    _holds.c.counter_account_id,
    _holds.c.amount,
    _holds.c.expires_at,
    _holds.c.created_at,
)


_GET_HOLD = select(*_HOLD_COLUMNS).where(_holds.c.id == bindparam("hold_id"))


_FIND_HOLD = select(*_HOLD_COLUMNS).where(
    _holds.c.origin == bindparam("origin"), _holds.c.idempotency_key == bindparam("key")
)


_FIND_RESOLUTION = select(_resolutions).where(
    _resolutions.c.origin == bindparam("origin"),
    _resolutions.c.idempotency_key == bindparam("key"),
)


@dataclass(frozen=True, slots=True)
class StoredHold:
    id: int
    origin: str
    idempotency_key: str
    request: dict[str, Any]
    account_id: int
    counter_account_id: int
    amount: int
    expires_at: datetime
    created_at: datetime


def _hold(row: Any) -> StoredHold | None:
    return None if row is None else StoredHold(*row)


def _resolution(row: Any) -> HoldResolution | None:
    if row is None:
        return None
    return HoldResolution(
        row.hold_id,
        row.outcome,
        row.amount_posted,
        row.transaction_id,
        row.origin,
        row.idempotency_key,
        row.request,
    )


async def get_hold(session: AsyncSession, hold_id: int) -> StoredHold | None:
    return _hold((await session.execute(_GET_HOLD, {"hold_id": hold_id})).first())


async def find_hold(session: AsyncSession, origin: str, key: str) -> StoredHold | None:
    return _hold((await session.execute(_FIND_HOLD, {"origin": origin, "key": key})).first())


async def find_resolution(session: AsyncSession, origin: str, key: str) -> HoldResolution | None:
    return _resolution(
        (await session.execute(_FIND_RESOLUTION, {"origin": origin, "key": key})).first()
    )


async def overdue_holds(session: AsyncSession, now: datetime, limit: int) -> list[int]:
    rows = await session.execute(
        select(_holds.c.id)
        .outerjoin(_resolutions, _resolutions.c.hold_id == _holds.c.id)
        .where(_holds.c.expires_at <= now, _resolutions.c.hold_id.is_(None))
        .order_by(_holds.c.id)
        .limit(limit)
    )
    return [row[0] for row in rows]


def hold_is_live_sql(hold_id: str) -> str:
    """SQL that is true while the hold whose id is the expression `hold_id` is pending or
    captured (not voided or expired): the ledger's own condition, for another domain's query
    that counts what holds still take (an offer's stock), so that it never names the
    ledger's tables itself."""
    return (
        "NOT EXISTS (SELECT 1 FROM ledger_hold_resolutions AS live_res"  # noqa: S608
        f" WHERE live_res.hold_id = {hold_id} AND live_res.outcome <> 'posted')"
    )
