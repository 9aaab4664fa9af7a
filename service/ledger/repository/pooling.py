"""Pooling: participants' grams moved into a pool account, and what each pool holds.

A pooled credit is a row of `ledger_pooled_credits` (its credit transaction is the primary
key: pooled at most once). Pool accounts are locked LAST, after every other account a
transaction locks (pooling: the participants; a reversal: the participant, the issuance shards
and expiry), so the ledger's lock order still has no cycle.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import json_rows
from service.ledger.plan import AccountState

_POOL_PREFIX = "program:pool:"


def credit_unpooled_and_standing_sql(transaction_id: str) -> str:
    """SQL true when the credit transaction whose id is the expression `transaction_id` was
    neither reversed nor pooled: the ledger's condition, for the crediting domain's query of
    poolable credits, so that it never names the ledger's tables itself."""
    return (
        "NOT EXISTS (SELECT 1 FROM ledger_transactions AS rev"  # noqa: S608
        " WHERE rev.kind = 'reversal'"
        f" AND rev.request ->> 'reverses' = CAST({transaction_id} AS text))"
        " AND NOT EXISTS (SELECT 1 FROM ledger_pooled_credits AS pooled"
        f" WHERE pooled.credit_transaction_id = {transaction_id})"
    )


_LOCK_BY_CODE = text(
    """
    SELECT id, code, asset, bounded, posted, held, chain_seq, chain_hash
    FROM ledger_accounts WHERE code = ANY(CAST(:codes AS text[]))
    ORDER BY id FOR NO KEY UPDATE
    """
)


async def lock_accounts_by_code(
    session: AsyncSession, codes: Sequence[str]
) -> dict[str, AccountState]:
    """Row-lock accounts by code, in ascending id order (one statement)."""
    rows = await session.execute(_LOCK_BY_CODE, {"codes": sorted(set(codes))})
    return {
        row.code: AccountState(
            row.id,
            row.asset,
            row.bounded,
            row.posted,
            row.held,
            row.chain_seq,
            bytes(row.chain_hash),
        )
        for row in rows
    }


@dataclass(frozen=True, slots=True)
class PooledRow:
    credit_transaction_id: int
    participant_id: uuid.UUID
    grams: int


_INSERT_POOLED = text(
    # Read after the participants' accounts are locked: a reversal of one of these credits
    # either committed before (it is seen, the credit is skipped) or waits for this
    # transaction and then finds the credit pooled. A credit pooled by another run is skipped
    # by the primary key (ON CONFLICT), after that run commits.
    """
    WITH inserted AS (
        INSERT INTO ledger_pooled_credits
            (credit_transaction_id, pooling_transaction_id, pool_account_id, grams)
        SELECT c.tx, CAST(:pooling AS bigint), CAST(:pool AS bigint), c.grams
        FROM json_to_recordset(CAST(:credits AS json)) AS c(tx bigint, grams bigint)
        JOIN ledger_transactions AS t ON t.id = c.tx AND t.kind = 'credit'
             AND CAST(t.request ->> 'grams' AS bigint) = c.grams
        WHERE c.grams > 0
          AND t.request ->> 'participant_id' = ANY(CAST(:participants AS text[]))
          AND NOT EXISTS (
              SELECT 1 FROM ledger_transactions AS rev
              WHERE rev.kind = 'reversal' AND rev.request ->> 'reverses' = CAST(c.tx AS text))
        ORDER BY c.tx
        ON CONFLICT (credit_transaction_id) DO NOTHING
        RETURNING credit_transaction_id, grams
    )
    SELECT i.credit_transaction_id, CAST(t.request ->> 'participant_id' AS uuid), i.grams
    FROM inserted AS i JOIN ledger_transactions AS t ON t.id = i.credit_transaction_id
    """
)


async def insert_pooled(
    session: AsyncSession,
    *,
    pooling_transaction_id: int,
    pool_account_id: int,
    credits: Sequence[tuple[int, int]],
    participants: Sequence[uuid.UUID],
) -> list[PooledRow]:
    """Record the credits (transaction id, grams) as pooled, those still standing and not
    pooled yet whose participant is one of `participants` (locked); returns those recorded."""
    rows = await session.execute(
        _INSERT_POOLED,
        {
            "pooling": pooling_transaction_id,
            "pool": pool_account_id,
            "credits": json_rows(tx=[c[0] for c in credits], grams=[c[1] for c in credits]),
            "participants": [str(p) for p in participants],
        },
    )
    return [PooledRow(int(tx), uuid.UUID(str(pid)), int(grams)) for tx, pid, grams in rows]


@dataclass(frozen=True, slots=True)
class PooledCredit:
    credit_transaction_id: int
    pool_account_id: int
    grams: int


async def pooled_credit(session: AsyncSession, credit_transaction_id: int) -> PooledCredit | None:
    row = (
        await session.execute(
            text(
                "SELECT credit_transaction_id, pool_account_id, grams FROM ledger_pooled_credits"
                " WHERE credit_transaction_id = :tx"
            ),
            {"tx": credit_transaction_id},
        )
    ).first()
    return PooledCredit(*row) if row else None


@dataclass(frozen=True, slots=True)
class PoolLedgerRow:
    pool_id: int
    balance: int
    pooled_credits: int
    pooled_grams: int
    reversed_credits: int
    reversed_grams: int


_POOL_SUMMARY = text(
    f"""
    SELECT CAST(split_part(a.code, ':', 3) AS bigint) AS pool_id, a.posted AS balance,
           count(p.credit_transaction_id) AS pooled_credits,
           coalesce(sum(p.grams), 0) AS pooled_grams,
           count(rev.id) AS reversed_credits,
           coalesce(sum(p.grams) FILTER (WHERE rev.id IS NOT NULL), 0) AS reversed_grams
    FROM ledger_accounts AS a
    LEFT JOIN ledger_pooled_credits AS p ON p.pool_account_id = a.id
    LEFT JOIN ledger_transactions AS rev
           ON rev.kind = 'reversal'
          AND rev.request ->> 'reverses' = CAST(p.credit_transaction_id AS text)
    WHERE a.kind = 'pool' AND a.code LIKE '{_POOL_PREFIX}%'
    GROUP BY a.id, a.code, a.posted
    """  # noqa: S608 (a constant, never a value)
)


async def pool_summaries(session: AsyncSession) -> list[PoolLedgerRow]:
    """Every pool account: its balance, and the grams pooled into it and reversed since."""
    rows = await session.execute(_POOL_SUMMARY)
    return [PoolLedgerRow(*row) for row in rows]


_POOL_BALANCE = text("SELECT posted FROM ledger_accounts WHERE code = :code")


async def account_balance(session: AsyncSession, code: str) -> int:
    return int(await session.scalar(_POOL_BALANCE, {"code": code}) or 0)


@dataclass(frozen=True, slots=True)
class ReversedPooled:
    credit_transaction_id: int
    grams: int
    reversal_transaction_id: int


_REVERSED_OF_POOL = text(
    """
    SELECT p.credit_transaction_id, p.grams, rev.id
    FROM ledger_pooled_credits AS p
    JOIN ledger_accounts AS a ON a.id = p.pool_account_id AND a.code = :code
    JOIN ledger_transactions AS rev
      ON rev.kind = 'reversal'
     AND rev.request ->> 'reverses' = CAST(p.credit_transaction_id AS text)
    ORDER BY rev.id
    """
)


async def reversed_of_pool(session: AsyncSession, code: str) -> list[ReversedPooled]:
    rows = await session.execute(_REVERSED_OF_POOL, {"code": code})
    return [ReversedPooled(*row) for row in rows]
