"""Export and erasure cover every table that holds rows about a person.

The tables are found in the models' metadata, not listed here: any column that names a
participant or a user (`participant_id`, `user_id`, a foreign key to `participants.id` or
`users.id`, or an `owner_id` whose table may be owned by a participant). A new such table
fails these tests until a domain declares it in its `PRIVACY_TABLES` (exported to which
section, and whether erasure removes it) and its export function returns its rows.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Column, Table, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from integrations import make_link_token
from service.ledger.verify import verify_ledger
from service.merchants import service as merchants
from service.merchants.auth import issue_key
from service.models import Base
from service.participants import privacy
from tests.accounts.helpers import Registered, bearer, register
from tests.crediting.conftest import Live, metro

PARTICIPANT, USER = "participant", "user"


def _person_key(table: Table, column: Column[object]) -> str | None:
    """Whose id the column holds (a participant's or a user's), or None."""
    targets = {fk.target_fullname for fk in column.foreign_keys}
    if column.name == "participant_id" or "participants.id" in targets:
        return PARTICIPANT
    if column.name == "user_id" or "users.id" in targets:
        return USER
    if column.name == "owner_id" and any(
        "'participant'" in str(getattr(c, "sqltext", "")) for c in table.constraints
    ):
        return PARTICIPANT
    return None


def person_keyed_tables() -> dict[str, list[tuple[Column[object], str]]]:
    """Every table with a column naming a person: its key columns, and whose id each holds."""
    found: dict[str, list[tuple[Column[object], str]]] = {}
    for table in Base.metadata.sorted_tables:
        if table.name == "participants":
            found[table.name] = [(table.c.id, PARTICIPANT)]
        elif table.name == "users":
            found[table.name] = [(table.c.id, USER)]
        for column in table.columns:
            whose = _person_key(table, column)
            if whose is not None:
                found.setdefault(table.name, []).append((column, whose))
    return found


def test_the_metadata_finds_the_tables_the_export_had_when_this_test_was_written() -> None:
    assert set(person_keyed_tables()) >= {
        "participants",
        "users",
        "organisations",
        "organisation_members",
        "refresh_tokens",
        "identity_links",
        "partner_token_uses",
        "partner_events",
        "credits",
        "cap_usage",
        "ledger_accounts",
        "redemptions",
        "redemption_tokens",
    }
    assert "webhook_endpoints" not in person_keyed_tables()  # owned by merchants and partners


def test_every_person_keyed_table_is_exported_by_a_domain() -> None:
    exported = {table for tables in privacy.DOMAINS.values() for table in tables.exported}
    missing = set(person_keyed_tables()) - exported
    assert not missing, f"no domain exports {sorted(missing)}: declare them in PRIVACY_TABLES"


def test_each_table_is_one_domains_and_erased_only_where_exported() -> None:
    owners: dict[str, str] = {}
    for domain, tables in privacy.DOMAINS.items():
        assert tables.erased <= set(tables.exported), domain
        for table in tables.exported:
            assert table not in owners, (table, owners.get(table), domain)
            owners[table] = domain


def test_declared_sections_are_the_documents_and_in_their_domains_export() -> None:
    sections = {section: domain for section, domain in privacy.SECTIONS}
    for domain, tables in privacy.DOMAINS.items():
        for table, section in tables.exported.items():
            assert sections.get(section) == domain, (table, section, domain)
    assert {f.name for f in fields(privacy.PrivacyExport)} == set(privacy.DOMAINS)
    assert {domain for _, domain in privacy.SECTIONS} == set(privacy.DOMAINS)


@pytest.fixture
async def http(live: Live) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=live.transport, base_url="http://test") as client:
        yield client


async def _a_busy_citizen(live: Live, http: httpx.AsyncClient) -> Registered:
    """A citizen with a row in as many person-keyed tables as the app can make: a linked
    card with a credited trip, an organisation, a rotated session, a redemption at a till and
    an unused redemption code."""
    partner = await live.partner(f"metro-{uuid.uuid4().hex[:8]}")
    user = await register(http)
    auth = bearer(user.access_token)
    token = make_link_token(
        key_id=partner.key_id, secret=partner.secret, subject_ref="card-c", token_id="lt-card-c"
    )
    linked = await http.post("/v1/app/identity-links", json={"token": token}, headers=auth)
    assert linked.status_code == 201, linked.text
    async with live.client(partner) as client:
        assert (await client.submit_event(metro("trip-c", card="card-c"))).status == "credited"
    organisation = await http.post("/v1/app/organisations", json={"name": "Shop"}, headers=auth)
    assert organisation.status_code == 201, organisation.text
    refreshed = await http.post("/v1/app/token/refresh", json={"refresh_token": user.refresh_token})
    assert refreshed.status_code == 200, refreshed.text
    now = datetime.now(UTC)
    async with live.sessionmaker() as session, session.begin():
        merchant = await merchants.create_merchant(
            session, code=f"cafe-{uuid.uuid4().hex[:6]}", name="Green Cafe"
        )
        key = await issue_key(session, merchant.id, ["redeem"])
        offer = await merchants.create_offer(
            session,
            merchant.id,
            title="Oat latte",
            points_price=100,
            face_value_fen=1500,
            valid_from=now - timedelta(days=1),
            valid_to=now + timedelta(days=30),
        )
    code = await http.post("/v1/app/redemption-tokens", headers=auth)
    redeemed = await http.post(
        "/v1/merchant/redemptions",
        json={"redemption_token": code.json()["token"], "offer_id": str(offer.id)},
        headers={"authorization": f"Bearer {key.token}", "idempotency-key": uuid.uuid4().hex},
    )
    assert redeemed.status_code == 201, redeemed.text
    await http.post("/v1/app/redemption-tokens", headers=auth)
    return user


async def _rows_about(session: AsyncSession, user: Registered) -> dict[str, int]:
    """Per person-keyed table, how many of its rows name this person."""
    ids = {PARTICIPANT: user.participant_id, USER: user.user_id}
    counts: dict[str, int] = {}
    for name, keys in person_keyed_tables().items():
        table = Base.metadata.tables[name]
        counts[name] = int(
            await session.scalar(
                select(func.count())
                .select_from(table)
                .where(or_(*(column == ids[whose] for column, whose in keys)))
            )
            or 0
        )
    return counts


async def test_export_holds_every_row_and_erasure_removes_what_it_declares(
    live: Live, http: httpx.AsyncClient
) -> None:
    user = await _a_busy_citizen(live, http)
    auth = bearer(user.access_token)
    document = (await http.get("/v1/app/me/export", headers=auth)).json()
    async with live.sessionmaker() as session:
        before = await _rows_about(session, user)
    assert before["redemptions"] and before["identity_links"] and before["organisations"]
    sections = {
        table: section
        for tables in privacy.DOMAINS.values()
        for table, section in tables.exported.items()
    }
    for table, count in before.items():
        if count:
            assert document[sections[table]], (table, sections[table])

    assert (await http.delete("/v1/app/me", headers=auth)).status_code == 204
    async with live.sessionmaker() as session:
        after = await _rows_about(session, user)
        erased_at = [
            await session.scalar(
                select(Base.metadata.tables[name].c.erased_at).where(
                    Base.metadata.tables[name].c.id == key
                )
            )
            for name, key in (("participants", user.participant_id), ("users", user.user_id))
        ]
    assert all(erased_at)
    for domain, tables in privacy.DOMAINS.items():
        for table in tables.erased - {"participants", "users"}:  # those two are overwritten
            assert after[table] == 0, (domain, table)
        for table in set(tables.exported) - tables.erased:
            assert after.get(table, 0) == before.get(table, 0), (domain, table)  # kept
    assert (await verify_ledger(live.sessionmaker.kw["bind"])).ok
