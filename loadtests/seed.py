"""The load test's set-up step: a fresh database with everything the run needs.

1. Drops and creates the database ``carbon_points_loadtest_<pid>`` on the PostgreSQL server of
   ``server_url`` and migrates it to head.
2. Files the methodology library; creates three partners (``loadtest-transit`` for
   ``transit.metro`` and ``transit.bus``, ``loadtest-bikeshare`` for ``mobility.bikeshare``,
   ``loadtest-utility`` for ``energy.electricity_saving``; rate limits far above the load) with
   one credential each.
3. COPYs ``participants`` citizens, each linked to a transit card, a bike-share account and an
   electricity meter with the service's own keyed hash (``subject_hash``), and an app user for
   the first ``app_users`` of them (login ``139xxxxxxxx``, one password whose argon2id hash,
   made once with the service's own parameters, all of them share).
4. Creates ``merchants`` merchants, each with a till, an offer and a ``redeem`` API key.

The app users' first credits arrive through the partner API once the service is up
(``run.py``), so that history pages hold real credits with explanations behind them.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from sqlalchemy.engine import make_url

from loadtests.common import (
    BIKESHARE,
    TRANSIT,
    UTILITY,
    AppUser,
    MerchantKey,
    PartnerKey,
    State,
    card_ref,
    login_name,
)
from service import migrations
from service.accounts.logins import login_hash
from service.accounts.passwords import PASSWORDS
from service.db import create_engine, create_sessionmaker
from service.embedded import to_asyncpg_dsn
from service.merchants.auth import issue_key
from service.merchants.service import add_terminal, create_merchant, create_offer
from service.methodologies.service import sync_library
from service.partners.credentials import issue_credential, subject_hash
from service.partners.service import create_partner

PARTNER_SPECS = {
    TRANSIT: ("Load-test Metro & Bus", "transit", ["transit.metro", "transit.bus"]),
    BIKESHARE: ("Load-test Bike Share", "bikeshare", ["mobility.bikeshare"]),
    UTILITY: ("Load-test Power", "utility", ["energy.electricity_saving"]),
}


async def admin(server_url: str, statement: str) -> None:
    parsed = make_url(to_asyncpg_dsn(server_url)).set(database="postgres")
    conn = await asyncpg.connect(parsed.render_as_string(hide_password=False))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def database_url_for(server_url: str, name: str) -> str:
    return make_url(to_asyncpg_dsn(server_url)).set(database=name).render_as_string(False)


def create_database(server_url: str, name: str) -> str:
    asyncio.run(admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(admin(server_url, f'CREATE DATABASE "{name}"'))
    database_url = database_url_for(server_url, name)
    migrations.upgrade(database_url)
    return database_url


def drop_database(server_url: str, name: str) -> None:
    asyncio.run(admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def populate(
    state: State,
    secrets_env: dict[str, str],
    *,
    app_users: int,
    merchants: int,
) -> None:
    engine = create_engine(state.database_url, pool_size=2)
    partner_key = secrets_env["CARBON_POINTS_PARTNER_SECRET_KEY"]
    now = datetime.now(UTC)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            await sync_library(session)
            for code, (name, kind, action_types) in PARTNER_SPECS.items():
                partner = await create_partner(
                    session,
                    code=code,
                    name=name,
                    kind=kind,
                    action_types=action_types,
                    rate_limit_per_second=100_000,
                )
                issued = await issue_credential(session, partner_key, partner.id)
                state.partners[code] = PartnerKey(
                    code, str(issued.partner_id), issued.key_id, issued.secret
                )
            for m in range(merchants):
                merchant = await create_merchant(
                    session, code=f"loadtest-shop-{m}", name=f"绿色小店 {m}", region="CN-JX"
                )
                terminal = await add_terminal(session, merchant.id, "till-1", "Till 1")
                offer = await create_offer(
                    session,
                    merchant.id,
                    title="A cup of tea",
                    points_price=20,
                    face_value_fen=200,
                    valid_from=now - timedelta(days=1),
                    valid_to=now + timedelta(days=30),
                )
                key = await issue_key(session, merchant.id, ["redeem"], terminal.id)
                state.merchants.append(
                    MerchantKey(merchant.code, str(merchant.id), key.token, str(offer.id), 20)
                )
    finally:
        await engine.dispose()

    pepper = secrets_env["CARBON_POINTS_IDENTIFIER_PEPPER"]
    password_hash = await PASSWORDS.hash(state.password)
    participant_ids = [uuid.uuid4() for _ in range(state.participants)]
    conn = await asyncpg.connect(to_asyncpg_dsn(state.database_url))
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "participants",
                records=[(pid, "citizen", "Load-test rider", "CN-JX") for pid in participant_ids],
                columns=["id", "kind", "display_name", "region"],
            )
            links = []
            for code, key in state.partners.items():
                partner_id = uuid.UUID(key.partner_id)
                links += [
                    (pid, partner_id, subject_hash(pepper, partner_id, card_ref(code, i)))
                    for i, pid in enumerate(participant_ids)
                ]
            await conn.copy_records_to_table(
                "identity_links",
                records=links,
                columns=["participant_id", "partner_id", "subject_hash"],
            )
            users = [(uuid.uuid4(), i) for i in range(min(app_users, state.participants))]
            await conn.copy_records_to_table(
                "users",
                records=[
                    (uid, participant_ids[i], login_hash(pepper, login_name(i)), password_hash)
                    for uid, i in users
                ],
                columns=["id", "participant_id", "login_hash", "password_hash"],
            )
            state.app_users = [AppUser(i, str(uid), str(participant_ids[i])) for uid, i in users]
        # Only the tables filled here: ANALYZE on the still empty event and ledger tables would
        # record "0 rows" and leave the service with sequential-scan plans as they grow (see
        # docs/performance.md, crediting section).
        await conn.execute("ANALYZE participants, identity_links, users")
    finally:
        await conn.close()


def new_secrets() -> dict[str, str]:
    return {
        "CARBON_POINTS_PARTNER_SECRET_KEY": secrets.token_urlsafe(48),
        "CARBON_POINTS_IDENTIFIER_PEPPER": secrets.token_urlsafe(48),
        "CARBON_POINTS_JWT_SIGNING_KEY": secrets.token_urlsafe(48),
    }
