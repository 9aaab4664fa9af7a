"""Contract tests: the real service, served by `carbon-points serve` in a subprocess.

`running_service` seeds a partner (with its key), a merchant (with a key of every scope and an
offer), an administrator holding every role (bootstrapped, with a TOTP second factor) and the
methodology library in the test database, starts the service on a free port against that
database and the test Redis db, and empties every table when the module is done.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.accounts.tokens import Keyring
from service.admin import service as admins
from service.admin import totp
from service.admin.tokens import mint_admin_token
from service.config import Settings
from service.db import create_sessionmaker
from service.dev_secrets import load_secrets
from service.merchants.auth import issue_key
from service.merchants.service import create_merchant, create_offer
from service.methodologies.service import sync_library
from service.models import ADMIN_ROLES
from service.partners.credentials import IssuedCredential, issue_credential
from service.partners.service import create_partner
from service.redis import create_redis
from tests.conftest import empty_all_tables
from tests.crediting.conftest import live
from tests.foundation.test_serve import ROOT, _free_port, _serve_until_ready, _stop

__all__ = ["ADMIN_PASSWORD", "RunningService", "live", "running_service"]

ADMIN_PASSWORD = "contract admin passphrase"


@dataclass(frozen=True)
class RunningService:
    url: str
    partner: IssuedCredential
    partner_code: str
    merchant_key: str
    merchant_code: str
    offer_id: str
    admin_id: uuid.UUID
    admin_login: str
    admin_totp_secret: str
    admin_keyring: Keyring

    def admin_code(self) -> str:
        """The administrator's current TOTP code."""
        return totp.code_at(self.admin_totp_secret, datetime.now(UTC))

    def mint_admin_token(self) -> str:
        """An admin token signed with the service's key (what a login would hand out)."""
        return mint_admin_token(self.admin_keyring, admin_id=self.admin_id, generation=0)


@pytest.fixture(scope="module")
async def running_service(
    test_settings: Settings, engine: AsyncEngine
) -> AsyncIterator[RunningService]:
    assert test_settings.database_url and test_settings.redis_url
    redis = create_redis(test_settings.redis_url, cluster=test_settings.redis_cluster)
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
        enrolled = await admins.bootstrap(
            session,
            secrets.partner_secret_key,
            login="contract-admin",
            display_name="Contract Admin",
            password=ADMIN_PASSWORD,
            roles=list(ADMIN_ROLES),
        )
        admin = enrolled.admin
        admin_totp_secret = totp.derive_secret(
            secrets.partner_secret_key, admin.id, admin.totp_salt
        )
    env = {
        **os.environ,
        "DATABASE_URL": test_settings.database_url,
        "REDIS_URL": test_settings.redis_url,
        "CARBON_POINTS_DATA_DIR": str(ROOT / ".data" / "test"),
        "CARBON_POINTS_LOG_LEVEL": "WARNING",
        "CARBON_POINTS_DB_PGBOUNCER": str(test_settings.db_pgbouncer).lower(),
        "CARBON_POINTS_REDIS_CLUSTER": str(test_settings.redis_cluster).lower(),
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
            admin_id=admin.id,
            admin_login=admin.login,
            admin_totp_secret=admin_totp_secret,
            admin_keyring=Keyring.from_secrets(secrets.jwt_signing_key),
        )
    finally:
        _stop(process)
        await empty_all_tables(engine)
        await redis.flushdb()
        await redis.aclose()
