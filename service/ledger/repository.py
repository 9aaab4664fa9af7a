"""All of the ledger's SQL. Functions take the session first and never commit."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import Reader, driver, json_rows, json_text
from service.ledger.plan import (
    MERCHANT_SHARDS,
    AccountState,
    CreditWrites,
    issuance_account_code,
    merchant_account_code,
    merchant_account_codes,
    participant_account_code,
)
from service.models import (
    LedgerAccount,
    LedgerHold,
    LedgerHoldResolution,
    LedgerLot,
    LedgerLotMovement,
    LedgerPosting,
    LedgerTransaction,
)

ISSUANCE_SHARDS = 64

__all__ = [
    "ISSUANCE_SHARDS",
    "MERCHANT_SHARDS",
    "AccountState",
    "issuance_account_code",
    "merchant_account_code",
    "merchant_account_codes",
    "participant_account_code",
]

_accounts = cast(Table, LedgerAccount.__table__)
_transactions = cast(Table, LedgerTransaction.__table__)
_postings = cast(Table, LedgerPosting.__table__)
_lots = cast(Table, LedgerLot.__table__)
_movements = cast(Table, LedgerLotMovement.__table__)
_holds = cast(Table, LedgerHold.__table__)
_resolutions = cast(Table, LedgerHoldResolution.__table__)


@dataclass(frozen=True, slots=True)
class StoredTransaction:
    id: int
    kind: str
    request: dict[str, Any]
    created_at: datetime


@dataclass(slots=True)
class OpenLot:
    id: int
    remaining: int
    expires_at: datetime


EXPIRY_ACCOUNT_CODE = "program:expiry:POINTS"


async def participant_side_totals(session: AsyncSession, transaction_id: int) -> dict[str, int]:
    """Per asset, what a transaction moved on participants' accounts (for replaying results)."""
    rows = await session.execute(
        select(_postings.c.asset, func.sum(_postings.c.amount))
        .join(_accounts, _accounts.c.id == _postings.c.account_id)
        .where(_postings.c.transaction_id == transaction_id)
        .where(_accounts.c.kind == "participant")
        .group_by(_postings.c.asset)
    )
    return {asset: int(total) for asset, total in rows}


async def lots_of_transactions(
    session: AsyncSession, ids: Sequence[int]
) -> dict[int, tuple[int, int]]:
    """transaction id -> (lot id, lot amount) for credits that opened a lot."""
    if not ids:
        return {}
    rows = await session.execute(
        select(_lots.c.transaction_id, _lots.c.id, _lots.c.amount).where(
            _lots.c.transaction_id.in_(list(ids))
        )
    )
    return {tx: (lot_id, amount) for tx, lot_id, amount in rows}


async def expired_from_lot(session: AsyncSession, lot_id: int) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(_movements.c.amount), 0)).where(
            _movements.c.lot_id == lot_id, _movements.c.kind == "expire"
        )
    )
    return -int(total or 0)


# The hold and capture paths' statements are built once, here, as plain SQL: building a
# Core statement and its cache key on every call cost more Python than the round trip.
_IDS_BY_CODE = text("SELECT code, id FROM ledger_accounts WHERE code = ANY(:codes)")


async def account_ids_by_code(session: AsyncSession, codes: Iterable[str]) -> dict[str, int]:
    rows = await session.execute(_IDS_BY_CODE, {"codes": list(codes)})
    return {code: account_id for code, account_id in rows}


