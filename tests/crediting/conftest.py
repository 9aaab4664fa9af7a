"""Crediting tests: the real app over ASGI, signed by the real SDK, committing for real."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from integrations import AsyncCarbonPointsClient, Event
from service.crediting import service as crediting
from service.db import create_sessionmaker
from service.ledger import service as ledger
from service.methodologies.service import sync_library
from service.models import Participant
from service.partners.credentials import IssuedCredential, issue_credential
from service.partners.service import create_partner


def _trip_at(now: datetime) -> datetime:
    """Three hours ago, inside every claim window (the shortest is three days), unless that
    is before the programme's midnight (Asia/Shanghai): tests lay trips over the next two and
    a half hours and count them against daily caps, so they must fall on one programme day.
    Then 21:00 of the day before."""
    local_now = now.astimezone(ZoneInfo("Asia/Shanghai"))
    if local_now.hour >= 3:
        return (now - timedelta(hours=3)).replace(microsecond=0)
    evening = (local_now - timedelta(days=1)).replace(hour=21, minute=0, second=0, microsecond=0)
    return evening.astimezone(UTC)


TRIP_AT = _trip_at(datetime.now(UTC))


@dataclass
class Live:
    app: FastAPI
    sessionmaker: async_sessionmaker[AsyncSession]
    transport: httpx.ASGITransport

    async def partner(
        self, code: str, action_types: tuple[str, ...] = ("transit.metro", "transit.bus")
    ) -> IssuedCredential:
        async with self.sessionmaker() as session, session.begin():
            partner = await create_partner(
                session, code=code, name=code.title(), kind="transit", action_types=action_types
            )
            return await issue_credential(
                session, self.app.state.secrets.partner_secret_key, partner.id
            )

    def client(self, credential: IssuedCredential, **options: Any) -> AsyncCarbonPointsClient:
        options.setdefault("max_retries", 0)
        return AsyncCarbonPointsClient(
            "http://test",
            key_id=credential.key_id,
            secret=credential.secret,
            transport=self.transport,
            **options,
        )

    async def participant(self) -> uuid.UUID:
        pid = uuid.uuid4()
        async with self.sessionmaker() as session, session.begin():
            session.add(Participant(id=pid, kind="citizen", display_name="Test rider"))
        return pid

    def settings(self) -> crediting.CreditingSettings:
        return crediting.CreditingSettings(
            pepper=self.app.state.secrets.identifier_pepper,
            validity=self.app.state.crediting_validity,
        )

    async def link(
        self, participant: uuid.UUID, credential: IssuedCredential, subject_ref: str
    ) -> list[Any]:
        async with self.sessionmaker() as session, session.begin():
            registry = await self.app.state.registry_cache.get(session)
            return await crediting.link_identity(
                session,
                registry,
                self.settings(),
                participant_id=participant,
                partner_id=credential.partner_id,
                subject_ref=subject_ref,
                now=datetime.now(UTC),
            )

    async def balance(self, participant: uuid.UUID) -> int:
        async with self.sessionmaker() as session:
            return (await ledger.balance(session, participant)).available


def metro(external_id: str, card: str = "6222020000000001", **changes: Any) -> Event:
    fields: dict[str, Any] = {
        "external_id": external_id,
        "action_type": "transit.metro",
        "occurred_at": TRIP_AT,
        "subject_ref": card,
        "quantities": {"distance_m": 12345, "duration_s": 1500},
    }
    fields.update(changes)
    return Event(**fields)


@pytest.fixture
async def live(app: FastAPI, committed: AsyncEngine, redis: Redis) -> AsyncIterator[Live]:
    app.state.partner_credentials.clear()
    app.state.registry_cache.invalidate()
    sessionmaker = create_sessionmaker(committed)
    async with sessionmaker() as session, session.begin():
        await sync_library(session)
    yield Live(app, sessionmaker, httpx.ASGITransport(app=app, raise_app_exceptions=False))
    app.state.partner_credentials.clear()
    app.state.registry_cache.invalidate()
