"""The app API over HTTP: the citizen's flow, the authorisation matrix, export and erasure."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, text

from integrations import make_link_token, make_voucher
from service.ledger.verify import verify_ledger
from service.models import Base
from tests.accounts.helpers import bearer, register
from tests.crediting.conftest import TRIP_AT, Live, metro


@pytest.fixture
async def http(live: Live) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=live.transport, base_url="http://test") as client:
        yield client


async def _citizen_with_a_trip(
    live: Live, http: httpx.AsyncClient, card: str
) -> tuple[object, str]:
    partner = await live.partner(f"metro-{uuid.uuid4().hex[:8]}")
    user = await register(http)
    token = make_link_token(
        key_id=partner.key_id, secret=partner.secret, subject_ref=card, token_id=f"lt-{card}"
    )
    linked = await http.post(
        "/v1/app/identity-links", json={"token": token}, headers=bearer(user.access_token)
    )
    assert linked.status_code == 201, linked.text
    async with live.client(partner) as client:
        outcome = await client.submit_event(metro(f"trip-{card}", card=card))
    assert outcome.status == "credited"
    return user, str(outcome.credit_id)


async def test_the_citizen_flow(live: Live, http: httpx.AsyncClient) -> None:
    user, credit_id = await _citizen_with_a_trip(live, http, "card-1")
    auth = bearer(user.access_token)
    balance = (await http.get("/v1/app/balance", headers=auth)).json()
    assert (balance["available"], balance["grams_co2e"]) == (576, 576)
    history = (await http.get("/v1/app/history?limit=10", headers=auth)).json()
    assert [(i["kind"], i["points"]) for i in history["items"]] == [("credit", 576)]
    explained = (await http.get(f"/v1/app/credits/{credit_id}/explanation", headers=auth)).json()
    assert "46.7" in explained["text"]
    reductions = (await http.get("/v1/app/reductions", headers=auth)).json()
    assert reductions["items"][0]["grams"] == 576
    assert reductions["next_cursor"] is None
    links = (await http.get("/v1/app/identity-links", headers=auth)).json()["items"]
    assert [link["partner_code"][:6] for link in links] == ["metro-"]
    assert "card-1" not in str(links)
    code = await http.post("/v1/app/redemption-tokens", headers=auth)
    assert code.status_code == 201
    assert code.json()["token"].startswith("rt_")
    shop = await live.partner("shop", ("transit.metro",))
    voucher = make_voucher(
        key_id=shop.key_id,
        secret=shop.secret,
        event=metro("receipt-1", occurred_at=TRIP_AT + timedelta(hours=2)),
    )
    claimed = await http.post("/v1/app/vouchers", json={"token": voucher}, headers=auth)
    assert claimed.json()["status"] == "credited"
    board = await http.get("/v1/app/leaderboards/regions/CN-JX?period=month", headers=auth)
    assert board.status_code == 200
    for entry in board.json()["entries"]:
        assert "participant_id" not in entry  # other people's ids never reach the app


async def test_no_endpoint_lets_one_user_see_or_change_anothers_data(
    live: Live, http: httpx.AsyncClient
) -> None:
    alice, alice_credit = await _citizen_with_a_trip(live, http, "card-a")
    bob, _ = await _citizen_with_a_trip(live, http, "card-b")
    alice_links = (
        await http.get("/v1/app/identity-links", headers=bearer(alice.access_token))
    ).json()["items"]
    as_bob = bearer(bob.access_token)

    # Bob's own views show Bob's data only.
    assert (await http.get("/v1/app/balance", headers=as_bob)).json()["available"] == 576
    bob_history = (await http.get("/v1/app/history", headers=as_bob)).json()["items"]
    assert alice_credit not in {i["credit_id"] for i in bob_history}
    # Alice's things, addressed by id, are invisible or untouchable to Bob.
    explained = await http.get(f"/v1/app/credits/{alice_credit}/explanation", headers=as_bob)
    assert explained.status_code == 404
    unlinked = await http.delete(f"/v1/app/identity-links/{alice_links[0]['id']}", headers=as_bob)
    assert unlinked.status_code == 404
    organisation = await http.post(
        "/v1/app/organisations",
        json={"name": "Alice's tea shop"},
        headers=bearer(alice.access_token),
    )
    org_id = organisation.json()["organisation_id"]
    for method, path in [
        ("GET", f"/v1/app/organisations/{org_id}"),
        ("GET", f"/v1/app/leaderboards/organisations/{org_id}"),
    ]:
        response = await http.request(method, path, headers=as_bob)
        assert response.status_code == 403, (path, response.text)
    # Alice's data is unchanged by all of Bob's attempts.
    assert (await http.get("/v1/app/balance", headers=bearer(alice.access_token))).json()[
        "available"
    ] == 576
    assert (
        len(
            (await http.get("/v1/app/identity-links", headers=bearer(alice.access_token))).json()[
                "items"
            ]
        )
        == 1
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/app/balance"),
        ("GET", "/v1/app/history"),
        ("GET", "/v1/app/reductions"),
        ("GET", "/v1/app/credits/1/explanation"),
        ("GET", "/v1/app/leaderboards/regions/CN-JX"),
        ("GET", f"/v1/app/leaderboards/organisations/{uuid.uuid4()}"),
        ("GET", "/v1/app/identity-links"),
        ("POST", "/v1/app/identity-links"),
        ("DELETE", "/v1/app/identity-links/1"),
        ("POST", "/v1/app/vouchers"),
        ("POST", "/v1/app/redemption-tokens"),
        ("GET", "/v1/app/me/export"),
        ("DELETE", "/v1/app/me"),
    ],
)
async def test_every_app_endpoint_needs_a_token(
    http: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await http.request(method, path, json={"token": "x" * 20})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


async def test_export_has_everything_and_erasure_leaves_nothing_personal(
    live: Live, http: httpx.AsyncClient
) -> None:
    user, credit_id = await _citizen_with_a_trip(live, http, "card-x")
    auth = bearer(user.access_token)
    await http.post("/v1/app/redemption-tokens", headers=auth)
    exported = (await http.get("/v1/app/me/export", headers=auth)).json()
    participant = str(user.participant_id)
    # Every table with a row about this person is in the export.
    async with live.sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            for column in ("participant_id", "owner_id", "user_id"):
                if column in table.c:
                    key = user.user_id if column == "user_id" else user.participant_id
                    count = await session.scalar(
                        select(func.count()).select_from(table).where(table.c[column] == key)
                    )
                    if count:
                        assert _section_for(table.name) in exported, table.name
    assert exported["participant"]["id"] == participant
    assert [c["event_id"] for c in exported["credits"]] == [int(credit_id)]
    assert len(exported["identity_links"]) == 1
    assert len(exported["redemption_codes"]) == 1
    assert user.login not in str(exported)

    erased = await http.delete("/v1/app/me", headers=auth)
    assert erased.status_code == 204
    assert (await http.get("/v1/app/balance", headers=auth)).status_code == 401
    async with live.sessionmaker() as session:
        name = await session.scalar(
            text("SELECT display_name FROM participants WHERE id = :p"), {"p": user.participant_id}
        )
        login = await session.scalar(
            text("SELECT login_hash FROM users WHERE id = :u"), {"u": user.user_id}
        )
        links = await session.scalar(
            text("SELECT count(*) FROM identity_links WHERE participant_id = :p"),
            {"p": user.participant_id},
        )
    assert (name, login, links) == ("erased participant", None, 0)
    assert (await verify_ledger(live.sessionmaker.kw["bind"])).ok
    again = await http.post("/v1/app/login", json={"login": user.login, "password": user.password})
    assert again.status_code == 401


def _section_for(table: str) -> str:
    return {
        "participants": "participant",
        "users": "user",
        "organisation_members": "organisations",
        "organisations": "organisations",
        "refresh_tokens": "sessions",
        "identity_links": "identity_links",
        "partner_events": "events",
        "credits": "credits",
        "ledger_accounts": "accounts",
        "redemption_tokens": "redemption_codes",
        "cap_usage": "cap_usage",
        "partner_token_uses": "link_tokens_used",
        "redemptions": "redemptions",
    }[table]


async def test_times_the_citizen_reads_are_in_the_programmes_timezone(
    live: Live, http: httpx.AsyncClient
) -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(live.app.state.settings.program_timezone)
    user, _credit = await _citizen_with_a_trip(live, http, "card-tz")
    auth = bearer(user.access_token)

    def local(text: str) -> datetime:
        moment = datetime.fromisoformat(text)
        assert moment.utcoffset() == moment.astimezone(zone).utcoffset(), text
        return moment

    balance = (await http.get("/v1/app/balance", headers=auth)).json()
    (expiring,) = balance["expiring"]
    expires = local(expiring["expires_at"])
    assert expires > datetime.now(UTC) and expiring["points"] == 576
    history = (await http.get("/v1/app/history", headers=auth)).json()["items"]
    assert [local(item["at"]) <= datetime.now(UTC) for item in history] == [True]
    code = (await http.post("/v1/app/redemption-tokens", headers=auth)).json()
    assert local(code["expires_at"]) > datetime.now(UTC)