async def ensure_accounts(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Create the accounts that do not exist (sorted by code: a fixed lock order).

    Looked up first: in steady state every account exists, and compiling a large insert that
    would do nothing is most of a batch's Python time.
    """
    ordered = sorted(rows, key=lambda row: str(row["code"]))
    found = await account_ids_by_code(session, (row["code"] for row in ordered))
    missing = [row for row in ordered if row["code"] not in found]
    if missing:
        await session.execute(
            insert(_accounts).on_conflict_do_nothing(index_elements=["code"]), missing
        )
        found.update(await account_ids_by_code(session, (row["code"] for row in missing)))
    return found


_LOCK_ACCOUNTS = text(
    # NO KEY UPDATE: inserting a posting, lot or hold takes KEY SHARE on its account through
    # the foreign key; FOR UPDATE would conflict with that and deadlock.
    """
    SELECT id, asset, bounded, posted, held, chain_seq, chain_hash
    FROM ledger_accounts WHERE id = ANY(:ids)
    ORDER BY id FOR NO KEY UPDATE
    """
)


async def lock_accounts(session: AsyncSession, ids: Iterable[int]) -> dict[int, AccountState]:
    """Row-lock accounts in ascending id order, the one lock order of the whole ledger."""
    rows = await session.execute(_LOCK_ACCOUNTS, {"ids": sorted(set(ids))})
    return {row.id: AccountState(*row) for row in rows}


# The two statements every write of postings is made of, as fragments: alone (`insert_postings`,
# `save_accounts`) or together in one statement (`post_and_save`, `write_credits`).
def _insert_postings_sql(rows: str) -> str:
    return f"""
    INSERT INTO ledger_postings (transaction_id, account_id, asset, amount, account_seq, chain_hash)
    SELECT tx, account, asset, amount, seq, decode(hash, 'hex')
    FROM json_to_recordset(CAST({rows} AS json))
         AS p(tx bigint, account bigint, asset text, amount bigint, seq bigint, hash text)
    """  # noqa: S608 (a placeholder's name, never a value)


def _save_accounts_sql(rows: str) -> str:
    return f"""
    UPDATE ledger_accounts AS a
    SET posted = s.posted, held = s.held, chain_seq = s.chain_seq,
        chain_hash = decode(s.chain_hash, 'hex')
    FROM json_to_recordset(CAST({rows} AS json))
         AS s(id bigint, posted bigint, held bigint, chain_seq bigint, chain_hash text)
    WHERE a.id = s.id
    """  # noqa: S608 (a placeholder's name, never a value)


_INSERT_POSTINGS_SQL = _insert_postings_sql(":postings")
_SAVE_ACCOUNTS_SQL = _save_accounts_sql(":accounts")
_SAVE_ACCOUNTS = text(_SAVE_ACCOUNTS_SQL)


def _account_rows(states: Iterable[AccountState]) -> str:
    ordered = sorted(states, key=lambda s: s.id)
    return json_rows(
        id=[s.id for s in ordered],
        posted=[s.posted for s in ordered],
        held=[s.held for s in ordered],
        chain_seq=[s.chain_seq for s in ordered],
        chain_hash=[s.chain_hash.hex() for s in ordered],
    )


async def save_accounts(session: AsyncSession, states: Iterable[AccountState]) -> None:
    """Balances and chain heads of locked accounts, in one statement."""
    states = list(states)
    if states:
        await session.execute(_SAVE_ACCOUNTS, {"accounts": _account_rows(states)})


async def insert_transactions(
    session: AsyncSession, rows: Sequence[dict[str, Any]], *, any_conflict: bool = False
) -> dict[tuple[str, str], tuple[int, datetime]]:
    """Insert new transactions; keys already present are skipped (and waited on if in flight).

    Rows go in sorted by key: two batches sharing keys then wait on each other in the
    same order and cannot deadlock. `any_conflict` also skips rows that hit another
    unique index (one reversal per credit).
    """
    if not rows:
        return {}
    ordered = sorted(rows, key=lambda row: (row["origin"], row["idempotency_key"]))
    # Rows as parameters of one cached statement, not a freshly compiled multi-row VALUES.
    statement = insert(_transactions)
    statement = (
        statement.on_conflict_do_nothing()
        if any_conflict
        else statement.on_conflict_do_nothing(index_elements=["origin", "idempotency_key"])
    )
    result = await session.execute(
        statement.returning(
            _transactions.c.origin,
            _transactions.c.idempotency_key,
            _transactions.c.id,
            _transactions.c.created_at,
        ),
        ordered,
    )
    return {(origin, key): (tx_id, created) for origin, key, tx_id, created in result}


async def find_transactions(
    session: AsyncSession, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], StoredTransaction]:
    wanted = list(keys)
    if not wanted:
        return {}
    rows = await session.execute(
        select(
            _transactions.c.origin,
            _transactions.c.idempotency_key,
            _transactions.c.id,
            _transactions.c.kind,
            _transactions.c.request,
            _transactions.c.created_at,
        ).where(tuple_(_transactions.c.origin, _transactions.c.idempotency_key).in_(wanted))
    )
    return {
        (row.origin, row.idempotency_key): StoredTransaction(
            row.id, row.kind, row.request, row.created_at
        )
        for row in rows
    }


async def get_transaction(session: AsyncSession, transaction_id: int) -> StoredTransaction | None:
    row = (
        await session.execute(
            select(
                _transactions.c.id,
                _transactions.c.kind,
                _transactions.c.request,
                _transactions.c.created_at,
            ).where(_transactions.c.id == transaction_id)
        )
    ).first()
    return StoredTransaction(row.id, row.kind, row.request, row.created_at) if row else None


async def sum_transactions_by_request(
    session: AsyncSession, kind: str, field: str, value: Any, amount_field: str
) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(_transactions.c.request[amount_field].as_integer()), 0))
        .where(_transactions.c.kind == kind)
        .where(_transactions.c.request[field].as_string() == str(value))
    )
    return int(total or 0)


_INSERT_POSTINGS = text(_INSERT_POSTINGS_SQL)


def _posting_rows(rows: Sequence[dict[str, Any]]) -> str:
    return json_rows(
        tx=[r["transaction_id"] for r in rows],
        account=[r["account_id"] for r in rows],
        asset=[r["asset"] for r in rows],
        amount=[r["amount"] for r in rows],
        seq=[r["account_seq"] for r in rows],
        hash=[bytes(r["chain_hash"]).hex() for r in rows],
    )


async def insert_postings(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """All of a transaction's postings in one statement: the balance trigger checks each
    statement's transactions as a whole."""
    if rows:
        await session.execute(_INSERT_POSTINGS, {"postings": _posting_rows(rows)})


_POST_AND_SAVE = text("WITH postings AS (" + _INSERT_POSTINGS_SQL + ")" + _SAVE_ACCOUNTS_SQL)


async def post_and_save(
    session: AsyncSession, rows: Sequence[dict[str, Any]], states: Iterable[AccountState]
) -> None:
    """A transaction's postings and the locked accounts' new balances and chain heads, in
    one statement (`insert_postings` and `save_accounts` together, one round trip)."""
    states = list(states)
    if not rows:
        await save_accounts(session, states)
        return
    await session.execute(
        _POST_AND_SAVE, {"postings": _posting_rows(rows), "accounts": _account_rows(states)}
    )


async def insert_lots(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[int]:
    if not rows:
        return []
    result = await session.execute(
        insert(_lots).returning(_lots.c.id, sort_by_parameter_order=True), list(rows)
    )
    return [row[0] for row in result]


async def insert_movements(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        connection = await session.connection()
        await connection.execute(_movements.insert(), list(rows))


async def set_lot_remainders(session: AsyncSession, remainders: dict[int, int]) -> None:
    if not remainders:
        return
    connection = await session.connection()
    await connection.execute(
        update(_lots)
        .where(_lots.c.id == bindparam("_id"))
        .values(remaining=bindparam("remaining")),
        [{"_id": lot_id, "remaining": value} for lot_id, value in sorted(remainders.items())],
    )


_OPEN_LOTS = text(
    """
    SELECT id, remaining, expires_at FROM ledger_lots
    WHERE account_id = :account_id AND remaining > 0
      AND (CAST(:after AS timestamptz) IS NULL OR expires_at > CAST(:after AS timestamptz))
    ORDER BY expires_at, id
    """
)


async def open_lots(
    session: AsyncSession, account_id: int, *, not_expired_at: datetime | None
) -> list[OpenLot]:
    """The account's lots with points left, soonest-expiring first (caller holds the lock)."""
    rows = await session.execute(_OPEN_LOTS, {"account_id": account_id, "after": not_expired_at})
    return [OpenLot(row.id, row.remaining, row.expires_at) for row in rows]


async def lots_by_id(session: AsyncSession, ids: Iterable[int]) -> dict[int, OpenLot]:
    rows = await session.execute(
        select(_lots.c.id, _lots.c.remaining, _lots.c.expires_at).where(
            _lots.c.id.in_(sorted(set(ids)))
        )
    )
    return {row.id: OpenLot(row.id, row.remaining, row.expires_at) for row in rows}


async def lot_of_transaction(session: AsyncSession, transaction_id: int) -> OpenLot | None:
    row = (
        await session.execute(
            select(_lots.c.id, _lots.c.remaining, _lots.c.expires_at).where(
                _lots.c.transaction_id == transaction_id
            )
        )
    ).first()
    return OpenLot(row.id, row.remaining, row.expires_at) if row else None


async def hold_lot_consumption(session: AsyncSession, hold_id: int) -> list[tuple[int, int]]:
    """(lot id, points still taken from it by the hold), latest-expiring lots first."""
    rows = await session.execute(
        select(_movements.c.lot_id, func.sum(_movements.c.amount).label("net"))
        .join(_lots, _lots.c.id == _movements.c.lot_id)
        .where(_movements.c.hold_id == hold_id)
        .group_by(_movements.c.lot_id, _lots.c.expires_at)
        .order_by(_lots.c.expires_at.desc(), _movements.c.lot_id.desc())
    )
    return [(lot_id, -int(net)) for lot_id, net in rows if net < 0]


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


_OPEN_LOTS_SQL = """
    SELECT id, remaining, expires_at FROM ledger_lots
    WHERE account_id = $1 AND remaining > 0 AND expires_at > $2
    ORDER BY expires_at, id
"""


async def open_lots_at(session: AsyncSession, account_id: int, now: datetime) -> list[OpenLot]:
    """`open_lots(..., not_expired_at=now)` on the driver (the hold path)."""
    connection = await driver(session)
    rows = await connection.fetch(_OPEN_LOTS_SQL, account_id, now)
    return [OpenLot(row[0], row[1], row[2]) for row in rows]


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
        FROM ledger_holds WHERE id = $1
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
) -> CaptureStart | None:
    """Insert the capture's transaction and lock its accounts: one statement (see
    `_BEGIN_CAPTURE`). None when there is no such hold."""
    connection = await driver(session)
    rows = await connection.fetch(
        _BEGIN_CAPTURE, hold_id, origin, key, amount, debt_code, list(issuance_codes)
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


def _locked_state(row: Any) -> AccountState:
    """An account row as asyncpg returns it (id, code, asset, bounded, posted, held,
    chain_seq, chain_hash, ...)."""
    return AccountState(
        row["id"],
        row["asset"],
        row["bounded"],
        row["posted"],
        row["held"],
        row["chain_seq"],
        bytes(row["chain_hash"]),
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


_WRITE_RESOLUTION = (
    # Everything resolving a hold writes, in one statement: its postings, its lot movements
    # and the lots' new remainders, the resolution, and the locked accounts' balances.
    # (Composed of constant fragments only; every value is a bound parameter.)
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
    ), resolution AS (
        INSERT INTO ledger_hold_resolutions
            (hold_id, outcome, amount_posted, transaction_id, origin, idempotency_key, request)
        VALUES ($5, $6, $7, $8, $9, $10, CAST($11 AS jsonb))
    )
    """
    + _save_accounts_sql("$2")
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
        resolution["hold_id"],
        resolution["outcome"],
        resolution["amount_posted"],
        resolution["transaction_id"],
        resolution["origin"],
        resolution["idempotency_key"],
        json_text(resolution["request"]),
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
_GET_RESOLUTION = select(_resolutions).where(_resolutions.c.hold_id == bindparam("hold_id"))
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


async def get_resolution(session: AsyncSession, hold_id: int) -> HoldResolution | None:
    return _resolution((await session.execute(_GET_RESOLUTION, {"hold_id": hold_id})).first())


async def find_resolution(session: AsyncSession, origin: str, key: str) -> HoldResolution | None:
    return _resolution(
        (await session.execute(_FIND_RESOLUTION, {"origin": origin, "key": key})).first()
    )


async def insert_resolution(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(insert(_resolutions).values(row))


async def due_lots(session: AsyncSession, now: datetime, limit: int) -> list[Any]:
    """Lots past expiry with points left, with the id of their latest movement."""
    last_movement = (
        select(func.max(_movements.c.id)).where(_movements.c.lot_id == _lots.c.id).scalar_subquery()
    )
    rows = await session.execute(
        select(_lots.c.id, _lots.c.account_id, last_movement.label("last_movement"))
        .where(_lots.c.remaining > 0, _lots.c.expires_at <= now)
        .order_by(_lots.c.account_id, _lots.c.id)
        .limit(limit)
    )
    return list(rows)


async def overdue_holds(session: AsyncSession, now: datetime, limit: int) -> list[int]:
    rows = await session.execute(
        select(_holds.c.id)
        .outerjoin(_resolutions, _resolutions.c.hold_id == _holds.c.id)
        .where(_holds.c.expires_at <= now, _resolutions.c.hold_id.is_(None))
        .order_by(_holds.c.id)
        .limit(limit)
    )
    return [row[0] for row in rows]


# The app's hot reads: plain SQL with asyncpg's placeholders, run through a `Reader` (the
# read pool's connection, or a session).
_BALANCE = """
    SELECT a.asset, a.posted, a.held, CAST(NULL AS timestamptz) AS expires_at
    FROM ledger_accounts AS a
    WHERE a.code IN ($1, $2, $3)
    UNION ALL
    SELECT 'LOT', CAST(sum(l.remaining) AS bigint), 0, l.expires_at
    FROM ledger_accounts AS a
    JOIN ledger_lots AS l ON l.account_id = a.id AND l.remaining > 0
    WHERE a.code = $1
    GROUP BY l.expires_at
    ORDER BY expires_at NULLS FIRST
"""


async def balance_rows(source: Reader, participant_id: uuid.UUID) -> Sequence[Any]:
    """Rows of (asset, posted, held, expires_at), one round trip: one per account of the
    participant that exists, then one per expiry date of its open points lots (asset 'LOT',
    posted holding the points that expire then), soonest first. The lots are found by
    ix_ledger_lots_open_by_account."""
    return await source.rows(
        _BALANCE,
        participant_account_code(participant_id, "POINTS"),
        participant_account_code(participant_id, "GCO2E"),
        participant_account_code(participant_id, "DEBT"),
    )


_HISTORY = """
    SELECT p.account_seq, p.amount, t.kind, t.request, t.created_at
    FROM ledger_accounts AS a
    JOIN ledger_postings AS p ON p.account_id = a.id
    JOIN ledger_transactions AS t ON t.id = p.transaction_id
    WHERE a.code = $1
      AND ($2::bigint IS NULL OR p.account_seq < $2::bigint)
      AND ($3::text[] IS NULL OR t.kind = ANY($3::text[]))
      AND ($4::timestamptz IS NULL OR t.created_at >= $4::timestamptz)
      AND ($5::timestamptz IS NULL OR t.created_at < $5::timestamptz)
    ORDER BY p.account_seq DESC
    LIMIT $6
"""


async def history_rows(
    source: Reader,
    participant_id: uuid.UUID,
    *,
    before_seq: int | None,
    limit: int,
    kinds: Sequence[str] | None,
    since: datetime | None,
    until: datetime | None,
) -> Sequence[Any]:
    """A page of the participant's POINTS postings, newest first: (account_seq, amount, kind,
    request, created_at). One statement, the account found by its code."""
    return await source.rows(
        _HISTORY,
        participant_account_code(participant_id, "POINTS"),
        before_seq,
        list(kinds) if kinds else None,
        since,
        until,
        limit,
    )


_HOLD_STATE = text(
    """
    SELECT h.expires_at, r.outcome, r.amount_posted, r.transaction_id,
           (SELECT CAST(coalesce(sum(CAST(t.request ->> 'amount' AS bigint)), 0) AS bigint)
            FROM ledger_transactions AS t
            WHERE t.kind = 'refund' AND t.request ->> 'refund_of' = CAST(r.transaction_id AS text)
           ) AS refunded
    FROM ledger_holds AS h
    LEFT JOIN ledger_hold_resolutions AS r ON r.hold_id = h.id
    WHERE h.id = :hold_id
    """
)


@dataclass(frozen=True, slots=True)
class HoldStateRow:
    expires_at: datetime
    outcome: str | None
    amount_posted: int | None
    transaction_id: int | None
    refunded: int


async def hold_state(session: AsyncSession, hold_id: int) -> HoldStateRow | None:
    """(expires_at, outcome, amount_posted, transaction_id, refunded) of a hold, or None:
    one statement.
    outcome and amount_posted are None while it is unresolved; refunded sums the refunds
    of its capture."""
    row = (await session.execute(_HOLD_STATE, {"hold_id": hold_id})).first()
    return None if row is None else HoldStateRow(*row)


_SETTLEMENT_LINES = text(
    """
    SELECT t.created_at, t.kind, t.id, p.amount
    FROM ledger_postings AS p
    JOIN ledger_accounts AS a ON a.id = p.account_id
    JOIN ledger_transactions AS t ON t.id = p.transaction_id
    WHERE a.code = ANY(:codes) AND t.created_at >= :start AND t.created_at < :end
    ORDER BY t.created_at, t.id
    """
)


async def settlement_lines(
    session: AsyncSession, merchant_id: uuid.UUID, start: datetime, end: datetime
) -> list[tuple[datetime, str, int, int]]:
    """(at, kind, transaction id, points) of every posting to the merchant's settlement
    accounts in [start, end), in order."""
    rows = await session.execute(
        _SETTLEMENT_LINES,
        {"codes": merchant_account_codes(merchant_id), "start": start, "end": end},
    )
    return [(at, kind, tx, amount) for at, kind, tx, amount in rows]


def hold_is_live_sql(hold_id: str) -> str:
    """SQL that is true while the hold whose id is the expression `hold_id` is pending or
    captured (not voided or expired): the ledger's own condition, for another domain's query
    that counts what holds still take (an offer's stock), so that it never names the
    ledger's tables itself."""
    return (
        "NOT EXISTS (SELECT 1 FROM ledger_hold_resolutions AS live_res"  # noqa: S608
        f" WHERE live_res.hold_id = {hold_id} AND live_res.outcome <> 'posted')"
    )


# --- the set-based credit path --------------------------------------------------------------

_ENSURE_AND_RESERVE = text(
    """
    WITH created AS (
        INSERT INTO ledger_accounts (code, owner_type, owner_id, asset, kind, bounded)
        SELECT code, 'participant', owner, asset, 'participant', true
        FROM json_to_recordset(CAST(:accounts AS json)) AS n(code text, owner uuid, asset text)
        ORDER BY code
        ON CONFLICT (code) DO NOTHING
    )
    SELECT ARRAY(SELECT nextval('ledger_transactions_id_seq')
                 FROM generate_series(1, CAST(:transactions AS integer))),
           ARRAY(SELECT nextval('ledger_lots_id_seq')
                 FROM generate_series(1, CAST(:lots AS integer)))
    """
)


async def ensure_participant_accounts_and_reserve(
    session: AsyncSession, participant_ids: Iterable[uuid.UUID], *, transactions: int, lots: int
) -> tuple[list[int], list[int]]:
    """Create participants' missing POINTS and GCO2E accounts; reserve row ids. One statement.

    New accounts go in sorted by code (a fixed order for their unique-key locks), before any
    account row is locked. The reserved ids let a plan compute the hash chain, which covers
    the transaction id, before anything is written.
    """
    rows = sorted(
        (participant_account_code(pid, asset), pid, asset)
        for pid in set(participant_ids)
        for asset in ("POINTS", "GCO2E")
    )
    accounts = json_rows(
        code=[r[0] for r in rows], owner=[r[1] for r in rows], asset=[r[2] for r in rows]
    )
    result = await session.execute(
        _ENSURE_AND_RESERVE, {"accounts": accounts, "transactions": transactions, "lots": lots}
    )
    tx_ids, lot_ids = result.one()
    return list(tx_ids), list(lot_ids)


_LOCK_FOR_CREDITS = text(
    # Shards first: SKIP LOCKED never waits, so taking them first keeps the one lock order
    # (ascending id; issuance rows are the oldest) without ever blocking on them.
    """
    WITH points_shard AS (
        SELECT id, code, asset, bounded, posted, held, chain_seq, chain_hash
        FROM ledger_accounts WHERE code = ANY(CAST(:points_shards AS text[]))
        LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED
    ), grams_shard AS (
        SELECT id, code, asset, bounded, posted, held, chain_seq, chain_hash
        FROM ledger_accounts WHERE code = ANY(CAST(:grams_shards AS text[]))
        LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED
    ), owners AS (
        SELECT id, code, asset, bounded, posted, held, chain_seq, chain_hash
        FROM ledger_accounts
        WHERE code = ANY(ARRAY(SELECT json_array_elements_text(CAST(:codes AS json))))
        ORDER BY id FOR NO KEY UPDATE
    )
    SELECT * FROM points_shard UNION ALL SELECT * FROM grams_shard UNION ALL SELECT * FROM owners
    """
)
_FREE_SHARD = text(
    """
    SELECT id, code, asset, bounded, posted, held, chain_seq, chain_hash
    FROM ledger_accounts WHERE code = ANY(CAST(:shards AS text[]))
    LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED
    """
)
_SHARD_CODES = {
    asset: [issuance_account_code(asset, shard) for shard in range(ISSUANCE_SHARDS)]
    for asset in ("POINTS", "GCO2E", "DEBT")
}
_SHARD_TRIES = 4


def _some_shards(asset: str) -> list[str]:
    return [
        issuance_account_code(asset, shard)
        for shard in secrets.SystemRandom().sample(range(ISSUANCE_SHARDS), _SHARD_TRIES)
    ]


def _state(row: Any) -> AccountState:
    return AccountState(
        row.id, row.asset, row.bounded, row.posted, row.held, row.chain_seq, bytes(row.chain_hash)
    )


async def lock_for_credits(
    session: AsyncSession, codes: Iterable[str]
) -> tuple[dict[str, AccountState], dict[str, str]]:
    """Lock the accounts of `codes` (ascending id) and a free issuance shard per asset needed.

    Returns states by code and the shard code taken per asset. A shard is taken with SKIP
    LOCKED among four picked at random (a few index probes, not 64): a credit never waits for
    another transaction's issuance row, so concurrent credits never queue on it. A DEBT shard
    is taken only when a locked participant owes.
    """
    result = await session.execute(
        _LOCK_FOR_CREDITS,
        {
            "points_shards": _some_shards("POINTS"),
            "grams_shards": _some_shards("GCO2E"),
            "codes": json_text(sorted(set(codes))),
        },
    )
    states: dict[str, AccountState] = {}
    shards: dict[str, str] = {}
    for row in result:
        code = str(row.code)
        states[code] = _state(row)
        if code.startswith("program:issuance:"):
            shards[row.asset] = code
    owes = any(
        state.asset == "DEBT" and state.posted > 0 and not code.startswith("program:")
        for code, state in states.items()
    )
    for asset in ("POINTS", "GCO2E", *(("DEBT",) if owes else ())):
        if asset not in shards:
            code, state = await _free_shard(session, asset)
            states[code] = state
            shards[asset] = code
    return states, shards


async def _free_shard(session: AsyncSession, asset: str) -> tuple[str, AccountState]:
    """A shard nobody holds, else (more than 64 writers at once) wait for a random one."""
    for candidates in (_some_shards(asset), _SHARD_CODES[asset]):
        row = (await session.execute(_FREE_SHARD, {"shards": candidates})).first()
        if row is not None:
            return str(row.code), _state(row)
    code = _SHARD_CODES[asset][secrets.randbelow(ISSUANCE_SHARDS)]
    account_id = (await account_ids_by_code(session, [code]))[code]
    return code, (await lock_accounts(session, [account_id]))[account_id]


_NEW_CREDIT_TRANSACTIONS_SQL = """
    INSERT INTO ledger_transactions (id, origin, idempotency_key, kind, request, created_at)
    SELECT id, origin, key, 'credit', request, created_at
    FROM json_to_recordset(CAST(:transactions AS json))
         AS t(id bigint, origin text, key text, request jsonb, created_at timestamptz)
"""
_NEW_LOTS_SQL = """
    INSERT INTO ledger_lots (id, account_id, transaction_id, amount, remaining, expires_at)
    SELECT id, account, tx, amount, amount, expires_at
    FROM json_to_recordset(CAST(:lots AS json))
         AS l(id bigint, account bigint, tx bigint, amount bigint, expires_at timestamptz)
"""
_NEW_LOTS_OPENING_SQL = """
    INSERT INTO ledger_lot_movements (lot_id, kind, amount, transaction_id)
    SELECT id, 'open', amount, tx
    FROM json_to_recordset(CAST(:lots AS json)) AS m(id bigint, amount bigint, tx bigint)
"""
_WRITE_CREDITS = text(
    "WITH tx AS ("
    + _NEW_CREDIT_TRANSACTIONS_SQL
    + "), postings AS ("
    + _INSERT_POSTINGS_SQL
    + "), lots AS ("
    + _NEW_LOTS_SQL
    + "), movements AS ("
    + _NEW_LOTS_OPENING_SQL
    + ")"
    + _SAVE_ACCOUNTS_SQL
)


async def write_credits(session: AsyncSession, writes: CreditWrites) -> None:
    """Every row of a credit plan, in one statement: transactions (when the plan inserts
    them), postings, lots and their opening movements, and the accounts' new balances and
    chain heads. Foreign keys between these rows are checked at the statement's end."""
    await session.execute(
        _WRITE_CREDITS,
        {
            "transactions": json_rows(
                id=writes.tx_id,
                origin=writes.tx_origin,
                key=writes.tx_key,
                request=writes.tx_request,
                created_at=writes.tx_created_at,
            ),
            "postings": json_rows(
                tx=writes.posting_tx,
                account=writes.posting_account,
                asset=writes.posting_asset,
                amount=writes.posting_amount,
                seq=writes.posting_seq,
                hash=[h.hex() for h in writes.posting_hash],
            ),
            "lots": json_rows(
                id=writes.lot_id,
                account=writes.lot_account,
                tx=writes.lot_tx,
                amount=writes.lot_amount,
                expires_at=writes.lot_expires_at,
            ),
            "accounts": _account_rows(writes.accounts.values()),
        },
    )


async def take_advisory_lock(session: AsyncSession, key: int) -> None:
    """A transaction-scoped advisory lock (one expiry run at a time)."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


# --- programme reports (service.ledger.service.reports): set-based, one statement each ------

_POINTS_FLOWS = text(
    # Every POINTS posting of the period's transactions, summed by the transaction's kind, the
    # kind of account it moved and its direction: a handful of rows, whatever the volume.
    """
    SELECT t.kind, a.kind AS account_kind, p.amount > 0 AS incoming,
           CAST(sum(p.amount) AS bigint) AS total, count(*) AS postings
    FROM ledger_transactions AS t
    JOIN ledger_postings AS p ON p.transaction_id = t.id AND p.asset = 'POINTS'
    JOIN ledger_accounts AS a ON a.id = p.account_id
    WHERE t.created_at >= :start AND t.created_at < :end
    GROUP BY t.kind, a.kind, p.amount > 0
    """
)


@dataclass(frozen=True, slots=True)
class PointsFlowRow:
    transaction_kind: str
    account_kind: str
    incoming: bool
    total: int
    postings: int


async def points_flows(
    session: AsyncSession, start: datetime, end: datetime
) -> list[PointsFlowRow]:
    """POINTS moved by the transactions made in [start, end), by (transaction kind, account
    kind, direction). One statement."""
    rows = await session.execute(_POINTS_FLOWS, {"start": start, "end": end})
    return [PointsFlowRow(*row) for row in rows]


_POINTS_POSITION = text(
    # Participants' materialised balances (one row per account, no postings read) and, per
    # horizon, their open lots due by then (ix_ledger_lots_open_by_expiry). One row per
    # horizon; no array parameter (an array type costs asyncpg an introspection a connection).
    """
    WITH balances AS (
        SELECT CAST(coalesce(sum(posted) FILTER (WHERE asset = 'POINTS'), 0) AS bigint) AS posted,
               CAST(coalesce(sum(held) FILTER (WHERE asset = 'POINTS'), 0) AS bigint) AS held,
               CAST(coalesce(sum(posted) FILTER (WHERE asset = 'DEBT'), 0) AS bigint) AS debt,
               count(*) FILTER (WHERE asset = 'POINTS' AND posted > 0) AS holders
        FROM ledger_accounts WHERE kind = 'participant'
    )
    SELECT b.posted, b.held, b.debt, b.holders,
           CAST(coalesce(sum(l.remaining), 0) AS bigint) AS due
    FROM json_array_elements_text(CAST(:horizons AS json)) WITH ORDINALITY AS h(at, n)
    CROSS JOIN balances AS b
    LEFT JOIN ledger_lots AS l
        ON l.remaining > 0 AND l.expires_at <= CAST(h.at AS timestamptz)
    GROUP BY h.n, b.posted, b.held, b.debt, b.holders
    ORDER BY h.n
    """
)


@dataclass(frozen=True, slots=True)
class PointsPositionRow:
    posted: int
    held: int
    debt: int
    holders: int
    expiring: list[int]  # open points due at or before each horizon, in the order given


async def points_position(session: AsyncSession, horizons: Sequence[datetime]) -> PointsPositionRow:
    """Participants' posted, held and owed points now, how many hold any, and the open
    points due at or before each of `horizons`. One statement."""
    if not horizons:
        raise ValueError("points_position needs at least one horizon")
    rows = (await session.execute(_POINTS_POSITION, {"horizons": json_text(list(horizons))})).all()
    first = rows[0]
    return PointsPositionRow(first[0], first[1], first[2], first[3], [row[4] for row in rows])


_SETTLEMENT_TOTALS = text(
    # Every posting to any merchant's settlement accounts (all shards) in the period, summed
    # per merchant: captures come in (+), refunds go out (-).
    """
    SELECT a.owner_id,
           count(*) FILTER (WHERE p.amount > 0) AS redemptions,
           CAST(coalesce(sum(p.amount) FILTER (WHERE p.amount > 0), 0) AS bigint) AS redeemed,
           count(*) FILTER (WHERE p.amount < 0) AS refunds,
           CAST(coalesce(-sum(p.amount) FILTER (WHERE p.amount < 0), 0) AS bigint) AS refunded
    FROM ledger_transactions AS t
    JOIN ledger_postings AS p ON p.transaction_id = t.id
    JOIN ledger_accounts AS a ON a.id = p.account_id AND a.kind = 'settlement'
    WHERE t.created_at >= :start AND t.created_at < :end
    GROUP BY a.owner_id
    ORDER BY a.owner_id
    """
)


@dataclass(frozen=True, slots=True)
class SettlementTotalRow:
    merchant_id: uuid.UUID
    redemptions: int
    redeemed: int
    refunds: int
    refunded: int


async def settlement_totals(
    session: AsyncSession, start: datetime, end: datetime
) -> list[SettlementTotalRow]:
    """Per merchant, captures and refunds posted to its settlement accounts in [start, end).
    One statement."""
    rows = await session.execute(_SETTLEMENT_TOTALS, {"start": start, "end": end})
    return [SettlementTotalRow(*row) for row in rows]
