"""Pooling: participants' grams moved into a reductions pool's account, in one transaction.

The reductions domain (`service.reductions`) decides which credits a pool gathers; the ledger
moves their grams, records each credit as pooled (at most once: a primary key) and, when a
pooled credit is reversed later, takes its grams back from the pool account
(`refunds.reverse_credit`). Participants keep their points: only `GCO2E` moves.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from service.ledger import repository as repo
from service.ledger.chain import transaction_digest
from service.ledger.errors import InvalidAmountError
from service.ledger.repository import pooling as pooling_repo
from service.ledger.schemas import Asset
from service.ledger.service._common import _conflict, _whole, _Writer


@dataclass(frozen=True, slots=True)
class PoolCandidate:
    """A credit a pool wants: its ledger transaction, participant and grams."""

    credit_transaction_id: int
    participant_id: uuid.UUID
    grams: int


@dataclass(frozen=True, slots=True)
class PoolingResult:
    transaction_id: int
    # The credits whose grams moved (transaction ids), a subset of the candidates: those
    # reversed or pooled by another run meanwhile are left out.
    pooled: tuple[int, ...]
    grams: int


@dataclass(frozen=True, slots=True)
class PoolLedgerSummary:
    pool_id: int
    balance: int
    pooled_credits: int
    pooled_grams: int
    reversed_credits: int
    reversed_grams: int


@dataclass(frozen=True, slots=True)
class ReversedPooledCredit:
    credit_transaction_id: int
    grams: int
    reversal_transaction_id: int


def _candidates_digest(candidates: Sequence[PoolCandidate]) -> str:
    lines = "".join(
        f"{c.credit_transaction_id},{c.participant_id},{c.grams}\n"
        for c in sorted(candidates, key=lambda c: c.credit_transaction_id)
    )
    return hashlib.sha256(lines.encode()).hexdigest()


async def pool_credits(
    session: AsyncSession,
    *,
    origin: str,
    key: str,
    pool_id: int,
    candidates: Sequence[PoolCandidate],
) -> PoolingResult | None:
    """Move the candidates' grams from their participants' `GCO2E` accounts into the pool's
    account, as one `pooling` transaction. Six statements whatever the number of credits.

    Candidates reversed or pooled by another run since they were chosen are skipped (decided
    under the participants' locks); None when none is left (nothing is written: the caller
    rolls back, the idempotency key with it). Keys are single-use: a key already used is a
    conflict.
    """
    _whole("pool_id", pool_id, 1)
    if not candidates:
        return None
    for c in candidates:
        _whole("grams", c.grams, 1)
        _whole("credit_transaction_id", c.credit_transaction_id, 1)
    if len({c.credit_transaction_id for c in candidates}) != len(candidates):
        raise InvalidAmountError("a credit appears twice among the candidates")
    pool_code = repo.pool_account_code(pool_id)
    await repo.ensure_accounts(
        session,
        [
            {
                "code": pool_code,
                "owner_type": "program",
                "owner_id": None,
                "asset": Asset.GRAMS.value,
                "kind": "pool",
                "bounded": True,
            }
        ],
    )
    content = {
        "pool": pool_id,
        "candidates": len(candidates),
        "candidates_sha256": _candidates_digest(candidates),
    }
    inserted = await repo.insert_transactions(
        session, [{"origin": origin, "idempotency_key": key, "kind": "pooling", "request": content}]
    )
    if (origin, key) not in inserted:
        raise _conflict(origin, key, ["key"])
    tx_id, created_at = inserted[(origin, key)]

    participants = sorted({c.participant_id for c in candidates})
    codes = [repo.participant_account_code(p, Asset.GRAMS.value) for p in participants]
    # The participants first (ascending id), the pool account last: see repository.pooling.
    owners = await pooling_repo.lock_accounts_by_code(session, codes)
    pool = (await pooling_repo.lock_accounts_by_code(session, [pool_code]))[pool_code]
    pooled = await pooling_repo.insert_pooled(
        session,
        pooling_transaction_id=tx_id,
        pool_account_id=pool.id,
        credits=[(c.credit_transaction_id, c.grams) for c in candidates],
        participants=[
            p for p in participants if repo.participant_account_code(p, Asset.GRAMS.value) in owners
        ],
    )
    if not pooled:
        return None
    by_participant: dict[uuid.UUID, int] = defaultdict(int)
    for row in pooled:
        by_participant[row.participant_id] += row.grams
    states = {state.id: state for state in owners.values()}
    states[pool.id] = pool
    writer = _Writer(states)
    digest = transaction_digest(tx_id, origin, key, "pooling", content, created_at)
    total = 0
    for pid in sorted(by_participant):
        account = owners[repo.participant_account_code(pid, Asset.GRAMS.value)]
        writer.post(tx_id, digest, account.id, -by_participant[pid])
        total += by_participant[pid]
    writer.post(tx_id, digest, pool.id, total)
    await writer.flush(session)
    return PoolingResult(tx_id, tuple(sorted(row.credit_transaction_id for row in pooled)), total)


async def pool_balance(session: AsyncSession, pool_id: int) -> int:
    """The grams in a pool's account (0 before its first run)."""
    return await pooling_repo.account_balance(session, repo.pool_account_code(pool_id))


async def pool_summaries(session: AsyncSession) -> list[PoolLedgerSummary]:
    """Every pool account: balance, grams pooled into it and grams of those reversed since."""
    return [
        PoolLedgerSummary(
            r.pool_id,
            int(r.balance),
            int(r.pooled_credits),
            int(r.pooled_grams),
            int(r.reversed_credits),
            int(r.reversed_grams),
        )
        for r in await pooling_repo.pool_summaries(session)
    ]


async def reversed_pooled_credits(
    session: AsyncSession, pool_id: int
) -> list[ReversedPooledCredit]:
    """The pool's credits reversed after they were pooled: its recorded shortfall."""
    return [
        ReversedPooledCredit(r.credit_transaction_id, r.grams, r.reversal_transaction_id)
        for r in await pooling_repo.reversed_of_pool(session, repo.pool_account_code(pool_id))
    ]
