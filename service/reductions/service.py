"""Pools, pooling runs, issuance, transfers and retirements (issue 18).

A pooling run, in one database transaction:

1. the credits the pool may gather (`crediting.reads.poolable_credits`: the one eligibility
   rule);
2. the ledger moves their grams from the participants' `GCO2E` accounts into the pool's
   account and records each as pooled, skipping any reversed or pooled meanwhile, decided
   under the participants' locks (`ledger.service.pool_credits`);
3. the pool's position, read under the pool account's lock: its ledger balance (grams of
   pooled credits still standing) less the grams of its batches issued so far. Zero or more
   grams short of a kilogram carried from the last batch, or negative: a shortfall, from
   credits reversed after their batch was issued;
4. the batch issues the whole kilograms of position + pooled grams (the shortfall is made good
   first; grams short of a kilogram stay carried), if at least the pool's minimum; serials
   are the next numbers of the programme-wide sequence;
5. the batch, its provenance and its first block, in one statement; the audit entry.

A constant number of statements whatever the number of credits.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service import audit
from service.crediting import reads as crediting
from service.ledger import service as ledger
from service.models import (
    GRAMS_PER_SERIAL,
    ReductionBatch,
    ReductionBlock,
    ReductionHolder,
    ReductionPool,
    ReductionRetirement,
)
from service.reductions.errors import (
    BatchNotFoundError,
    BlockAlreadyRetiredError,
    BlockNotFoundError,
    BlockNotHeldError,
    HolderExistsError,
    HolderNotFoundError,
    InvalidPoolError,
    InvalidSplitError,
    NothingToPoolError,
    PoolBelowMinimumError,
    PoolExistsError,
    PoolNotFoundError,
    RetirementNotFoundError,
)
from service.reductions.repository import (
    BlockRow,
    ProvenanceGroup,
    ProvenanceRow,
    ReductionRepository,
    RegistryTotal,
)
from service.reductions.serials import vintage_period

LEDGER_ORIGIN = "reductions"
# At most this many credits per run: a run's statements carry them as one parameter.
MAX_CREDITS_PER_RUN = 100_000


def credits_hash(provenance: Sequence[ProvenanceRow]) -> bytes:
    """SHA-256 of the batch's credit list: one line `event_id,grams\\n` per credit, by event
    id (what the issuance document's `credits_sha256` is, and anyone can recompute)."""
    lines = "".join(
        f"{p.credit_event_id},{p.grams}\n"
        for p in sorted(provenance, key=lambda p: p.credit_event_id)
    )
    return hashlib.sha256(lines.encode()).digest()


def pool_state(pool: ReductionPool) -> dict[str, Any]:
    return {
        "id": pool.id,
        "code": pool.code,
        "methodology_id": pool.methodology_id,
        "version_min": pool.version_min,
        "version_max": pool.version_max,
        "region": pool.region,
        "vintage": pool.vintage,
        "min_grams": pool.min_grams,
        "settle_hours": pool.settle_hours,
    }


def _block_state(block: ReductionBlock) -> dict[str, Any]:
    return {
        "id": block.id,
        "batch_id": block.batch_id,
        "serial_first": block.serial_first,
        "serial_last": block.serial_last,
        "holder_id": block.holder_id,
        "status": block.status,
    }


# --- pools ------------------------------------------------------------------------------


async def create_pool(
    session: AsyncSession,
    actor: audit.Actor,
    *,
    code: str,
    methodology_id: str,
    version_min: int,
    version_max: int,
    region: str,
    vintage: str,
    min_kilograms: int,
    settle_hours: int,
    tz: str,
) -> ReductionPool:
    try:
        start, end = vintage_period(vintage, tz)
    except ValueError as exc:
        raise InvalidPoolError(str(exc)) from None
    if version_max < version_min:
        raise InvalidPoolError("version_max must be at least version_min")
    repo = ReductionRepository.from_session(session)
    pool = await repo.insert_pool(
        code=code,
        methodology_id=methodology_id,
        version_min=version_min,
        version_max=version_max,
        region=region,
        vintage=vintage,
        vintage_start=start,
        vintage_end=end,
        min_grams=min_kilograms * GRAMS_PER_SERIAL,
        settle_hours=settle_hours,
        created_by=actor.admin_id,
    )
    if pool is None:
        raise PoolExistsError(f"a pool {code!r} exists")
    await audit.record(
        session,
        actor,
        action="reductions.pool.create",
        target_type="reduction_pool",
        target_id=code,
        after=pool_state(pool),
    )
    return pool


async def pool_by_code(session: AsyncSession, code: str) -> ReductionPool:
    pool = await ReductionRepository.from_session(session).pool_by_code(code)
    if pool is None:
        raise PoolNotFoundError(f"no pool {code!r}")
    return pool


async def list_pools(session: AsyncSession) -> Sequence[ReductionPool]:
    return await ReductionRepository.from_session(session).pools()


@dataclass(frozen=True, slots=True)
class PoolPosition:
    pool: ReductionPool
    balance: int  # grams of its pooled credits still standing (the ledger's pool account)
    issued: int  # grams issued in its batches
    # balance - issued: grams carried to the next batch (>= 0) or a shortfall (< 0)
    position: int
    shortfall_credits: list[ledger.ReversedPooledCredit]


async def pool_position(session: AsyncSession, code: str) -> PoolPosition:
    pool = await pool_by_code(session, code)
    balance = await ledger.pool_balance(session, pool.id)
    issued = (await ReductionRepository.from_session(session).pool_issued(pool.id)).issued_grams
    reversed_credits = await ledger.reversed_pooled_credits(session, pool.id)
    return PoolPosition(pool, balance, issued, balance - issued, reversed_credits)


# --- pooling runs -----------------------------------------------------------------------


async def run_pool(
    session: AsyncSession, actor: audit.Actor, code: str, *, now: datetime
) -> ReductionBatch:
    """Gather the pool's eligible credits into a new batch (see the module's docstring).
    Refused, with nothing written, when no credit is eligible or the batch would be smaller
    than the pool's minimum (the credits stay with their participants for a later run)."""
    repo = ReductionRepository.from_session(session)
    pool = await pool_by_code(session, code)
    candidates = await crediting.poolable_credits(
        session,
        methodology_id=pool.methodology_id,
        version_min=pool.version_min,
        version_max=pool.version_max,
        region=pool.region,
        vintage_start=pool.vintage_start,
        vintage_end=pool.vintage_end,
        received_before=now - timedelta(hours=pool.settle_hours),
        limit=MAX_CREDITS_PER_RUN,
    )
    if not candidates:
        raise NothingToPoolError(f"pool {code!r} has no eligible credits")
    result = await ledger.pool_credits(
        session,
        origin=LEDGER_ORIGIN,
        key=f"pool:{pool.id}:{uuid.uuid4()}",
        pool_id=pool.id,
        candidates=[
            ledger.PoolCandidate(c.transaction_id, c.participant_id, c.grams) for c in candidates
        ],
    )
    if result is None:
        raise NothingToPoolError(f"pool {code!r}: its credits were pooled or reversed meanwhile")
    pooled = set(result.pooled)
    provenance = [
        ProvenanceRow(c.event_id, c.transaction_id, c.grams, c.action_type, c.methodology_version)
        for c in candidates
        if c.transaction_id in pooled
    ]
    # Read under the pool account's lock (taken by pool_credits): no reversal of this pool's
    # credits and no other run of this pool can change the position until commit.
    balance = await ledger.pool_balance(session, pool.id)
    issued_before = await repo.pool_issued(pool.id)
    available = balance - issued_before.issued_grams
    opening = available - result.grams
    issued = max(available, 0) // GRAMS_PER_SERIAL * GRAMS_PER_SERIAL
    if issued < pool.min_grams:
        raise PoolBelowMinimumError(
            f"pool {code!r}: {available} g available"
            + (f" ({-opening} g of it owed to a shortfall)" if opening < 0 else "")
            + f", the minimum batch is {pool.min_grams // GRAMS_PER_SERIAL} kg",
            available_grams=available,
            min_grams=pool.min_grams,
        )
    first = await repo.next_serial()
    batch = await repo.insert_batch(
        {
            "pool_id": pool.id,
            "seq": issued_before.last_seq + 1,
            "opening_grams": opening,
            "pooled_grams": result.grams,
            "issued_grams": issued,
            "closing_grams": available - issued,
            "serial_first": first,
            "serial_last": first + issued // GRAMS_PER_SERIAL - 1,
            "credits_count": len(provenance),
            "credits_hash": credits_hash(provenance),
            "ledger_transaction_id": result.transaction_id,
            "issued_by": actor.admin_id,
            "issued_at": now,
        },
        provenance,
    )
    await audit.record(
        session,
        actor,
        action="reductions.batch.issue",
        target_type="reduction_batch",
        target_id=str(batch.id),
        after={
            "pool": pool.code,
            "seq": batch.seq,
            "issued_grams": batch.issued_grams,
            "serial_first": batch.serial_first,
            "serial_last": batch.serial_last,
            "credits_sha256": batch.credits_hash.hex(),
        },
    )
    return batch


# --- issuance documents -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issuance:
    batch: ReductionBatch
    pool: ReductionPool
    by_version: list[ProvenanceGroup]
    by_action_type: list[ProvenanceGroup]


async def issuance(session: AsyncSession, batch_id: int) -> Issuance:
    repo = ReductionRepository.from_session(session)
    batch = await repo.batch(batch_id)
    if batch is None:
        raise BatchNotFoundError(f"no batch {batch_id}")
    pool = await repo.pool(batch.pool_id)
    assert pool is not None  # a foreign key
    groups = await repo.provenance_groups(batch.id)
    return Issuance(batch, pool, groups["version"], groups["action_type"])


async def batch_credits(session: AsyncSession, batch_id: int) -> list[ProvenanceRow]:
    """The batch's credit list (what its hash is computed over), by event id."""
    repo = ReductionRepository.from_session(session)
    if await repo.batch(batch_id) is None:
        raise BatchNotFoundError(f"no batch {batch_id}")
    return await repo.provenance(batch_id)


async def list_batches(session: AsyncSession) -> Sequence[ReductionBatch]:
    return await ReductionRepository.from_session(session).batches()


# --- holders, transfers and retirements -----------------------------------------------------


async def create_holder(
    session: AsyncSession, actor: audit.Actor, *, code: str, name: str
) -> ReductionHolder:
    holder = await ReductionRepository.from_session(session).insert_holder(code, name)
    if holder is None:
        raise HolderExistsError(f"an organisation account {code!r} exists")
    await audit.record(
        session,
        actor,
        action="reductions.holder.create",
        target_type="reduction_holder",
        target_id=code,
        after={"id": holder.id, "code": code, "name": name},
    )
    return holder


async def list_holders(session: AsyncSession) -> Sequence[ReductionHolder]:
    return await ReductionRepository.from_session(session).holders()


async def _holder_id(repo: ReductionRepository, code: str | None) -> int | None:
    if code is None:
        return None
    holder = await repo.holder_by_code(code)
    if holder is None:
        raise HolderNotFoundError(f"no organisation account {code!r}")
    return holder.id


async def _held_block(
    repo: ReductionRepository, block_id: int, holder_id: int | None, holder_code: str | None
) -> ReductionBlock:
    block = await repo.lock_block(block_id)
    if block is None:
        raise BlockNotFoundError(f"no block {block_id}")
    if block.status == "retired":
        raise BlockAlreadyRetiredError(f"block {block_id} was already retired")
    if block.status == "split":
        raise BlockNotHeldError(
            f"block {block_id} was split or transferred; its serials are in newer blocks"
        )
    if block.holder_id != holder_id:
        raise BlockNotHeldError(f"block {block_id} is not held by {holder_code or 'the programme'}")
    return block


def _kilograms(block: ReductionBlock, kilograms: int | None) -> int:
    size = block.serial_last - block.serial_first + 1
    wanted = size if kilograms is None else kilograms
    if type(wanted) is not int or not 1 <= wanted <= size:
        raise InvalidSplitError(f"block {block.id} has {size} kg; asked for {kilograms}")
    return wanted


async def transfer(
    session: AsyncSession,
    actor: audit.Actor,
    *,
    block_id: int,
    from_holder: str | None,
    to_holder: str,
    kilograms: int | None = None,
) -> list[ReductionBlock]:
    """Assign the first `kilograms` of a block (all of it by default) to an organisation.

    The block is marked `split` and replaced by the transferred block and, if any is left,
    a block of the rest for its holder; returns them, the transferred one first.
    """
    repo = ReductionRepository.from_session(session)
    source = await _holder_id(repo, from_holder)
    target = await _holder_id(repo, to_holder)
    block = await _held_block(repo, block_id, source, from_holder)
    wanted = _kilograms(block, kilograms)
    before = _block_state(block)
    cut = block.serial_first + wanted - 1
    parts: list[tuple[int, int, int | None, str]] = [(block.serial_first, cut, target, "active")]
    if cut < block.serial_last:
        parts.append((cut + 1, block.serial_last, source, "active"))
    made = await repo.split(block, parts)
    await audit.record(
        session,
        actor,
        action="reductions.block.transfer",
        target_type="reduction_block",
        target_id=str(block.id),
        before=before,
        after=[_block_state(b) for b in made],
        detail={"to": to_holder, "kilograms": wanted},
    )
    return made


async def retire(
    session: AsyncSession,
    actor: audit.Actor,
    *,
    block_id: int,
    holder: str | None,
    beneficiary: str,
    reason: str,
    kilograms: int | None = None,
    now: datetime,
) -> ReductionRetirement:
    """Retire a block (or its first `kilograms`, split off first), once.

    Refused when the block was retired already, was split or transferred away, or is not
    held by `holder` (None: the programme). Concurrent calls queue on the block's row lock
    and the later one sees the earlier's outcome; the unique block id of a retirement is
    the database's own refusal of a second.
    """
    repo = ReductionRepository.from_session(session)
    holder_id = await _holder_id(repo, holder)
    block = await _held_block(repo, block_id, holder_id, holder)
    wanted = _kilograms(block, kilograms)
    target = block
    if wanted < block.serial_last - block.serial_first + 1:
        cut = block.serial_first + wanted - 1
        target, _rest = await repo.split(
            block,
            [
                (block.serial_first, cut, holder_id, "active"),
                (cut + 1, block.serial_last, holder_id, "active"),
            ],
        )
    await repo.set_status(target, "retired")
    retirement = await repo.insert_retirement(
        block_id=target.id,
        holder_id=holder_id,
        beneficiary=beneficiary,
        reason=reason,
        retired_by=actor.admin_id,
        retired_at=now,
    )
    await audit.record(
        session,
        actor,
        action="reductions.block.retire",
        target_type="reduction_block",
        target_id=str(target.id),
        before={**_block_state(target), "status": "active"},
        after=_block_state(target),
        detail={"retirement_id": retirement.id, "kilograms": wanted},
    )
    return retirement


@dataclass(frozen=True, slots=True)
class Certificate:
    retirement: ReductionRetirement
    row: BlockRow


async def certificate(session: AsyncSession, retirement_id: int) -> Certificate:
    repo = ReductionRepository.from_session(session)
    retirement = await repo.retirement(retirement_id)
    if retirement is None:
        raise RetirementNotFoundError(f"no retirement {retirement_id}")
    rows = await repo.block_rows(block_id=retirement.block_id)
    return Certificate(retirement, rows[0])


async def block(session: AsyncSession, block_id: int) -> BlockRow:
    rows = await ReductionRepository.from_session(session).block_rows(
        block_id=block_id, live_only=False
    )
    if not rows:
        raise BlockNotFoundError(f"no block {block_id}")
    return rows[0]


@dataclass(frozen=True, slots=True)
class Registry:
    totals: list[RegistryTotal]
    blocks: list[BlockRow]
    next_offset: int | None


async def registry(session: AsyncSession, *, offset: int, limit: int) -> Registry:
    """The totals, and a page of the live blocks (not split) by serial."""
    repo = ReductionRepository.from_session(session)
    rows = await repo.block_rows(offset=offset, limit=limit + 1)
    return Registry(
        await repo.registry_totals(),
        rows[:limit],
        offset + limit if len(rows) > limit else None,
    )
