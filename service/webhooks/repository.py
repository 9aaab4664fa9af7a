"""All of the webhook tables' SQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import WebhookAttempt, WebhookEndpoint, WebhookMessage

_ACTIVE_ENDPOINTS = text(
    # Every merchant call asks this: built once.
    """
    SELECT id FROM webhook_endpoints
    WHERE owner_type = :owner_type AND owner_id = :owner_id AND disabled_at IS NULL
      AND :event_type = ANY(event_types)
    ORDER BY created_at, id
    """
)


def subscribed_endpoints_sql(owner_type: str, owner_id: str, event_type: str) -> str:
    """An array expression: the ids of an owner's active endpoints subscribed to an event
    type, in the order `enqueue` writes them. The arguments are SQL expressions (bound
    placeholders or constant literals, never values). For a caller's own first statement,
    so that announcing an event costs no round trip of its own: `enqueue(...,
    endpoint_ids=...)` then writes only when there is someone to tell."""
    return (
        "ARRAY(SELECT id FROM webhook_endpoints"  # noqa: S608 (SQL expressions, not values)
        f" WHERE owner_type = {owner_type} AND owner_id = {owner_id}"
        f" AND disabled_at IS NULL AND {event_type} = ANY(event_types)"
        " ORDER BY created_at, id)"
    )


async def active_endpoints_for(
    session: AsyncSession, *, owner_type: str, owner_id: uuid.UUID, event_type: str
) -> Sequence[uuid.UUID]:
    result = await session.scalars(
        _ACTIVE_ENDPOINTS,
        {"owner_type": owner_type, "owner_id": owner_id, "event_type": event_type},
    )
    return result.all()


async def insert_messages(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(WebhookMessage), rows)


async def insert_endpoint(
    session: AsyncSession,
    *,
    owner_type: str,
    owner_id: uuid.UUID,
    url: str,
    event_types: list[str],
    salt: bytes,
) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        owner_type=owner_type,
        owner_id=owner_id,
        url=url,
        event_types=event_types,
        salt=salt,
    )
    session.add(endpoint)
    await session.flush()
    return endpoint


async def disable_endpoint(
    session: AsyncSession, endpoint: WebhookEndpoint, *, at: datetime
) -> None:
    """Disabled from `at`, unless it already was (the first instant stays)."""
    if endpoint.disabled_at is None:
        endpoint.disabled_at = at
    await session.flush()


async def replace_salt(
    session: AsyncSession,
    endpoint: WebhookEndpoint,
    *,
    salt: bytes,
    previous_salt: bytes | None,
    previous_salt_expires_at: datetime | None,
) -> None:
    endpoint.previous_salt = previous_salt
    endpoint.previous_salt_expires_at = previous_salt_expires_at
    endpoint.salt = salt
    await session.flush()


async def endpoints_of(
    session: AsyncSession, *, owner_type: str, owner_id: uuid.UUID, include_disabled: bool
) -> Sequence[WebhookEndpoint]:
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.owner_type == owner_type, WebhookEndpoint.owner_id == owner_id
    )
    if not include_disabled:
        query = query.where(WebhookEndpoint.disabled_at.is_(None))
    result = await session.scalars(query.order_by(WebhookEndpoint.created_at, WebhookEndpoint.id))
    return result.all()


async def endpoint_for_update(
    session: AsyncSession, endpoint_id: uuid.UUID
) -> WebhookEndpoint | None:
    result = await session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).with_for_update()
    )
    return result.one_or_none()


async def endpoints_by_id(
    session: AsyncSession, ids: set[uuid.UUID]
) -> dict[uuid.UUID, WebhookEndpoint]:
    if not ids:
        return {}
    result = await session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.id.in_(ids)))
    return {endpoint.id: endpoint for endpoint in result}


async def message_for_update(session: AsyncSession, message_id: str) -> WebhookMessage | None:
    result = await session.scalars(
        select(WebhookMessage).where(WebhookMessage.id == message_id).with_for_update()
    )
    return result.one_or_none()


async def reset_for_replay(session: AsyncSession, message: WebhookMessage) -> WebhookMessage:
    """Pending again, due now (the database's clock), with a fresh set of tries."""
    message.status = "pending"
    message.attempts = 0
    message.next_attempt_at = func.now()
    message.delivered_at = None
    message.lease_id = None
    message.leased_until = None
    message.last_error = None
    await session.flush()
    await session.refresh(message)
    return message


async def dead_messages(session: AsyncSession, *, limit: int) -> Sequence[WebhookMessage]:
    result = await session.scalars(
        select(WebhookMessage)
        .where(WebhookMessage.status == "dead")
        .order_by(WebhookMessage.created_at, WebhookMessage.id)
        .limit(limit)
    )
    return result.all()


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    id: str
    endpoint_id: uuid.UUID
    event_type: str
    payload: dict[str, Any]
    created_at: datetime
    attempt: int
    lease_id: uuid.UUID


async def claim_due(
    session: AsyncSession,
    *,
    now: datetime,
    leased_until: datetime,
    lease_id: uuid.UUID,
    limit: int,
) -> list[ClaimedMessage]:
    """Lease up to `limit` due messages to this worker; rows other workers hold are skipped."""
    due = (
        select(WebhookMessage.id)
        .where(
            WebhookMessage.status == "pending",
            WebhookMessage.next_attempt_at <= now,
            or_(WebhookMessage.leased_until.is_(None), WebhookMessage.leased_until <= now),
        )
        .order_by(WebhookMessage.next_attempt_at, WebhookMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    result = await session.execute(
        update(WebhookMessage)
        .where(WebhookMessage.id.in_(due))
        .values(
            lease_id=lease_id,
            leased_until=leased_until,
            # Counted when claimed: a message that crashes its worker still runs out of tries.
            attempts=WebhookMessage.attempts + 1,
        )
        .returning(
            WebhookMessage.id,
            WebhookMessage.endpoint_id,
            WebhookMessage.event_type,
            WebhookMessage.payload,
            WebhookMessage.created_at,
            WebhookMessage.attempts,
        )
        .execution_options(synchronize_session=False)
    )
    claimed = [
        ClaimedMessage(row[0], row[1], row[2], row[3], row[4], row[5], lease_id)
        for row in result.all()
    ]
    claimed.sort(key=lambda message: (message.created_at, message.id))
    return claimed


async def record_attempt(
    session: AsyncSession,
    *,
    message_id: str,
    attempt: int,
    attempted_at: datetime,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
) -> None:
    await session.execute(
        insert(WebhookAttempt).values(
            message_id=message_id,
            attempt=attempt,
            attempted_at=attempted_at,
            status_code=status_code,
            error=error,
            duration_ms=duration_ms,
        )
    )


async def mark_delivered(session: AsyncSession, message_id: str, *, at: datetime) -> None:
    # Not fenced by the lease: a 2xx is the truth even from a worker whose lease ran out.
    await session.execute(
        update(WebhookMessage)
        .where(WebhookMessage.id == message_id, WebhookMessage.status == "pending")
        .values(
            status="delivered",
            delivered_at=at,
            lease_id=None,
            leased_until=None,
            last_error=None,
        )
        .execution_options(synchronize_session=False)
    )


async def mark_failed(
    session: AsyncSession,
    message_id: str,
    *,
    lease_id: uuid.UUID,
    error: str,
    next_attempt_at: datetime | None,
) -> None:
    """Schedule a retry at `next_attempt_at`, or dead-letter when it is None.

    Fenced by the lease: a worker whose lease expired (and was re-claimed) must not overwrite
    the newer attempt's outcome.
    """
    values: dict[str, Any] = {"lease_id": None, "leased_until": None, "last_error": error}
    if next_attempt_at is None:
        values["status"] = "dead"
    else:
        values["next_attempt_at"] = next_attempt_at
    await session.execute(
        update(WebhookMessage)
        .where(
            and_(
                WebhookMessage.id == message_id,
                WebhookMessage.status == "pending",
                WebhookMessage.lease_id == lease_id,
            )
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )


_OUTBOX_STATE = text(
    # Both counts on the table's partial indexes (pending by due time, dead by age).
    """
    SELECT (SELECT count(*) FROM webhook_messages WHERE status = 'pending') AS pending,
           (SELECT min(next_attempt_at) FROM webhook_messages
             WHERE status = 'pending' AND next_attempt_at <= :now) AS oldest_due,
           (SELECT count(*) FROM webhook_messages WHERE status = 'dead') AS dead
    """
)


@dataclass(frozen=True, slots=True)
class OutboxState:
    pending: int
    oldest_due: datetime | None
    dead: int


async def outbox_state(session: AsyncSession, now: datetime) -> OutboxState:
    """Messages pending, the oldest one due by `now`, and dead letters: one statement."""
    row = (await session.execute(_OUTBOX_STATE, {"now": now})).one()
    return OutboxState(int(row.pending), row.oldest_due, int(row.dead))
