"""Accounts, transactions and postings: the statements every kind of ledger write is made of
(and the SQL fragments the others compose)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import json_rows
from service.ledger.plan import (
    AccountState,
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


async def take_advisory_lock(session: AsyncSession, key: int) -> None:
    """A transaction-scoped advisory lock (one expiry run at a time)."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
