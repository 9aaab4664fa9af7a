"""`carbon-points audit verify`: recompute the audit log's chain and name any bad row."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from service.audit import repository
from service.audit.chain import ZERO_HASH, entry_digest, entry_hash


@dataclass(slots=True)
class AuditReport:
    entries: int = 0
    problems: list[str] = field(default_factory=list)
    head: str = ZERO_HASH.hex()

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify_audit(engine: AsyncEngine, *, max_problems: int = 100) -> AuditReport:
    """Walk the log in one read-only snapshot; every row's `prev_hash` must be its
    predecessor's `hash` and its `hash` must recompute from its content."""
    report = AuditReport()
    async with engine.connect() as connection:
        await connection.exec_driver_sql(
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
        )
        previous = ZERO_HASH
        async for row in repository.stream_all(connection):
            report.entries += 1
            digest = entry_digest(
                occurred_at=row.occurred_at,
                admin_id=row.admin_id,
                actor=row.actor,
                role=row.role,
                action=row.action,
                target_type=row.target_type,
                target_id=row.target_id,
                before_digest=row.before_digest,
                after_digest=row.after_digest,
                request_id=row.request_id,
                detail=row.detail,
            )
            if bytes(row.prev_hash) != previous:
                report.problems.append(
                    f"audit entry {row.id}: prev_hash does not match entry before it "
                    "(a row was removed, inserted or reordered)"
                )
            if bytes(row.hash) != entry_hash(bytes(row.prev_hash), digest):
                report.problems.append(
                    f"audit entry {row.id}: content does not match its hash (edited)"
                )
            previous = bytes(row.hash)
            if len(report.problems) >= max_problems:
                break
        report.head = previous.hex()
        await connection.rollback()
    return report
