"""The delivery worker: claim due messages, send them signed, record what happened.

No database transaction stays open across an HTTP call. A worker claims a batch in one short
transaction (`SELECT … FOR UPDATE SKIP LOCKED`, then a lease id and expiry committed on each
row), sends, and records every outcome in a second short transaction. Several workers can run:
a leased row is neither locked nor due for the others. A worker that dies mid-batch leaves
leases that expire, and the messages are claimed again: at least once, never lost. Receivers
get exactly-once by deduplicating on `webhook-id`, the same on every attempt.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.models import WebhookEndpoint
from service.observability import get_logger
from service.webhooks import repository
from service.webhooks.repository import ClaimedMessage
from service.webhooks.retry import DEFAULT_RETRY, RetryPolicy
from service.webhooks.signing import signature_header

# Per phase; the whole attempt is also bounded by TOTAL_TIMEOUT (a receiver dripping bytes
# could otherwise hold a send for read-timeout × chunks).
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=15.0, write=10.0, pool=5.0)
TOTAL_TIMEOUT = 30.0
# The shortest lease; a batch's lease also covers its slowest case (see `lease_for`).
DEFAULT_LEASE = timedelta(seconds=90)
USER_AGENT = "carbon-points-webhooks/1"

_log = get_logger("carbon_points.webhooks")


@dataclass(frozen=True, slots=True)
class _Outcome:
    message: ClaimedMessage
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def sent(self) -> bool:
        return self.error != "EndpointDisabled"


def message_body(message: ClaimedMessage) -> bytes:
    """The JSON sent: the same bytes on every attempt, so the same id always means the same
    content (Standard Webhooks' `type`, `timestamp`, `data` envelope)."""
    return orjson.dumps(
        {
            "type": message.event_type,
            "timestamp": message.created_at.isoformat(),
            "data": message.payload,
        }
    )


async def _send(
    http: httpx.AsyncClient,
    endpoint: WebhookEndpoint | None,
    message: ClaimedMessage,
    *,
    partner_key: str,
    now: datetime,
    http_timeout: httpx.Timeout,
) -> _Outcome:
    if endpoint is None or endpoint.disabled_at is not None:
        return _Outcome(message, now, None, "EndpointDisabled", 0)
    body = message_body(message)
    # The signature's timestamp is the wall clock of this attempt: receivers check it against
    # theirs (Standard Webhooks allows a few minutes), whatever `now` the worker was given.
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(
            partner_key, endpoint, webhook_id=message.id, timestamp=timestamp, body=body, now=now
        ),
    }
    started = time.monotonic()
    status_code: int | None = None
    error: str | None = None
    try:
        async with asyncio.timeout(TOTAL_TIMEOUT):
            # Streamed and never read: only the status matters, and a huge reply costs nothing.
            async with http.stream(
                "POST", endpoint.url, content=body, headers=headers, timeout=http_timeout
            ) as response:
                status_code = response.status_code
    except TimeoutError:
        error = "TotalTimeout"
    except httpx.HTTPError as exc:
        # The class only: exception text can carry the URL, and URLs can carry tokens.
        error = type(exc).__name__
    except Exception as exc:
        # Anything else (a malformed URL, a bug) fails this message only, not the batch.
        error = type(exc).__name__
        _log.exception("webhook_send_error", message_id=message.id)
    duration_ms = int((time.monotonic() - started) * 1000)
    return _Outcome(message, now, status_code, error, duration_ms)


async def claim_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    leased_until: datetime,
    batch_size: int = 100,
) -> tuple[list[ClaimedMessage], dict[uuid.UUID, WebhookEndpoint]]:
    """Lease up to `batch_size` messages due at `now` to the caller, and commit the lease."""
    async with sessionmaker() as session, session.begin():
        claimed = await repository.claim_due(
            session, now=now, leased_until=leased_until, lease_id=uuid.uuid4(), limit=batch_size
        )
        endpoints = await repository.endpoints_by_id(session, {m.endpoint_id for m in claimed})
    return claimed, endpoints


def lease_for(batch_size: int, concurrency: int, minimum: timedelta = DEFAULT_LEASE) -> timedelta:
    """Long enough for a whole batch in the worst case: every send in every wave timing out.

    A lease that ran out while its message still waited its turn would let another worker
    send it too.
    """
    waves = -(-batch_size // concurrency)
    return max(minimum, timedelta(seconds=waves * TOTAL_TIMEOUT + 30))


def _error_text(outcome: _Outcome) -> str:
    if outcome.status_code is not None:
        return f"HTTP {outcome.status_code}"
    return outcome.error or "unknown"


async def _record(
    sessionmaker: async_sessionmaker[AsyncSession],
    outcomes: list[_Outcome],
    *,
    finished: datetime,
    retry: RetryPolicy,
    rng: random.Random | None,
) -> None:
    async with sessionmaker() as session, session.begin():
        for outcome in outcomes:
            message = outcome.message
            await repository.record_attempt(
                session,
                message_id=message.id,
                attempt=message.attempt,
                attempted_at=outcome.attempted_at,
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
            )
            if outcome.delivered:
                await repository.mark_delivered(session, message.id, at=finished)
                continue
            give_up = not outcome.sent or retry.exhausted(message.attempt)
            next_at = None if give_up else finished + retry.delay(message.attempt, rng)
            await repository.mark_failed(
                session,
                message.id,
                lease_id=message.lease_id,
                error=_error_text(outcome),
                next_attempt_at=next_at,
            )
            _log.warning(
                "webhook_attempt_failed",
                message_id=message.id,
                endpoint_id=str(message.endpoint_id),
                attempt=message.attempt,
                status_code=outcome.status_code,
                error=outcome.error,
                dead=give_up,
            )


async def deliver_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    *,
    now: datetime,
    batch_size: int = 100,
    partner_key: str,
    retry: RetryPolicy = DEFAULT_RETRY,
    lease: timedelta | None = None,
    http_timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    concurrency: int = 16,
    rng: random.Random | None = None,
) -> int:
    """Attempt every message due at `now`, batch by batch, once each; return the attempts made.

    Messages due at `now` are tried once in this call; those that fail are rescheduled after
    `now` and wait for a later call. Each batch is leased for `lease` (default: `lease_for`
    the batch size and concurrency). Leases and retry times follow `now` plus the real time
    elapsed in this call, so a long run does not let its leases expire early.
    """
    started = time.monotonic()

    def clock() -> datetime:
        return now + timedelta(seconds=time.monotonic() - started)

    limit = asyncio.Semaphore(concurrency)
    batch_lease = lease or lease_for(batch_size, concurrency)

    async def send(message: ClaimedMessage, endpoint: WebhookEndpoint | None) -> _Outcome:
        async with limit:
            return await _send(
                http,
                endpoint,
                message,
                partner_key=partner_key,
                now=clock(),
                http_timeout=http_timeout,
            )

    total = 0
    while True:
        # Due by the caller's `now`: what fails here is rescheduled after it and waits.
        claimed, endpoints = await claim_due(
            sessionmaker, now=now, leased_until=clock() + batch_lease, batch_size=batch_size
        )
        if not claimed:
            return total
        outcomes = await asyncio.gather(
            *(send(message, endpoints.get(message.endpoint_id)) for message in claimed)
        )
        await _record(sessionmaker, list(outcomes), finished=clock(), retry=retry, rng=rng)
        total += len(claimed)
