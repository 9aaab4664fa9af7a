"""`carbon-points reductions verify`: every rule of issue 18 checked on the stored rows.

Read-only, in one snapshot (REPEATABLE READ), and naming each breach:

* provenance: each batch's pooled grams, credit count and credit hash match its credits;
* traced: each pool's ledger account holds exactly the grams of its pooled credits still
  standing (balance = pooled - reversed; the ledger's pooled credits are the provenance);
  each batch issues its position + pooled grams in whole kilograms; between two batches
  the position only falls (reversals: the recorded shortfall), and the shortfall made good
  never exceeds the grams of pooled credits reversed. So every issued gram is a gram of a
  credit that still stands, or of a recorded shortfall;
* serials: batches' ranges are disjoint, contiguous from 1, and each covered exactly by its
  live blocks; a split block is covered exactly by its children;
* retirements: one per retired block, none on any other block.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.ledger import service as ledger
from service.models import GRAMS_PER_SERIAL, ReductionBlock
from service.reductions.repository import ReductionRepository
from service.reductions.service import credits_hash


@dataclass
class ReductionsReport:
    batches: int = 0
    blocks: int = 0
    retirements: int = 0
    pools: int = 0
    breaches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaches


async def verify_reductions(session: AsyncSession) -> ReductionsReport:
    """Check everything; the session's transaction is set to REPEATABLE READ, read only."""
    await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
    repo = ReductionRepository.from_session(session)
    report = ReductionsReport()
    breach = report.breaches.append

    checks = await repo.batch_checks()
    provenance = await repo.provenance_by_batch()
    report.batches = len(checks)
    by_pool: dict[int, list[int]] = defaultdict(list)
    pooled_by_pool: dict[int, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for row in checks:
        b = row.batch
        where = f"batch {b.id} (pool {row.pool.code} #{b.seq})"
        if row.provenance_grams != b.pooled_grams or row.provenance_credits != b.credits_count:
            breach(
                f"{where}: provenance holds {row.provenance_credits} credits,"
                f" {row.provenance_grams} g; the batch says {b.credits_count}, {b.pooled_grams} g"
            )
        if credits_hash(provenance.get(b.id, [])) != b.credits_hash:
            breach(f"{where}: the hash of its credit list does not match")
        if b.opening_grams + b.pooled_grams - b.issued_grams != b.closing_grams:
            breach(f"{where}: opening + pooled - issued != closing")
        if b.issued_grams % GRAMS_PER_SERIAL or not 0 <= b.closing_grams < GRAMS_PER_SERIAL:
            breach(f"{where}: does not issue the whole kilograms of its position")
        if (b.serial_last - b.serial_first + 1) * GRAMS_PER_SERIAL != b.issued_grams:
            breach(f"{where}: {b.serial_last - b.serial_first + 1} serials for {b.issued_grams} g")
        count, grams = pooled_by_pool[row.pool.id]
        pooled_by_pool[row.pool.id] = (count + row.provenance_credits, grams + row.provenance_grams)
        by_pool[row.pool.id].append(len(by_pool[row.pool.id]))

    # Between batches of a pool the position only falls (reversals); what it fell by in all
    # is the shortfall made good, at most the grams of the pool's credits reversed.
    made_good: dict[int, int] = defaultdict(int)
    previous: dict[int, int] = {}
    codes: dict[int, str] = {}
    for row in checks:
        b, pid = row.batch, row.pool.id
        codes[pid] = row.pool.code
        carried = previous.get(pid, 0)
        if b.opening_grams > carried:
            breach(
                f"batch {b.id} (pool {row.pool.code} #{b.seq}): opens with {b.opening_grams} g,"
                f" more than the {carried} g the pool carried"
            )
        made_good[pid] += carried - b.opening_grams
        previous[pid] = b.closing_grams

    summaries = {s.pool_id: s for s in await ledger.pool_summaries(session)}
    report.pools = len(set(summaries) | set(pooled_by_pool))
    for pid in sorted(set(summaries) | set(pooled_by_pool)):
        name = f"pool {codes.get(pid, pid)}"
        count, grams = pooled_by_pool.get(pid, (0, 0))
        s = summaries.get(pid)
        if s is None:
            breach(f"{name}: batches but no ledger pool account")
            continue
        if (s.pooled_credits, s.pooled_grams) != (count, grams):
            breach(
                f"{name}: the ledger pooled {s.pooled_credits} credits, {s.pooled_grams} g;"
                f" the batches' provenance has {count}, {grams} g"
            )
        if s.balance != s.pooled_grams - s.reversed_grams:
            breach(
                f"{name}: pool account balance {s.balance} g, but pooled {s.pooled_grams} g"
                f" less reversed {s.reversed_grams} g is {s.pooled_grams - s.reversed_grams} g"
            )
        if made_good[pid] > s.reversed_grams:
            breach(
                f"{name}: batches made good {made_good[pid]} g of shortfall, but only"
                f" {s.reversed_grams} g of its credits were reversed"
            )

    # Serials: disjoint, contiguous from 1, each batch covered exactly by its live blocks.
    batches = sorted((row.batch for row in checks), key=lambda b: b.serial_first)
    expected = 1
    for b in batches:
        if b.serial_first != expected:
            breach(
                f"serials: batch {b.id} starts at {b.serial_first}, expected {expected}"
                + (" (overlap)" if b.serial_first < expected else " (gap)")
            )
        expected = max(expected, b.serial_last + 1)
    blocks = await repo.all_blocks()
    report.blocks = len(blocks)
    live: dict[int, list[ReductionBlock]] = defaultdict(list)
    children: dict[int, list[ReductionBlock]] = defaultdict(list)
    for block in blocks:
        if block.status != "split":
            live[block.batch_id].append(block)
        if block.parent_id is not None:
            children[block.parent_id].append(block)
    for b in batches:
        cursor = b.serial_first
        for block in sorted(live.get(b.id, []), key=lambda x: x.serial_first):
            if block.serial_first != cursor:
                kind = "overlap" if block.serial_first < cursor else "leave a gap"
                breach(
                    f"serials: batch {b.id}'s blocks {kind} at {cursor}"
                    f" (block {block.id} starts at {block.serial_first})"
                )
            cursor = max(cursor, block.serial_last + 1)
        if cursor != b.serial_last + 1:
            breach(f"serials: batch {b.id}'s blocks end at {cursor - 1}, not {b.serial_last}")
    for block in blocks:
        if block.status == "split":
            parts = sorted(children.get(block.id, []), key=lambda x: x.serial_first)
            spans = [(p.serial_first, p.serial_last) for p in parts]
            joined = (
                bool(spans)
                and spans[0][0] == block.serial_first
                and spans[-1][1] == block.serial_last
                and all(a[1] + 1 == c[0] for a, c in itertools.pairwise(spans))
            )
            if not joined:
                breach(f"serials: split block {block.id} is not covered exactly by its parts")

    # Retirements: exactly one per retired block.
    retirements = await repo.all_retirements()
    report.retirements = len(retirements)
    status = {block.id: block.status for block in blocks}
    seen: dict[int, int] = {}
    for r in retirements:
        if r.block_id in seen:
            breach(f"retirements: block {r.block_id} retired twice ({seen[r.block_id]}, {r.id})")
        seen[r.block_id] = r.id
        if status.get(r.block_id) != "retired":
            breach(f"retirements: retirement {r.id} of block {r.block_id}, which is not retired")
    for block in blocks:
        if block.status == "retired" and block.id not in seen:
            breach(f"retirements: block {block.id} is retired without a retirement")
    return report
