"""The set-based credit path: accounts ensured and ids reserved, locks, and one write."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import json_rows, json_text
from service.ledger.plan import (
    AccountState,
    CreditWrites,
    issuance_account_code,
    participant_account_code,
)
from service.ledger.repository.postings import (
    _INSERT_POSTINGS_SQL,
    _SAVE_ACCOUNTS_SQL,
    ISSUANCE_SHARDS,
    _account_rows,
    account_ids_by_code,
    lock_accounts,
)

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
    SELECT id, account, tx, amount, amount - held, expires_at
    FROM json_to_recordset(CAST(:lots AS json))
         AS l(id bigint, account bigint, tx bigint, amount bigint, expires_at timestamptz,
              held bigint)
"""

# Flagged credits (review): a hold per lot under review, and the lot movement that takes
# the whole lot into it. The movement names its hold by the hold's key, inserted in the
# same statement; nothing is read back.
_NEW_REVIEW_HOLDS_SQL = """
    INSERT INTO ledger_holds (origin, idempotency_key, request, account_id,
        counter_account_id, amount, expires_at)
    SELECT origin, key, request, account, counter, amount, expires_at
    FROM json_to_recordset(CAST(:holds AS json))
         AS h(origin text, key text, request jsonb, account bigint, counter bigint, amount bigint,
              expires_at timestamptz)
    RETURNING id, idempotency_key
"""

_REVIEW_HOLD_MOVEMENTS_SQL = """
    INSERT INTO ledger_lot_movements (lot_id, kind, amount, hold_id)
    SELECT m.lot, 'hold', -m.amount, holds.id
    FROM json_to_recordset(CAST(:holds AS json)) AS m(key text, lot bigint, amount bigint)
    JOIN holds ON holds.idempotency_key = m.key
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

_WRITE_CREDITS_WITH_HOLDS = text(
    "WITH tx AS ("
    + _NEW_CREDIT_TRANSACTIONS_SQL
    + "), postings AS ("
    + _INSERT_POSTINGS_SQL
    + "), lots AS ("
    + _NEW_LOTS_SQL
    + "), movements AS ("
    + _NEW_LOTS_OPENING_SQL
    + "), holds AS ("
    + _NEW_REVIEW_HOLDS_SQL
    + "), hold_movements AS ("
    + _REVIEW_HOLD_MOVEMENTS_SQL
    + ")"
    + _SAVE_ACCOUNTS_SQL
)


async def write_credits(session: AsyncSession, writes: CreditWrites) -> None:
    """Every row of a credit plan, in one statement: transactions (when the plan inserts
    them), postings, lots and their opening movements, and the accounts' new balances and
    chain heads; with the holds of credits under review, when there are any. Foreign keys
    between these rows are checked at the statement's end."""
    params = {
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
            held=writes.lot_held,
        ),
        "accounts": _account_rows(writes.accounts.values()),
    }
    if not writes.hold_key:
        await session.execute(_WRITE_CREDITS, params)
        return
    params["holds"] = json_rows(
        origin=writes.hold_origin,
        key=writes.hold_key,
        request=writes.hold_request,
        account=writes.hold_account,
        counter=writes.hold_counter,
        amount=writes.hold_amount,
        lot=writes.hold_lot,
        expires_at=writes.hold_expires_at,
    )
    await session.execute(_WRITE_CREDITS_WITH_HOLDS, params)
