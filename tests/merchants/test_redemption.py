"""A till's flow: authorise, capture, void, refund, exactly once, never over the balance."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import structlog

from service.ledger.verify import verify_ledger
from service.merchants import service as merchants
from service.merchants.auth import issue_key
from service.redemption.service import create_token
from tests.crediting.conftest import Live, metro
from tests.round_trips import round_trips

AUTHORISE_ROUND_TRIPS = 9  # was 31 (19 statements + 12 BEGIN/COMMIT/ROLLBACK), then 14
CAPTURE_ROUND_TRIPS = 8  # was 32, then 12


class Till:
    def __init__(self, live: Live, http: httpx.AsyncClient, token: str) -> None:
        self.live, self.http, self.token = live, http, token

    async def call(
        self, method: str, path: str, body: Any = None, key: str | None = None
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.token}"}
        if method == "POST":
            headers["idempotency-key"] = key or uuid.uuid4().hex
        return await self.http.request(method, path, json=body, headers=headers)


@pytest.fixture
async def http(live: Live) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=live.transport, base_url="http://test") as client:
        yield client


async def _setup(
    live: Live, http: httpx.AsyncClient, points: int = 1000, **offer: Any
) -> tuple[Till, uuid.UUID, uuid.UUID]:
    """A merchant with a key and an offer, and a customer holding `points`."""
    partner = await live.partner(f"metro-{uuid.uuid4().hex[:6]}")
    rider = await live.participant()
    await live.link(rider, partner, "card-1")
    async with live.client(partner) as client:
        trips = []
        left = points
        i = 0
        while left > 0:
            # distance for exactly `take` grams at 46.7 g/km: take / 46.7 km, rounded up to m
            take = min(left, 500)
            metres = -(-take * 10000 // 467)
            trips.append(metro(f"t{i}", card="card-1", quantities={"distance_m": metres}))
            left -= take
            i += 1
        await client.submit_events(trips)
    now = datetime.now(UTC)
    async with live.sessionmaker() as session, session.begin():
        merchant = await merchants.create_merchant(
            session, code=f"cafe-{uuid.uuid4().hex[:6]}", name="Green Cafe"
        )
        issued = await issue_key(session, merchant.id, ["redeem", "refund", "settlement"])
        offer_row = await merchants.create_offer(
            session,
            merchant.id,
            title="Oat latte",
            points_price=offer.pop("points_price", 100),
            face_value_fen=1500,
            valid_from=now - timedelta(days=1),
            valid_to=now + timedelta(days=30),
            **offer,
        )
    return Till(live, http, issued.token), rider, offer_row.id


async def _code(live: Live, rider: uuid.UUID) -> str:
    async with live.sessionmaker() as session, session.begin():
        return (await create_token(session, rider, now=datetime.now(UTC))).token


async def test_a_full_redemption_at_a_till(live: Live, http: httpx.AsyncClient) -> None:
    till, rider, offer = await _setup(live, http)
    available = await live.balance(rider)
    authorised = await till.call(
        "POST",
        "/v1/merchant/redemptions",
        {"redemption_token": await _code(live, rider), "offer_id": str(offer)},
    )
    assert authorised.status_code == 201, authorised.text
    rid = authorised.json()["id"]
    assert authorised.json()["status"] == "authorised"
    assert await live.balance(rider) == available - 100
    captured = await till.call("POST", f"/v1/merchant/redemptions/{rid}/capture", {})
    assert (captured.json()["status"], captured.json()["points_captured"]) == ("captured", 100)
    refunded = await till.call("POST", f"/v1/merchant/redemptions/{rid}/refunds", {"points": 40})
    assert (refunded.json()["status"], refunded.json()["points_refunded"]) == (
        "partially_refunded",
        40,
    )
    over = await till.call("POST", f"/v1/merchant/redemptions/{rid}/refunds", {"points": 61})
    assert over.status_code == 409
    assert await live.balance(rider) == available - 60
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    end = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    statement = await till.call("GET", "/v1/merchant/settlement", None)
    assert statement.status_code == 422
    statement = await till.http.get(
        "/v1/merchant/settlement",
        params={"from": start, "to": end},
        headers={"authorization": f"Bearer {till.token}"},
    )
    body = statement.json()
    assert (body["points_redeemed"], body["points_refunded"], body["net_points"]) == (100, 40, 60)
    assert body["value_fen"] == 60
    csv = await till.http.get(
        "/v1/merchant/settlement",
        params={"from": start, "to": end, "format": "csv"},
        headers={"authorization": f"Bearer {till.token}"},
    )
    assert csv.text.strip().splitlines()[-1] == "total,,,60,60"
    # The statement reconciles with the ledger: the merchant's settlement accounts (its
    # shards) hold it.
    async with live.sessionmaker() as session:
        from sqlalchemy import text

        held = await session.scalar(
            text(
                "SELECT sum(posted) FROM ledger_accounts"
                " WHERE code LIKE 'merchant:%:settlement:POINTS:%'"
            )
        )
    assert held == body["net_points"]
    assert (await verify_ledger(live.sessionmaker.kw["bind"])).ok


async def test_concurrent_authorisations_never_exceed_the_balance(
    live: Live, http: httpx.AsyncClient
) -> None:
    till, rider, _offer = await _setup(live, http, points=1000)
    codes = [await _code(live, rider) for _ in range(30)]
    responses = await asyncio.gather(
        *(
            till.call("POST", "/v1/merchant/redemptions", {"redemption_token": c, "points": 100})
            for c in codes
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 10
    assert all(
        r.json()["type"].endswith("/insufficient-points") for r in responses if r.status_code == 409
    )
    assert await live.balance(rider) == 0


async def test_capture_and_void_resolve_once(live: Live, http: httpx.AsyncClient) -> None:
    till, rider, _offer = await _setup(live, http)
    rid = (
        await till.call(
            "POST",
            "/v1/merchant/redemptions",
            {"redemption_token": await _code(live, rider), "points": 50},
        )
    ).json()["id"]
    first = await till.call("POST", f"/v1/merchant/redemptions/{rid}/capture", {})
    double = await till.call("POST", f"/v1/merchant/redemptions/{rid}/capture", {})
    void_after = await till.call("POST", f"/v1/merchant/redemptions/{rid}/void")
    assert first.status_code == 200
    assert double.status_code == 409
    assert double.json()["type"].endswith("/hold-already-resolved")
    assert void_after.status_code == 409
    rid2 = (
        await till.call(
            "POST",
            "/v1/merchant/redemptions",
            {"redemption_token": await _code(live, rider), "points": 50},
        )
    ).json()["id"]
    assert (await till.call("POST", f"/v1/merchant/redemptions/{rid2}/void")).json()[
        "status"
    ] == "voided"
    capture_after_void = await till.call("POST", f"/v1/merchant/redemptions/{rid2}/capture", {})
    assert capture_after_void.status_code == 409


async def test_redemption_tokens_are_single_use(live: Live, http: httpx.AsyncClient) -> None:
    till, rider, _ = await _setup(live, http)
    code = await _code(live, rider)
    first = await till.call(
        "POST", "/v1/merchant/redemptions", {"redemption_token": code, "points": 10}
    )
    reused = await till.call(
        "POST", "/v1/merchant/redemptions", {"redemption_token": code, "points": 10}
    )
    forged = await till.call(
        "POST", "/v1/merchant/redemptions", {"redemption_token": "rt_" + "x" * 30, "points": 10}
    )
    assert first.status_code == 201
    assert reused.status_code == 422
    assert reused.json()["type"].endswith("/redemption-token-invalid")
    assert forged.status_code == 422


async def test_idempotency_keys_replay_reject_and_block(
    live: Live, http: httpx.AsyncClient
) -> None:
    till, rider, _ = await _setup(live, http)
    code = await _code(live, rider)
    body = {"redemption_token": code, "points": 30}
    first = await till.call("POST", "/v1/merchant/redemptions", body, key="till-1-sale-7")
    replay = await till.call("POST", "/v1/merchant/redemptions", body, key="till-1-sale-7")
    other = await till.call(
        "POST", "/v1/merchant/redemptions", {**body, "points": 31}, key="till-1-sale-7"
    )
    missing = await till.http.post(
        "/v1/merchant/redemptions", json=body, headers={"authorization": f"Bearer {till.token}"}
    )
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")
    assert missing.status_code == 400
    assert await live.balance(rider) == 1000 - 30
    # Concurrent requests with one new key: one runs, the others replay or are told to wait.
    code2 = await _code(live, rider)
    burst = await asyncio.gather(
        *(
            till.call(
                "POST",
                "/v1/merchant/redemptions",
                {"redemption_token": code2, "points": 5},
                key="burst",
            )
            for _ in range(6)
        )
    )
    assert {r.status_code for r in burst} <= {201, 409}
    assert len({r.json()["id"] for r in burst if r.status_code == 201}) == 1
    assert await live.balance(rider) == 1000 - 35


async def test_a_client_error_is_stored_with_its_key_and_replayed_and_nothing_else_is(
    live: Live, http: httpx.AsyncClient
) -> None:
    till, rider, _ = await _setup(live, http, points=100)
    body = {"redemption_token": await _code(live, rider), "points": 500}
    first = await till.call("POST", "/v1/merchant/redemptions", body, key="too-much")
    replay = await till.call("POST", "/v1/merchant/redemptions", body, key="too-much")
    assert first.status_code == replay.status_code == 409
    assert first.json()["type"].endswith("/insufficient-points")
    # The stored problem, as first sent (each response has its own request id).
    assert {**replay.json(), "request_id": None} == {**first.json(), "request_id": None}
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.headers["content-type"].startswith("application/problem+json")
    assert await live.balance(rider) == 100
    async with live.sessionmaker() as session:
        from sqlalchemy import text

        holds = await session.scalar(text("SELECT count(*) FROM ledger_holds"))
        redemptions = await session.scalar(text("SELECT count(*) FROM redemptions"))
        keys = await session.scalar(
            text("SELECT count(*) FROM idempotency_keys WHERE state = 'done'")
        )
    assert (holds, redemptions, keys) == (0, 0, 1)


async def test_a_duplicate_waits_for_the_first_at_most_the_lock_wait_then_gets_409(
    live: Live, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import text

    from service.idempotency import repository as idempotency

    monkeypatch.setattr(idempotency, "LOCK_WAIT", "300ms")
    till, rider, _ = await _setup(live, http)
    body = {"redemption_token": await _code(live, rider), "points": 10}
    rest = till.token.removeprefix("cpmk_")
    key_id = rest[: rest.index("_", 3)]  # mk_<hex>; the secret after it may hold "_" too
    # The first request with this key, still running: its claim is inserted, not committed.
    async with live.sessionmaker() as first, first.begin():
        claimed = await first.execute(
            text(
                "INSERT INTO idempotency_keys (merchant_id, key, request_hash, state)"
                " SELECT merchant_id, 'slow-sale', '\\x00', 'in_progress'"
                " FROM merchant_api_keys WHERE key_id = :key_id RETURNING key"
            ),
            {"key_id": key_id},
        )
        assert claimed.scalar() == "slow-sale"
        started = asyncio.get_running_loop().time()
        duplicate = await till.call("POST", "/v1/merchant/redemptions", body, key="slow-sale")
        waited = asyncio.get_running_loop().time() - started
        assert duplicate.status_code == 409, duplicate.text
        assert duplicate.json()["type"].endswith("/request-in-progress")
        assert 0.25 < waited < 5
        await first.rollback()
    # Nothing was written for the duplicate; with the first gone, the key is free again.
    assert await live.balance(rider) == 1000
    retried = await till.call("POST", "/v1/merchant/redemptions", body, key="slow-sale")
    assert retried.status_code == 201


async def test_offers_respect_stock_and_per_user_limits(
    live: Live, http: httpx.AsyncClient
) -> None:
    till, rider, offer = await _setup(live, http, stock=2, per_user_limit=1)
    first = await till.call(
        "POST",
        "/v1/merchant/redemptions",
        {"redemption_token": await _code(live, rider), "offer_id": str(offer)},
    )
    again = await till.call(
        "POST",
        "/v1/merchant/redemptions",
        {"redemption_token": await _code(live, rider), "offer_id": str(offer)},
    )
    assert first.status_code == 201
    assert again.status_code == 409
    assert again.json()["type"].endswith("/offer-unavailable")
    await till.call("POST", f"/v1/merchant/redemptions/{first.json()['id']}/void")
    catalogue = (await http.get("/v1/app/offers")).json()["items"]
    assert [o["stock_left"] for o in catalogue if o["id"] == str(offer)] == [2]
    retry = await till.call(
        "POST",
        "/v1/merchant/redemptions",
        {"redemption_token": await _code(live, rider), "offer_id": str(offer)},
    )
    assert retry.status_code == 201


async def test_merchant_keys_are_checked(live: Live, http: httpx.AsyncClient) -> None:
    till, rider, _ = await _setup(live, http)
    bad = Till(live, http, till.token[:-2] + "xx")
    assert (
        await bad.call(
            "POST", "/v1/merchant/redemptions", {"redemption_token": "rt_" + "y" * 20, "points": 1}
        )
    ).status_code == 401
    async with live.sessionmaker() as session, session.begin():
        merchant = await merchants.create_merchant(session, code="refund-only", name="R")
        limited = await issue_key(session, merchant.id, ["refund"])
    narrow = Till(live, http, limited.token)
    response = await narrow.call(
        "POST",
        "/v1/merchant/redemptions",
        {"redemption_token": await _code(live, rider), "points": 1},
    )
    assert response.status_code == 403
    assert response.json()["type"].endswith("/scope-missing")


async def test_redemption_webhooks_are_sent_for_committed_work_only(
    live: Live, http: httpx.AsyncClient
) -> None:
    import json

    from standardwebhooks.webhooks import Webhook

    from service.models import Merchant
    from service.webhooks.delivery import deliver_due
    from service.webhooks.service import create_endpoint

    till, rider, _ = await _setup(live, http, points=100)
    key = live.app.state.secrets.partner_secret_key
    async with live.sessionmaker() as session, session.begin():
        from sqlalchemy import select

        merchant = (await session.scalars(select(Merchant))).one()
        endpoint = await create_endpoint(
            session,
            key,
            owner_type="merchant",
            owner_id=merchant.id,
            url="https://till.example/hooks",
            event_types=["redemption.authorised", "redemption.captured"],
        )
    ok = await till.call(
        "POST",
        "/v1/merchant/redemptions",
        {"redemption_token": await _code(live, rider), "points": 60},
    )
    refused = await till.call(
        "POST",
        "/v1/merchant/redemptions",
        {"redemption_token": await _code(live, rider), "points": 60},
    )
    assert (ok.status_code, refused.status_code) == (201, 409)
    await till.call("POST", f"/v1/merchant/redemptions/{ok.json()['id']}/capture", {})

    received: list[dict[str, Any]] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        Webhook(endpoint.secret).verify(request.content, dict(request.headers))
        received.append(json.loads(request.content))
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as client:
        await deliver_due(live.sessionmaker, client, now=datetime.now(UTC), partner_key=key)
    # Two committed events; the refused authorisation rolled back and sent nothing.
    assert sorted(r["type"] for r in received) == ["redemption.authorised", "redemption.captured"]
    assert {r["data"]["id"] for r in received} == {ok.json()["id"]}


async def test_a_terminal_key_reaches_only_its_terminals_redemptions(
    live: Live, http: httpx.AsyncClient
) -> None:
    from sqlalchemy import select

    from service.models import Merchant

    till, rider, _ = await _setup(live, http)
    async with live.sessionmaker() as session, session.begin():
        merchant = (await session.scalars(select(Merchant))).one()
        one = await merchants.add_terminal(session, merchant.id, "till-1", "Till 1")
        two = await merchants.add_terminal(session, merchant.id, "till-2", "Till 2")
        key_one = await issue_key(session, merchant.id, ["redeem", "refund"], one.id)
        key_two = await issue_key(session, merchant.id, ["redeem", "refund"], two.id)
    first, second = Till(live, http, key_one.token), Till(live, http, key_two.token)
    rid = (
        await first.call(
            "POST",
            "/v1/merchant/redemptions",
            {"redemption_token": await _code(live, rider), "points": 10},
        )
    ).json()["id"]
    assert (
        await second.call("POST", f"/v1/merchant/redemptions/{rid}/capture", {})
    ).status_code == 404
    assert (await second.call("GET", f"/v1/merchant/redemptions/{rid}")).status_code == 404
    assert (
        await first.call("POST", f"/v1/merchant/redemptions/{rid}/capture", {})
    ).status_code == 200
    # The merchant-wide key still sees every terminal's redemptions.
    assert (await till.call("GET", f"/v1/merchant/redemptions/{rid}")).json()[
        "status"
    ] == "captured"


async def test_authorise_and_capture_round_trips_are_counted(
    live: Live, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    till, rider, offer = await _setup(live, http)
    # Warm: the key cache, the webhook and methodology caches, prepared statements.
    warm = await till.call(
        "POST",
        "/v1/merchant/redemptions",
        {"redemption_token": await _code(live, rider), "offer_id": str(offer)},
    )
    assert warm.status_code == 201
    code = await _code(live, rider)
    with round_trips(monkeypatch) as authorise_queries:
        authorised = await till.call(
            "POST", "/v1/merchant/redemptions", {"redemption_token": code, "offer_id": str(offer)}
        )
    assert authorised.status_code == 201, authorised.text
    with round_trips(monkeypatch) as capture_queries:
        captured = await till.call(
            "POST", f"/v1/merchant/redemptions/{authorised.json()['id']}/capture", {}
        )
    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "captured"
    print("authorise:", len(authorise_queries), authorise_queries)
    print("capture:", len(capture_queries), capture_queries)
    assert len(authorise_queries) <= AUTHORISE_ROUND_TRIPS, authorise_queries
    assert len(capture_queries) <= CAPTURE_ROUND_TRIPS, capture_queries


async def test_the_request_log_line_names_the_calling_merchant_by_id(
    live: Live, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request's log line carries the request's bound context (`merge_contextvars`):
    what is bound when the middleware logs and clears it is what the line names."""
    till, rider, offer = await _setup(live, http)
    seen: list[dict[str, Any]] = []
    clear = structlog.contextvars.clear_contextvars

    def snapshot_then_clear() -> None:
        seen.append(dict(structlog.contextvars.get_contextvars()))
        clear()

    monkeypatch.setattr(structlog.contextvars, "clear_contextvars", snapshot_then_clear)
    authorised = await till.call(
        "POST",
        "/v1/merchant/redemptions",
        {"redemption_token": await _code(live, rider), "offer_id": str(offer)},
    )
    assert authorised.status_code == 201
    logged = seen[-1]  # bound when the request line was written
    rest = till.token.removeprefix("cpmk_")
    assert logged.get("merchant_key") == rest[: rest.index("_", 3)]
    assert "merchant_id" in logged and "request_id" in logged
    assert till.token not in str(logged)  # never the secret: only the key's id
