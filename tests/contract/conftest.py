"""Contract tests: the real service, served by `carbon-points serve` in a subprocess.

`running_service` seeds a partner (with its key), a merchant (with a key of every scope and an
offer) and the methodology library in the test database, starts the service on a free port
against that database and the test Redis db, and empties every table when the module is done.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from service.db import create_sessionmaker
from service.dev_secrets import load_secrets
from service.merchants.auth import issue_key
from service.merchants.service import create_merchant, create_offer
from service.methodologies.service import sync_library
from service.partners.credentials import IssuedCredential, issue_credential
from service.partners.service import create_partner
from tests.conftest import empty_all_tables
from tests.crediting.conftest import live
from tests.foundation.test_serve import ROOT, _free_port, _serve_until_ready, _stop

__all__ = ["RunningService", "live", "running_service"]


@dataclass(frozen=True)
class RunningService:
    url: str
    partner: IssuedCredential
    partner_code: str
    merchant_key: str
    merchant_code: str
    offer_id: str


@pytest.fixture(scope="module")
async def running_service(
    test_settings: Settings, engine: AsyncEngine
) -> AsyncIterator[RunningService]:
    assert test_settings.database_url and test_settings.redis_url
    redis: Redis = Redis.from_url(test_settings.redis_url)
    await redis.flushdb()
    await empty_all_tables(engine)
    secrets = load_secrets(test_settings)
    sessionmaker = create_sessionmaker(engine)
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        await sync_library(session)
        partner = await create_partner(
            session,
            code="contract-metro",
            name="Contract Metro",
            kind="transit",
            action_types=["transit.metro", "transit.bus"],
        )
        credential = await issue_credential(session, secrets.partner_secret_key, partner.id)
        merchant = await create_merchant(session, code="contract-cafe", name="Contract Café")
        key = await issue_key(session, merchant.id, ["redeem", "refund", "settlement"])
        offer = await create_offer(
            session,
            merchant.id,
            title="Oat latte",
            points_price=100,
            face_value_fen=1500,
            valid_from=now - timedelta(days=1),
            valid_to=now + timedelta(days=30),
            stock=1000,
        )
    env = {
        **os.environ,
        "DATABASE_URL": test_settings.database_url,
        "REDIS_URL": test_settings.redis_url,
        "CARBON_POINTS_DATA_DIR": str(ROOT / ".data" / "test"),
        "CARBON_POINTS_LOG_LEVEL": "WARNING",
    }
    port = _free_port()
    process, status = _serve_until_ready(env, port)
    try:
        assert status == 200, _stop(process)[-3000:]
        yield RunningService(
            url=f"http://127.0.0.1:{port}",
            partner=credential,
            partner_code=partner.code,
            merchant_key=key.token,
            merchant_code=merchant.code,
            offer_id=str(offer.id),
        )
    finally:
        _stop(process)
        await empty_all_tables(engine)
        await redis.flushdb()
        await redis.aclose()
