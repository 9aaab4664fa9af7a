"""All SQL on `admin_audit_log`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from service.models import AdminAuditEntry

# One chain: appenders queue on this transaction-scoped lock, held until they commit, so
# each reads the head its predecessor committed.
_APPEND_LOCK = 0x6175_6469_7400  # "audit"


async def lock_and_read_head(session: AsyncSession) -> bytes | None:
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _APPEND_LOCK})
    return await session.scalar(
        select(AdminAuditEntry.hash).order_by(AdminAuditEntry.id.desc()).limit(1)
    )


async def append(session: AsyncSession, row: dict[str, Any]) -> AdminAuditEntry:
    entry = AdminAuditEntry(**row)
    session.add(entry)
    await session.flush()
    return entry


async def page(
    session: AsyncSession,
    *,
    after: int,
    limit: int,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Sequence[AdminAuditEntry]:
    query = select(AdminAuditEntry).where(AdminAuditEntry.id > after)
    if action is not None:
        query = query.where(AdminAuditEntry.action == action)
    if since is not None:
        query = query.where(AdminAuditEntry.occurred_at >= since)
    if until is not None:
        query = query.where(AdminAuditEntry.occurred_at < until)
    rows = await session.execute(query.order_by(AdminAuditEntry.id).limit(limit))
    return rows.scalars().all()


async def stream_all(connection: AsyncConnection) -> AsyncIterator[Any]:
    """Every entry in chain order, through a server-side cursor."""
    result = await connection.stream(select(AdminAuditEntry.__table__).order_by("id"))
    async for row in result:
        yield row
