"""Webhook endpoints (create, list, disable, rotate) and the outbox's write side.

Services take the session first and never commit: `enqueue` writes its messages in the
caller's transaction, so they exist exactly when the business change they announce does.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import WebhookEndpoint, WebhookMessage
from service.webhooks import repository
from service.webhooks.errors import (
    EndpointNotFoundError,
    InvalidEndpointError,
    MessageNotFoundError,
    MessageNotReplayableError,
)
from service.webhooks.signing import derive_endpoint_secret

OWNER_TYPES = frozenset({"merchant", "partner"})
EVENT_TYPES = frozenset(
    {
        "credit.created",
        "redemption.authorised",
        "redemption.captured",
        "redemption.voided",
        "redemption.expired",
        "redemption.refunded",
    }
)
MAX_URL_LENGTH = 2048

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def new_message_id() -> str:
    """`msg_` + a ULID in lower-case Crockford base32: 48 bits of milliseconds, 80 random bits.

    Sorts by creation time (to the millisecond), never contains a `.` (the signed content's
    separator), and stays the `webhook-id` of every attempt and replay.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = [_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5)]
    return "msg_" + "".join(chars)


@dataclass(frozen=True, slots=True)
class IssuedEndpointSecret:
    endpoint_id: uuid.UUID
    secret: str
    """`whsec_…`: shown once, to the caller; the server can derive it again but never shows it."""


def _check_owner(owner_type: str) -> None:
    if owner_type not in OWNER_TYPES:
        raise InvalidEndpointError(f"owner type must be one of {sorted(OWNER_TYPES)}")


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidEndpointError("the URL must be absolute, http:// or https://")
    if len(url) > MAX_URL_LENGTH or any(c.isspace() for c in url):
        raise InvalidEndpointError(
            f"the URL must be at most {MAX_URL_LENGTH} characters, no spaces"
        )


def _check_event_types(event_types: Sequence[str]) -> list[str]:
    chosen = sorted(set(event_types))
    unknown = [t for t in chosen if t not in EVENT_TYPES]
    if not chosen or unknown:
        raise InvalidEndpointError(
            f"event types must be a non-empty subset of {sorted(EVENT_TYPES)}",
            unknown=unknown,
        )
    return chosen


async def create_endpoint(
    session: AsyncSession,
    partner_key: str,
    *,
    owner_type: str,
    owner_id: uuid.UUID,
    url: str,
    event_types: Sequence[str],
) -> IssuedEndpointSecret:
    """A new endpoint; its signing secret is returned once, here."""
    _check_owner(owner_type)
    _check_url(url)
    chosen = _check_event_types(event_types)
    endpoint = await repository.insert_endpoint(
        session,
        owner_type=owner_type,
        owner_id=owner_id,
        url=url,
        event_types=chosen,
        salt=secrets.token_bytes(16),
    )
    return IssuedEndpointSecret(
        endpoint.id, derive_endpoint_secret(partner_key, endpoint.id, endpoint.salt)
    )


async def list_endpoints(
    session: AsyncSession,
    *,
    owner_type: str,
    owner_id: uuid.UUID,
    include_disabled: bool = False,
) -> Sequence[WebhookEndpoint]:
    _check_owner(owner_type)
    return await repository.endpoints_of(
        session, owner_type=owner_type, owner_id=owner_id, include_disabled=include_disabled
    )


async def _endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    endpoint = await repository.endpoint_for_update(session, endpoint_id)
    if endpoint is None:
        raise EndpointNotFoundError(f"no webhook endpoint {endpoint_id}")
    return endpoint


async def disable_endpoint(session: AsyncSession, endpoint_id: uuid.UUID, *, now: datetime) -> None:
    """Stop sending to it: nothing new is enqueued, and its pending messages go dead unsent
    (an administrator can replay them once the endpoint is replaced)."""
    endpoint = await _endpoint(session, endpoint_id)
    await repository.disable_endpoint(session, endpoint, at=now)


