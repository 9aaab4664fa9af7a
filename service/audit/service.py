"""Recording and reading administrative acts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.audit import repository
from service.audit.chain import ZERO_HASH, entry_digest, entry_hash, state_digest
from service.models import AdminAuditEntry


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: the administrator, the role the act was allowed under, and the request."""

    admin_id: uuid.UUID | None
    login: str
    role: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: Sequence[AdminAuditEntry]
    next_cursor: str | None


async def record(
    session: AsyncSession,
    actor: Actor,
    *,
    action: str,
    target_type: str,
    target_id: str,
    before: Any = None,
    after: Any = None,
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> AdminAuditEntry:
    """Append one act to the chain, in the caller's transaction (it commits with the act).

    `before` and `after` are the target's state (no secrets); only their SHA-256 is kept, so
    the log proves what changed without copying personal data into it. None means "did not
    exist" (before a creation) or "no state" (after a deletion).
    """
    occurred_at = now or datetime.now(UTC)
    fields: dict[str, Any] = {
        "occurred_at": occurred_at,
        "admin_id": actor.admin_id,
        "actor": actor.login,
        "role": actor.role,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "before_digest": state_digest(before) if before is not None else None,
        "after_digest": state_digest(after) if after is not None else None,
        "request_id": actor.request_id,
        "detail": detail or {},
    }
    head = await repository.lock_and_read_head(session)
    prev_hash = head if head is not None else ZERO_HASH
    digest = entry_digest(**fields)
    return await repository.append(
        session, {**fields, "prev_hash": prev_hash, "hash": entry_hash(prev_hash, digest)}
    )


def _cursor(cursor: str | None) -> int:
    """The id after which a page starts (the API checks the cursor's pattern first)."""
    from service.errors import BadRequestError

    if cursor is None:
        return 0
    if not cursor.isdigit() or len(cursor) > 18:
        raise BadRequestError("the cursor is not one this API returned")
    return int(cursor)


async def list_entries(
    session: AsyncSession,
    *,
    cursor: str | None,
    limit: int,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AuditPage:
    """A page of entries in chain order; follow `next_cursor` until it is None."""
    rows = await repository.page(
        session, after=_cursor(cursor), limit=limit + 1, action=action, since=since, until=until
    )
    if len(rows) > limit:
        return AuditPage(rows[:limit], str(rows[limit - 1].id))
    return AuditPage(rows, None)


async def stream_entries(
    session: AsyncSession,
    *,
    since: datetime | None,
    until: datetime | None,
    page: int = 1000,
) -> AsyncIterator[AdminAuditEntry]:
    """Every entry of a period in chain order, for an auditor's export: read `page` at a
    time (keyset on the id) and handed on one by one, so an export of any length holds one
    page in memory."""
    after = 0
    while True:
        rows = await repository.page(session, after=after, limit=page, since=since, until=until)
        for row in rows:
            yield row
        if len(rows) < page:
            return
        after = rows[-1].id
        session.expunge_all()  # the page before is written out: let it go
