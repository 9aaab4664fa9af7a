"""Ledger tests commit for real (concurrency and `ledger verify` need it)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.db import create_sessionmaker
from service.ledger import service as ledger
from service.ledger.schemas import CreditRequest, CreditResult
from service.ledger.verify import VerifyReport, verify_ledger

T = TypeVar("T")
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


class Ledger:
    """Runs each ledger call in its own committed transaction, as an endpoint would."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessionmaker: async_sessionmaker[AsyncSession] = create_sessionmaker(engine)
        self._keys = 0

    def key(self, prefix: str = "k") -> str:
        self._keys += 1
        return f"{prefix}-{self._keys}"

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async with self.sessionmaker() as session, session.begin():
            return await work(session)

    async def credit(
        self,
        participant: uuid.UUID,
        points: int,
        *,
        grams: int = 0,
        expires_at: datetime | None = None,
        key: str | None = None,
    ) -> CreditResult:
        request = CreditRequest(
            origin="test",
            key=key or self.key("credit"),
            participant_id=participant,
            points=points,
            grams=grams,
            expires_at=expires_at or NOW + timedelta(days=730),
        )
        (result,) = await self.run(lambda s: ledger.credit(s, [request], now=NOW))
        return result

    async def available(self, participant: uuid.UUID) -> int:
        return (await self.run(lambda s: ledger.balance(s, participant))).available

    async def verify(self) -> VerifyReport:
        return await verify_ledger(self.engine)


@pytest.fixture
def ledger_env(committed: AsyncEngine) -> Ledger:
    return Ledger(committed)
