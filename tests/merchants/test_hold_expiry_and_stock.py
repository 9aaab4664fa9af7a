"""A hold that times out tells its merchant (`redemption.expired`), once; a refund does not
give an offer's stock back (docs/architecture.md, "Redemption")."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from service.models import Merchant
from service.redemption.jobs import expire_overdue_holds
from service.webhooks.delivery import deliver_due
from service.webhooks.service import create_endpoint
from tests.crediting.conftest import Live
from tests.merchants.test_redemption import _code, _setup, http

__all__ = ["http"]


async def test_a_hold_past_its_timeout_sends_one_redemption_expired(
    live: Live, http: httpx.AsyncClient
) -> None:
    till, rider, _ = await _setup(live, http, points=100)
    key = live.app.state.secrets.partner_secret_key
    async with live.sessionmaker() as session, session.begin():
        merchant = (await session.scalars(select(Merchant))).one()
        endpoint = await create_endpoint(
            session,
            key,
            owner_type="merchant",
            owner_id=merchant.id,
            url="https://till.example/hooks",
            event_types=["redemption.expired"],
        )
    authorised = await till.call(
        "POST",
        "/v1/merchant/redemptions",
        {"redemption_token": await _code(live, rider), "points": 60},
    )
    assert authorised.status_code == 201, authorised.text
    rid = authorised.json()["id"]
    timeout = live.app.state.settings.hold_timeout_seconds

    # Not yet due: nothing expires, nothing is queued.
    assert await expire_overdue_holds(live.sessionmaker, now=datetime.now(UTC)) == 0
    later = datetime.now(UTC) + timedelta(seconds=timeout + 60)
    assert await expire_overdue_holds(live.sessionmaker, now=later) == 1
    assert await expire_overdue_holds(live.sessionmaker, now=later) == 0  # runs again: no-op

    received: list[dict[str, Any]] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        Webhook(endpoint.secret).verify(request.content, dict(request.headers))
        received.append(json.loads(request.content))
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as client:
        await deliver_due(live.sessionmaker, client, now=later, partner_key=key)
        await deliver_due(live.sessionmaker, client, now=later, partner_key=key)
    assert [r["type"] for r in received] == ["redemption.expired"]
    (message,) = received
    assert message["data"]["id"] == rid
    assert message["data"]["status"] == "expired"
    assert message["data"]["points_captured"] == 0
    view = await till.call("GET", f"/v1/merchant/redemptions/{rid}")
    assert view.json()["status"] == "expired"
    assert await live.balance(rider) == 100  # the points came back


async def test_a_refund_does_not_give_offer_stock_back(live: Live, http: httpx.AsyncClient) -> None:
    till, rider, offer = await _setup(live, http, points=300, stock=1)
    body = {"redemption_token": await _code(live, rider), "offer_id": str(offer)}
    sold = await till.call("POST", "/v1/merchant/redemptions", body)
    assert sold.status_code == 201, sold.text
    rid = sold.json()["id"]
    await till.call("POST", f"/v1/merchant/redemptions/{rid}/capture", {})
    refunded = await till.call("POST", f"/v1/merchant/redemptions/{rid}/refunds", {"points": 100})
    assert refunded.json()["status"] == "refunded"

    # The item was handed over: the points come back, the stock does not.
    catalogue = (await http.get("/v1/app/offers")).json()["items"]
    assert [o["stock_left"] for o in catalogue if o["id"] == str(offer)] == [0]
    again = await till.call(
        "POST",
        "/v1/merchant/redemptions",
        {"redemption_token": await _code(live, rider), "offer_id": str(offer)},
    )
    assert again.status_code == 409
    assert again.json()["type"].endswith("/offer-unavailable")
