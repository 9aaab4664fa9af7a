"""A reversal in the app's history names the credit it takes back (`reverses_credit_id`),
read in the history page's one statement."""

from __future__ import annotations

import uuid

import httpx
import pytest

from integrations import make_link_token
from tests.accounts.helpers import bearer, register
from tests.crediting.conftest import Live, metro
from tests.participants.test_app_api import http
from tests.round_trips import round_trips

__all__ = ["http"]


async def test_a_reversal_names_the_credit_it_takes_back(
    live: Live, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    partner = await live.partner(f"metro-{uuid.uuid4().hex[:8]}")
    user = await register(http)
    token = make_link_token(
        key_id=partner.key_id, secret=partner.secret, subject_ref="card-r", token_id="lt-card-r"
    )
    auth = bearer(user.access_token)
    linked = await http.post("/v1/app/identity-links", json={"token": token}, headers=auth)
    assert linked.status_code == 201, linked.text
    async with live.client(partner) as client:
        kept = await client.submit_event(metro("trip-kept", card="card-r"))
        taken = await client.submit_event(metro("trip-taken", card="card-r"))
        await client.retract("trip-taken", "ticket_refunded")

    with round_trips(monkeypatch) as queries:
        page = await http.get("/v1/app/history?limit=10", headers=auth)
    assert len(queries) == 2, queries  # the token's user, the page: still one statement
    items = page.json()["items"]
    assert [(i["kind"], i["points"]) for i in items] == [
        ("reversal", -576),
        ("credit", 576),
        ("credit", 576),
    ]
    reversal, credit_taken, credit_kept = items
    assert reversal["reverses_credit_id"] == str(taken.credit_id)
    assert credit_taken["credit_id"] == str(taken.credit_id)
    assert reversal["reason"] == "ticket_refunded"
    # Every other kind says null: the field is new and optional.
    assert credit_taken["reverses_credit_id"] is None
    assert credit_kept["credit_id"] == str(kept.credit_id)
    assert credit_kept["reverses_credit_id"] is None
