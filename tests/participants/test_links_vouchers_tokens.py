"""Identity links by partner token, claim vouchers, redemption tokens."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from integrations import make_link_token, make_voucher
from service.crediting.vouchers import VoucherClaimedError, claim_voucher
from service.participants import identity_links as links
from service.redemption.service import (
    RedemptionTokenInvalidError,
    consume_token,
    create_token,
)
from tests.crediting.conftest import TRIP_AT, Live, metro


async def _verified(live: Live, token: str, kind: str) -> tuple[object, dict[str, object]]:
    state = live.app.state
    return await links.verified_claims(
        state.partner_credentials,
        state.sessionmaker,
        state.secrets.partner_secret_key,
        token,
        kind,
        datetime.now(UTC),
    )


async def test_a_link_token_links_once_and_releases_pending_credits(live: Live) -> None:
    metro_co = await live.partner("metro-co")
    async with live.client(metro_co) as client:
        assert (await client.submit_event(metro("trip-1", card="card-77"))).status == "pending"
    rider = await live.participant()
    token = make_link_token(
        key_id=metro_co.key_id, secret=metro_co.secret, subject_ref="card-77", token_id="lt-1"
    )
    partner, claims = await _verified(live, token, "link")
    async with live.sessionmaker() as session, session.begin():
        registry = await live.app.state.registry_cache.get(session)
        released = await links.link_with_token(
            session,
            registry,
            live.settings(),
            partner,
            claims,
            rider,
            datetime.now(UTC),  # type: ignore[arg-type]
        )
    assert [o.status for o in released] == ["credited"]
    assert await live.balance(rider) == 576
    with pytest.raises(links.PartnerTokenUsedError):
        async with live.sessionmaker() as session, session.begin():
            await links.link_with_token(
                session,
                registry,
                live.settings(),
                partner,
                claims,
                rider,
                datetime.now(UTC),  # type: ignore[arg-type]
            )
    async with live.sessionmaker() as session, session.begin():
        (view,) = await links.list_links(session, rider)
        await links.unlink(session, rider, view.id, datetime.now(UTC))
    async with live.client(metro_co) as client:
        after = await client.submit_event(
            metro("trip-2", card="card-77", occurred_at=TRIP_AT + timedelta(hours=1))
        )
    assert after.status == "pending"  # unlinked: no more crediting to this participant
    assert await live.balance(rider) == 576


@pytest.mark.parametrize("tamper", ["signature", "type", "expired"])
async def test_bad_partner_tokens_are_refused(live: Live, tamper: str) -> None:
    metro_co = await live.partner("metro-co")
    if tamper == "signature":
        token = make_link_token(
            key_id=metro_co.key_id,
            secret="cpsk_another_partners_secret_of_the_usual_length",
            subject_ref="c",
            token_id="x",
        )
    elif tamper == "type":
        token = make_voucher(key_id=metro_co.key_id, secret=metro_co.secret, event=metro("v1"))
    else:
        token = make_link_token(
            key_id=metro_co.key_id,
            secret=metro_co.secret,
            subject_ref="c",
            token_id="x",
            ttl_seconds=-1,
        )
    with pytest.raises(links.PartnerTokenInvalidError) as refused:
        await _verified(live, token, "link")
    assert (
        str(refused.value.detail)
        == {
            "signature": "the token's signature does not match its partner's key",
            "type": "this is not a link token",
            "expired": "the token has expired: ask the partner's app for a new one",
        }[tamper]
    )


async def test_a_voucher_is_accepted_once_even_concurrently(live: Live) -> None:
    shop = await live.partner("green-shop", ("transit.metro",))
    rider, other = await live.participant(), await live.participant()
    voucher = make_voucher(key_id=shop.key_id, secret=shop.secret, event=metro("receipt-9"))
    partner, claims = await _verified(live, voucher, "voucher")

    async def claim(who: object) -> object:
        async with live.sessionmaker() as session, session.begin():
            registry = await live.app.state.registry_cache.get(session)
            return await claim_voucher(
                session,
                registry,
                live.settings(),
                partner,
                claims,
                who,
                datetime.now(UTC),  # type: ignore[arg-type]
            )

    outcomes = await asyncio.gather(*(claim(rider) for _ in range(10)))
    assert {o.credit_id for o in outcomes} == {outcomes[0].credit_id}  # type: ignore[attr-defined]
    assert await live.balance(rider) == 576
    with pytest.raises(VoucherClaimedError):
        await claim(other)
    assert await live.balance(other) == 0


async def test_redemption_tokens_are_single_use_and_short_lived(live: Live) -> None:
    rider = await live.participant()
    now = datetime.now(UTC)
    async with live.sessionmaker() as session, session.begin():
        issued = await create_token(session, rider, now=now)
        stale = await create_token(session, rider, now=now - timedelta(minutes=5))

    async def consume(token: str) -> object:
        try:
            async with live.sessionmaker() as session, session.begin():
                return await consume_token(session, token, now=now)
        except RedemptionTokenInvalidError as exc:
            return exc

    results = await asyncio.gather(*(consume(issued.token) for _ in range(5)))
    assert results.count(rider) == 1
    assert all(isinstance(r, RedemptionTokenInvalidError) for r in results if r != rider)
    assert isinstance(await consume(stale.token), RedemptionTokenInvalidError)
    assert isinstance(await consume("rt_forged"), RedemptionTokenInvalidError)
