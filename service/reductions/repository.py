"""All of the reductions domain's SQL, on its own tables (`reduction_*`). Typed results;
functions never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import json_rows
from service.models import (
    ReductionBatch,
    ReductionBlock,
    ReductionHolder,
    ReductionPool,
    ReductionRetirement,
)

# One programme-wide sequence of serials: a batch's numbers are taken under this
# transaction-scoped advisory lock (pooling runs are rare; the exclusion constraint on
# `reduction_batches` refuses an overlap whatever happens).
SERIALS_LOCK_KEY = 0x52454455  # "REDU"


@dataclass(frozen=True, slots=True)
class ProvenanceRow:
    credit_event_id: int
    credit_transaction_id: int
    grams: int
    action_type: str
    methodology_version: int


@dataclass(frozen=True, slots=True)
class PoolIssued:
    issued_grams: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class ProvenanceGroup:
    key: str
    credits: int
    grams: int


@dataclass(frozen=True, slots=True)
class BlockRow:
    """A block with what the registry and certificates show of it (no personal data)."""

    block: ReductionBlock
    batch: ReductionBatch
    pool: ReductionPool
    holder: ReductionHolder | None
    retirement: ReductionRetirement | None


@dataclass(frozen=True, slots=True)
class RegistryTotal:
    vintage: str
    methodology_id: str
    issued_kg: int
    transferred_kg: int
    retired_kg: int


@dataclass(frozen=True, slots=True)
class BatchCheckRow:
    batch: ReductionBatch
    pool: ReductionPool
    provenance_credits: int
    provenance_grams: int


class ReductionRepository:
    """The reductions domain's tables, for one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> ReductionRepository:
        return cls(session)

    # --- pools -------------------------------------------------------------------------

    async def insert_pool(self, **values: object) -> ReductionPool | None:
        """The new pool; None when its code is taken."""
        pool_id = await self.session.scalar(
            insert(ReductionPool)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["code"])
            .returning(ReductionPool.id)
        )
        return await self.session.get(ReductionPool, pool_id) if pool_id is not None else None

    async def pool_by_code(self, code: str) -> ReductionPool | None:
        result: ReductionPool | None = await self.session.scalar(
            select(ReductionPool).where(ReductionPool.code == code)
        )
        return result

    async def pools(self) -> Sequence[ReductionPool]:
        return (
            await self.session.scalars(select(ReductionPool).order_by(ReductionPool.code))
        ).all()

    async def pool_issued(self, pool_id: int) -> PoolIssued:
        row = (
            await self.session.execute(
                text(
                    "SELECT coalesce(sum(issued_grams), 0), coalesce(max(seq), 0)"
                    " FROM reduction_batches WHERE pool_id = :pool"
                ),
                {"pool": pool_id},
            )
        ).one()
        return PoolIssued(int(row[0]), int(row[1]))

    # --- batches -----------------------------------------------------------------------

    async def next_serial(self) -> int:
        """The first free serial, under the programme-wide serials lock (held to commit)."""
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": SERIALS_LOCK_KEY}
        )
        # A statement of its own: its snapshot is taken after the lock was granted.
        last = await self.session.scalar(
            text("SELECT coalesce(max(serial_last), 0) FROM reduction_batches")
        )
        return int(last or 0) + 1

    async def insert_batch(
        self, values: dict[str, object], provenance: Sequence[ProvenanceRow]
    ) -> ReductionBatch:
        """The batch, its provenance and its first block (held by the programme), in one
        statement."""
        row = (
            await self.session.execute(
                text(
                    """
                    WITH batch AS (
                        INSERT INTO reduction_batches (pool_id, seq, opening_grams, pooled_grams,
                            issued_grams, closing_grams, serial_first, serial_last, credits_count,
                            credits_hash, ledger_transaction_id, issued_by, issued_at)
                        VALUES (:pool_id, :seq, :opening_grams, :pooled_grams, :issued_grams,
                            :closing_grams, :serial_first, :serial_last, :credits_count,
                            :credits_hash, :ledger_transaction_id, :issued_by, :issued_at)
                        RETURNING id, serial_first, serial_last
                    ), provenance AS (
                        INSERT INTO reduction_batch_credits (credit_event_id, batch_id,
                            credit_transaction_id, grams, action_type, methodology_version)
                        SELECT p.event, (SELECT id FROM batch), p.tx, p.grams, p.action_type,
                               p.version
                        FROM json_to_recordset(CAST(:provenance AS json))
                             AS p(event bigint, tx bigint, grams bigint, action_type text,
                                  version integer)
                    ), block AS (
                        INSERT INTO reduction_blocks (batch_id, serial_first, serial_last, status)
                        SELECT id, serial_first, serial_last, 'active' FROM batch
                    )
                    SELECT id FROM batch
                    """
                ),
                {
                    **values,
                    "provenance": json_rows(
                        event=[p.credit_event_id for p in provenance],
                        tx=[p.credit_transaction_id for p in provenance],
                        grams=[p.grams for p in provenance],
                        action_type=[p.action_type for p in provenance],
                        version=[p.methodology_version for p in provenance],
                    ),
                },
            )
        ).one()
        batch = await self.session.get(ReductionBatch, row[0])
        assert batch is not None  # just inserted
        return batch

    async def batch(self, batch_id: int) -> ReductionBatch | None:
        return await self.session.get(ReductionBatch, batch_id)

    async def pool(self, pool_id: int) -> ReductionPool | None:
        return await self.session.get(ReductionPool, pool_id)

    async def batches(self, pool_id: int | None = None) -> Sequence[ReductionBatch]:
        query = select(ReductionBatch).order_by(ReductionBatch.id)
        if pool_id is not None:
            query = query.where(ReductionBatch.pool_id == pool_id)
        return (await self.session.scalars(query)).all()

    async def provenance_groups(self, batch_id: int) -> dict[str, list[ProvenanceGroup]]:
        """A batch's provenance by methodology version and by action type (one statement)."""
        rows = await self.session.execute(
            text(
                """
                SELECT 'version', CAST(methodology_version AS text), count(*), sum(grams)
                FROM reduction_batch_credits WHERE batch_id = :batch
                GROUP BY methodology_version
                UNION ALL
                SELECT 'action_type', action_type, count(*), sum(grams)
                FROM reduction_batch_credits WHERE batch_id = :batch GROUP BY action_type
                ORDER BY 1, 2
                """
            ),
            {"batch": batch_id},
        )
        groups: dict[str, list[ProvenanceGroup]] = {"version": [], "action_type": []}
        for kind, key, count, grams in rows:
            groups[kind].append(ProvenanceGroup(key, int(count), int(grams)))
        return groups

    async def provenance(self, batch_id: int) -> list[ProvenanceRow]:
        rows = await self.session.execute(
            text(
                "SELECT credit_event_id, credit_transaction_id, grams, action_type,"
                " methodology_version FROM reduction_batch_credits WHERE batch_id = :batch"
                " ORDER BY credit_event_id"
            ),
            {"batch": batch_id},
        )
        return [ProvenanceRow(*row) for row in rows]

    async def provenance_of_transactions(
        self, transaction_ids: Sequence[int]
    ) -> dict[int, tuple[int, int]]:
        """credit transaction id -> (credit event id, batch id) for pooled credits."""
        if not transaction_ids:
            return {}
        rows = await self.session.execute(
            text(
                "SELECT credit_transaction_id, credit_event_id, batch_id"
                " FROM reduction_batch_credits"
                " WHERE credit_transaction_id = ANY(CAST(:ids AS bigint[]))"
            ),
            {"ids": list(transaction_ids)},
        )
        return {int(tx): (int(event), int(batch)) for tx, event, batch in rows}

    async def batch_checks(self) -> list[BatchCheckRow]:
        """Every batch with its pool and its provenance totals (for verify)."""
        rows = await self.session.execute(
            select(ReductionBatch, ReductionPool)
            .join(ReductionPool, ReductionPool.id == ReductionBatch.pool_id)
            .order_by(ReductionBatch.pool_id, ReductionBatch.seq)
        )
        totals = {
            int(batch): (int(count), int(grams))
            for batch, count, grams in await self.session.execute(
                text(
                    "SELECT batch_id, count(*), sum(grams) FROM reduction_batch_credits"
                    " GROUP BY batch_id"
                )
            )
        }
        return [BatchCheckRow(batch, pool, *totals.get(batch.id, (0, 0))) for batch, pool in rows]

    async def provenance_by_batch(self) -> dict[int, list[ProvenanceRow]]:
        rows = await self.session.execute(
            text(
                "SELECT batch_id, credit_event_id, credit_transaction_id, grams, action_type,"
                " methodology_version FROM reduction_batch_credits"
                " ORDER BY batch_id, credit_event_id"
            )
        )
        found: dict[int, list[ProvenanceRow]] = {}
        for batch_id, *rest in rows:
            found.setdefault(int(batch_id), []).append(ProvenanceRow(*rest))
        return found

    # --- holders ---------------------------------------------------------------------

    async def insert_holder(self, code: str, name: str) -> ReductionHolder | None:
        holder_id = await self.session.scalar(
            insert(ReductionHolder)
            .values(code=code, name=name)
            .on_conflict_do_nothing(index_elements=["code"])
            .returning(ReductionHolder.id)
        )
        return await self.session.get(ReductionHolder, holder_id) if holder_id else None

    async def holder_by_code(self, code: str) -> ReductionHolder | None:
        result: ReductionHolder | None = await self.session.scalar(
            select(ReductionHolder).where(ReductionHolder.code == code)
        )
        return result

    async def holder(self, holder_id: int) -> ReductionHolder | None:
        return await self.session.get(ReductionHolder, holder_id)

    async def holders(self) -> Sequence[ReductionHolder]:
        return (
            await self.session.scalars(select(ReductionHolder).order_by(ReductionHolder.code))
        ).all()

    # --- blocks and retirements --------------------------------------------------------

    async def lock_block(self, block_id: int) -> ReductionBlock | None:
        """The block, row-locked until commit: transfers and retirements of one block queue
        here, and each sees the other's outcome."""
        result: ReductionBlock | None = await self.session.scalar(
            select(ReductionBlock)
            .where(ReductionBlock.id == block_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return result

    async def split(
        self, parent: ReductionBlock, parts: Sequence[tuple[int, int, int | None, str]]
    ) -> list[ReductionBlock]:
        """Mark `parent` split and insert `parts` (first, last, holder, status) covering it."""
        await self.session.execute(
            text("UPDATE reduction_blocks SET status = 'split' WHERE id = :id"), {"id": parent.id}
        )
        parent.status = "split"
        ids = (
            await self.session.scalars(
                insert(ReductionBlock)
                .values(
                    [
                        {
                            "batch_id": parent.batch_id,
                            "serial_first": first,
                            "serial_last": last,
                            "holder_id": holder,
                            "status": status,
                            "parent_id": parent.id,
                        }
                        for first, last, holder, status in parts
                    ]
                )
                .returning(ReductionBlock.id)
            )
        ).all()
        found = (
            await self.session.scalars(
                select(ReductionBlock).where(ReductionBlock.id.in_(ids)).order_by(ReductionBlock.id)
            )
        ).all()
        return list(found)

    async def set_status(self, block: ReductionBlock, status: str) -> None:
        await self.session.execute(
            text("UPDATE reduction_blocks SET status = :status WHERE id = :id"),
            {"status": status, "id": block.id},
        )
        block.status = status

    async def insert_retirement(
        self,
        *,
        block_id: int,
        holder_id: int | None,
        beneficiary: str,
        reason: str,
        retired_by: uuid.UUID | None,
        retired_at: datetime,
    ) -> ReductionRetirement:
        retirement = ReductionRetirement(
            block_id=block_id,
            holder_id=holder_id,
            beneficiary=beneficiary,
            reason=reason,
            retired_by=retired_by,
            retired_at=retired_at,
        )
        self.session.add(retirement)
        await self.session.flush()
        return retirement

    async def retirement(self, retirement_id: int) -> ReductionRetirement | None:
        return await self.session.get(ReductionRetirement, retirement_id)

    async def block_rows(
        self,
        *,
        block_id: int | None = None,
        live_only: bool = True,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[BlockRow]:
        """Blocks with their batch, pool, holder and retirement, by serial."""
        query = (
            select(
                ReductionBlock, ReductionBatch, ReductionPool, ReductionHolder, ReductionRetirement
            )
            .join(ReductionBatch, ReductionBatch.id == ReductionBlock.batch_id)
            .join(ReductionPool, ReductionPool.id == ReductionBatch.pool_id)
            .outerjoin(ReductionHolder, ReductionHolder.id == ReductionBlock.holder_id)
            .outerjoin(ReductionRetirement, ReductionRetirement.block_id == ReductionBlock.id)
            .order_by(ReductionBlock.serial_first, ReductionBlock.id)
        )
        if block_id is not None:
            query = query.where(ReductionBlock.id == block_id)
        if live_only:
            query = query.where(ReductionBlock.status != "split")
        if limit is not None:
            query = query.offset(offset).limit(limit)
        rows = await self.session.execute(query)
        return [BlockRow(*row) for row in rows]

    async def all_blocks(self) -> Sequence[ReductionBlock]:
        return (
            await self.session.scalars(select(ReductionBlock).order_by(ReductionBlock.id))
        ).all()

    async def all_retirements(self) -> Sequence[ReductionRetirement]:
        return (
            await self.session.scalars(select(ReductionRetirement).order_by(ReductionRetirement.id))
        ).all()

    async def registry_totals(self) -> list[RegistryTotal]:
        """Kilograms issued, held by organisations and retired, by vintage and methodology."""
        rows = await self.session.execute(
            text(
                """
                SELECT p.vintage, p.methodology_id,
                       sum(b.serial_last - b.serial_first + 1),
                       coalesce(sum(b.serial_last - b.serial_first + 1)
                                FILTER (WHERE b.holder_id IS NOT NULL), 0),
                       coalesce(sum(b.serial_last - b.serial_first + 1)
                                FILTER (WHERE b.status = 'retired'), 0)
                FROM reduction_blocks AS b
                JOIN reduction_batches AS bt ON bt.id = b.batch_id
                JOIN reduction_pools AS p ON p.id = bt.pool_id
                WHERE b.status <> 'split'
                GROUP BY p.vintage, p.methodology_id
                ORDER BY p.vintage, p.methodology_id
                """
            )
        )
        return [RegistryTotal(v, m, int(i), int(t), int(r)) for v, m, i, t, r in rows]