async def rotate_secret(
    session: AsyncSession,
    partner_key: str,
    endpoint_id: uuid.UUID,
    *,
    now: datetime,
    overlap: timedelta = timedelta(hours=24),
) -> IssuedEndpointSecret:
    """A new secret, returned once. For `overlap`, deliveries carry a signature made with the
    old secret too, so the receiver can switch whenever it likes within that window."""
    endpoint = await _endpoint(session, endpoint_id)
    if endpoint.disabled_at is not None:
        raise EndpointNotFoundError(f"webhook endpoint {endpoint_id} is disabled")
    keep_previous = overlap > timedelta(0)
    await repository.replace_salt(
        session,
        endpoint,
        salt=secrets.token_bytes(16),
        previous_salt=endpoint.salt if keep_previous else None,
        previous_salt_expires_at=now + overlap if keep_previous else None,
    )
    return IssuedEndpointSecret(
        endpoint.id, derive_endpoint_secret(partner_key, endpoint.id, endpoint.salt)
    )


async def enqueue(
    session: AsyncSession,
    *,
    owner_type: str,
    owner_id: uuid.UUID,
    event_type: str,
    payload: Mapping[str, Any],
    endpoint_ids: Sequence[uuid.UUID] | None = None,
) -> list[str]:
    """Announce an event to every active endpoint of the owner subscribed to its type.

    Writes one outbox message per endpoint in the caller's transaction and returns their ids
    (the `webhook-id` each receiver will see). Nothing is sent now: if the transaction rolls
    back, nothing ever is; once it commits, the delivery worker sends each message until it
    is delivered or dead. The payload must be JSON-serialisable (datetimes and UUIDs become
    strings, as they will on the wire). `endpoint_ids`: the subscribers, when the caller has
    read them already (`subscribed_endpoints_sql` in its own statement); else they are
    looked up here.
    """
    if owner_type not in OWNER_TYPES:
        raise ValueError(f"unknown webhook owner type {owner_type!r}")
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    # Round-trip now, in the caller's transaction: a payload that cannot be sent fails the
    # business call rather than a worker hours later.
    data = orjson.loads(orjson.dumps(dict(payload)))
    if endpoint_ids is None:
        endpoint_ids = await repository.active_endpoints_for(
            session, owner_type=owner_type, owner_id=owner_id, event_type=event_type
        )
    rows = [
        {
            "id": new_message_id(),
            "endpoint_id": endpoint_id,
            "event_type": event_type,
            "payload": data,
        }
        for endpoint_id in endpoint_ids
    ]
    await repository.insert_messages(session, rows)
    return [row["id"] for row in rows]


async def replay(session: AsyncSession, message_id: str) -> WebhookMessage:
    """Send a dead or delivered message again, under the same id, with a fresh set of tries."""
    message = await repository.message_for_update(session, message_id)
    if message is None:
        raise MessageNotFoundError(f"no webhook message {message_id}")
    if message.status == "pending":
        raise MessageNotReplayableError(f"{message_id} is still pending")
    endpoint = await _endpoint(session, message.endpoint_id)
    if endpoint.disabled_at is not None:
        raise MessageNotReplayableError(f"the endpoint of {message_id} is disabled")
    return await repository.reset_for_replay(session, message)


async def list_dead(session: AsyncSession, *, limit: int = 100) -> Sequence[WebhookMessage]:
    return await repository.dead_messages(session, limit=limit)


@dataclass(frozen=True, slots=True)
class OutboxLag:
    pending: int
    lag_seconds: float  # how long the oldest due message has been due; 0 when none is
    dead: int


async def outbox_state(session: AsyncSession, *, now: datetime) -> OutboxLag:
    """The outbox at a glance (for the metrics): pending, the oldest due message's lag, dead."""
    state = await repository.outbox_state(session, now)
    lag = (now - state.oldest_due).total_seconds() if state.oldest_due is not None else 0.0
    return OutboxLag(state.pending, max(0.0, lag), state.dead)
