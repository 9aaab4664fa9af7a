"""The demo seed is idempotent and leaves a ledger that verifies."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import create_sessionmaker
from service.ledger import service as ledger
from service.ledger.verify import verify_ledger
from service.seed import DEMO_CITIZEN_ID, seed_demo_data


async def test_seeding_twice_changes_nothing(committed: AsyncEngine) -> None:
    sessionmaker = create_sessionmaker(committed)
    for _ in range(2):
        async with sessionmaker() as session, session.begin():
            offered = await seed_demo_data(session)
    assert offered["demo citizen"] == str(DEMO_CITIZEN_ID)
    async with sessionmaker() as session:
        balance = await ledger.balance(session, DEMO_CITIZEN_ID)
    assert (balance.available, balance.grams) == (7 * 576, 7 * 576)
    report = await verify_ledger(committed)
    assert report.ok, report.violations
    assert report.transactions == 7
