"""Webhook tests commit for real: the worker runs its own transactions, as in production.

The receiving end is an `httpx.MockTransport` in the same process (no network), scripted to
fail, recover, or lose its response, and deduplicating by `webhook-id` as a receiver should.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.db import create_sessionmaker
from service.models import WebhookAttempt, WebhookMessage
from service.webhooks import service
from service.webhooks.delivery import deliver_due
from service.webhooks.retry import DEFAULT_RETRY, RetryPolicy

PARTNER_KEY = "test-partner-key-for-webhooks"
URL = "https://receiver.example/hooks"

# What the receiver does with the `seen`-th arrival of a webhook-id: a status to answer, or an
# exception to raise. A 2xx is processed; a behaviour may also process and still fail (the
# response is lost).
Behaviour = Callable[["Receiver", httpx.Request, int], int | Exception]


def always_ok(receiver: Receiver, request: httpx.Request, seen: int) -> int | Exception:
    return 204


@dataclass
class Receiver:
    """A merchant's endpoint. `processed` is what a correct receiver acts on: each webhook-id
    once, whatever the sender repeats; `requests` is everything that arrived."""

    behaviour: Behaviour = always_ok
    delay: float = 0.0
    requests: list[httpx.Request] = field(default_factory=list)
    processed: dict[str, dict[str, Any]] = field(default_factory=dict)
    arrivals: Counter[str] = field(default_factory=Counter)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        webhook_id = request.headers["webhook-id"]
        self.arrivals[webhook_id] += 1
        self.requests.append(request)
        outcome = self.behaviour(self, request, self.arrivals[webhook_id])
        if isinstance(outcome, Exception):
            raise outcome
        if 200 <= outcome < 300:
            self.process(request)
        return httpx.Response(outcome)

    def process(self, request: httpx.Request) -> None:
        self.processed.setdefault(request.headers["webhook-id"], orjson.loads(request.content))


@dataclass
class Env:
    sessionmaker: async_sessionmaker[AsyncSession]
    receiver: Receiver
    http: httpx.AsyncClient
    owner_id: uuid.UUID = field(default_factory=uuid.uuid4)

    async def endpoint(
        self,
        events: tuple[str, ...] = ("credit.created", "redemption.captured"),
        *,
        owner_id: uuid.UUID | None = None,
        owner_type: str = "merchant",
        url: str = URL,
    ) -> service.IssuedEndpointSecret:
        async with self.sessionmaker() as session, session.begin():
            return await service.create_endpoint(
                session,
                PARTNER_KEY,
                owner_type=owner_type,
                owner_id=owner_id or self.owner_id,
                url=url,
                event_types=list(events),
            )

    async def enqueue(
        self, event_type: str = "credit.created", payload: dict[str, Any] | None = None
    ) -> list[str]:
        async with self.sessionmaker() as session, session.begin():
            return await service.enqueue(
                session,
                owner_type="merchant",
                owner_id=self.owner_id,
                event_type=event_type,
                payload=payload or {"credit_id": str(uuid.uuid4()), "points": 12},
            )

    async def deliver(
        self,
        now: datetime | None = None,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        batch_size: int = 100,
        http: httpx.AsyncClient | None = None,
    ) -> int:
        return await deliver_due(
            self.sessionmaker,
            http or self.http,
            now=now or soon(),
            batch_size=batch_size,
            partner_key=PARTNER_KEY,
            retry=retry,
        )

    async def message(self, message_id: str) -> WebhookMessage:
        async with self.sessionmaker() as session:
            found = await session.get(WebhookMessage, message_id)
            assert found is not None
            return found

    async def attempts(self, message_id: str) -> list[WebhookAttempt]:
        async with self.sessionmaker() as session:
            rows = await session.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.message_id == message_id)
                .order_by(WebhookAttempt.id)
            )
            return list(rows)


def soon() -> datetime:
    """A moment just after everything committed so far (messages are due from commit time)."""
    return datetime.now(UTC) + timedelta(seconds=1)


@pytest.fixture
async def env(committed: AsyncEngine) -> AsyncIterator[Env]:
    receiver = Receiver()
    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as http:
        yield Env(create_sessionmaker(committed), receiver, http)
