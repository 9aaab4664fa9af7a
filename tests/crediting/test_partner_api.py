"""The partner API end to end: signed by the SDK, credited through the ledger, exactly once."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, text

from integrations import (
    AuthenticationError,
    ConflictError,
    Event,
    PermissionDeniedError,
    sign_request,
)
from service.ledger.verify import verify_ledger
from service.models import Credit, PartnerEvent
from tests.crediting.conftest import TRIP_AT, Live, metro

# 12.345 km x 46.7 g/km (Shenzhen) = 576.5115 g -> 576 g, 576 points (rounded down).
TRIP_GRAMS = 576


async def _count(live: Live, model: type) -> int:
    async with live.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_linked_riders_trip_is_credited_and_explained(live: Live) -> None:
    metro_co = await live.partner("metro-co")
    rider = await live.participant()
    await live.link(rider, metro_co, "6222020000000001")
    async with live.client(metro_co) as client:
        outcome = await client.submit_event(metro("trip-1"))
        fetched = await client.get_event("trip-1")
    assert outcome.status == "credited"
    assert (outcome.grams, outcome.points) == (TRIP_GRAMS, TRIP_GRAMS)
    assert (outcome.methodology_id, outcome.methodology_version) == ("transit.metro", 1)
    assert fetched.credit_id == outcome.credit_id
    assert await live.balance(rider) == TRIP_GRAMS
    assert (await verify_ledger(live.sessionmaker.kw["bind"])).ok


async def test_retries_return_the_original_and_credit_once(live: Live) -> None:
    metro_co = await live.partner("metro-co")
    rider = await live.participant()
    await live.link(rider, metro_co, "6222020000000001")
    async with live.client(metro_co) as client:
        first = await client.submit_event(metro("trip-1"))
        again = await client.submit_event(metro("trip-1"))
        with pytest.raises(ConflictError) as conflict:
            await client.submit_event(metro("trip-1", quantities={"distance_m": 99999}))
    assert again.credit_id == first.credit_id
    assert conflict.value.problem.type.endswith("/event-conflict")
    assert await live.balance(rider) == TRIP_GRAMS
    assert await _count(live, Credit) == 1


async def test_one_event_sent_100_times_concurrently_credits_once(live: Live) -> None:
    metro_co = await live.partner("metro-co")
    rider = await live.participant()
    await live.link(rider, metro_co, "6222020000000001")
    async with live.client(metro_co) as client:
        outcomes = await asyncio.gather(*(client.submit_event(metro("burst")) for _ in range(100)))
    assert {o.credit_id for o in outcomes} == {outcomes[0].credit_id}
    assert await live.balance(rider) == TRIP_GRAMS
    assert await _count(live, Credit) == 1


async def test_a_bad_event_in_a_batch_does_not_reject_its_siblings(live: Live) -> None:
    metro_co = await live.partner("metro-co")
    rider = await live.participant()
    await live.link(rider, metro_co, "6222020000000001")
    body = {
        "events": [
            metro("good-1").to_json(),
            {"external_id": "broken", "action_type": "transit.metro"},
            {**metro("walk-1").to_json(), "action_type": "mobility.walk"},
            metro("good-2", occurred_at=TRIP_AT + timedelta(minutes=40)).to_json(),
            "not an object",
        ]
    }
    response = await _signed(live, metro_co, "POST", "/v1/partner/event-batches", body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [
        "credited",
        "rejected",
        "rejected",
        "credited",
        "rejected",
    ]
    assert results[1]["problem"]["type"].endswith("/validation-error")
    assert "6222020000000001" not in response.text
    assert results[2]["problem"]["status"] == 403
    assert await live.balance(rider) == 2 * TRIP_GRAMS


@pytest.mark.parametrize(
    ("body", "status", "slug"),
    [
        (b'{"events": [', 400, "malformed-body"),
        (b'{"events": []}', 400, "bad-request"),
        (b'[{"external_id": "x"}]', 400, "bad-request"),
        (None, 413, "payload-too-large"),
    ],
)
async def test_malformed_and_oversized_batches_write_nothing(
    live: Live, body: bytes | None, status: int, slug: str
) -> None:
    metro_co = await live.partner("metro-co")
    if body is None:
        events = [metro(f"t{i}").to_json() for i in range(1001)]
        payload: object = {"events": events}
    else:
        payload = body
    response = await _signed(live, metro_co, "POST", "/v1/partner/event-batches", payload)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/" + slug)
    assert await _count(live, PartnerEvent) == 0


async def test_action_types_are_per_partner(live: Live) -> None:
    bikes = await live.partner("bikes-co", ("mobility.bikeshare",))
    async with live.client(bikes) as client:
        with pytest.raises(PermissionDeniedError) as denied:
            await client.submit_event(metro("trip-1"))
    assert denied.value.problem.type.endswith("/action-type-not-allowed")
    assert await _count(live, PartnerEvent) == 0


async def _signed(
    live: Live,
    credential: object,
    method: str,
    path: str,
    payload: object,
    *,
    key_id: str | None = None,
    secret: str | None = None,
    timestamp: int | None = None,
    webhook_id: str = "msg_test",
) -> httpx.Response:
    import orjson

    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    key = key_id or credential.key_id  # type: ignore[attr-defined]
    ts = timestamp if timestamp is not None else int(time.time())
    webhook_id = webhook_id if webhook_id != "msg_test" else f"msg_{time.monotonic_ns()}"
    signature = sign_request(
        key_id=key,
        secret=secret or credential.secret,  # type: ignore[attr-defined]
        webhook_id=webhook_id,
        timestamp=ts,
        method=method,
        path=path,
        body=body,
    )
    async with httpx.AsyncClient(transport=live.transport, base_url="http://test") as http:
        return await http.request(
            method,
            path,
            content=body,
            headers={
                "content-type": "application/json",
                "webhook-key-id": key,
                "webhook-id": webhook_id,
                "webhook-timestamp": str(ts),
                "webhook-signature": signature,
            },
        )


async def test_signatures_are_checked(live: Live) -> None:
    metro_co = await live.partner("metro-co")
    event = metro("trip-1").to_json()
    path = "/v1/partner/events"

    wrong_secret = await _signed(live, metro_co, "POST", path, event, secret="cpsk_wrong")
    stale = await _signed(live, metro_co, "POST", path, event, timestamp=int(time.time()) - 301)
    unknown = await _signed(
        live, metro_co, "POST", path, event, key_id="pk_000000000000000000000000"
    )
    first = await _signed(live, metro_co, "POST", path, event, webhook_id="msg_once")
    replay = await _signed(live, metro_co, "POST", path, event, webhook_id="msg_once")
    async with httpx.AsyncClient(transport=live.transport, base_url="http://test") as http:
        unsigned = await http.post(path, json=event)

    slugs = {
        name: (response.status_code, response.json()["type"].rsplit("/", 1)[1])
        for name, response in {
            "wrong_secret": wrong_secret,
            "stale": stale,
            "unknown": unknown,
            "replay": replay,
            "unsigned": unsigned,
        }.items()
    }
    assert first.status_code == 200
    assert slugs == {
        "wrong_secret": (401, "bad-signature"),
        "stale": (401, "stale-timestamp"),
        "unknown": (401, "unknown-key"),
        "replay": (401, "replayed-request"),
        "unsigned": (401, "signature-missing"),
    }


async def test_a_revoked_key_is_refused(live: Live) -> None:
    from datetime import UTC, datetime

    from service.partners.credentials import revoke_credential

    metro_co = await live.partner("metro-co")
    async with live.sessionmaker() as session, session.begin():
        await revoke_credential(session, metro_co.key_id, now=datetime.now(UTC))
    live.app.state.partner_credentials.clear()
    async with live.client(metro_co) as client:
        with pytest.raises(AuthenticationError) as refused:
            await client.submit_event(metro("trip-1"))
    assert refused.value.problem.type.endswith("/revoked-key")


async def test_the_same_trip_from_two_partners_credits_once(live: Live) -> None:
    metro_co = await live.partner("metro-co")
    maas_app = await live.partner("maas-app")
    rider = await live.participant()
    await live.link(rider, metro_co, "6222020000000001")
    await live.link(rider, maas_app, "maas-user-42")
    async with live.client(metro_co) as a, live.client(maas_app) as b:
        original = await a.submit_event(metro("card-trip"))
        echo = await b.submit_event(
            metro("app-trip", card="maas-user-42", occurred_at=TRIP_AT + timedelta(minutes=2))
        )
        later = await b.submit_event(
            metro("app-trip-2", card="maas-user-42", occurred_at=TRIP_AT + timedelta(hours=1))
        )
        await a.retract("card-trip", "wrong card")
        reported_again = await b.submit_event(
            metro("app-trip-3", card="maas-user-42", occurred_at=TRIP_AT + timedelta(minutes=1))
        )
    assert original.status == "credited"
    # Once the first report is retracted, the other partner's report of the trip stands.
    assert reported_again.status == "credited"
    assert echo.status == "duplicate"
    assert echo.duplicate_of == {"credit_id": original.credit_id}
    assert later.status == "credited"
    assert await live.balance(rider) == 2 * TRIP_GRAMS


async def test_concurrent_batches_at_a_cap_boundary_never_exceed_it(live: Live) -> None:
    # transit.daily: 2,000 g a day across metro and bus (a program choice in the library).
    metro_co = await live.partner("metro-co")
    rider = await live.participant()
    await live.link(rider, metro_co, "6222020000000001")

    async def batch(n: int) -> None:
        events = [
            metro(f"b{n}-{i}", occurred_at=TRIP_AT + timedelta(minutes=10 * n + i))
            for i in range(2)
        ]
        async with live.client(metro_co) as client:
            await client.submit_events(events)

    await asyncio.gather(*(batch(n) for n in range(8)))
    async with live.sessionmaker() as session:
        grams = await session.scalar(select(func.sum(Credit.grams)))
        statuses = (await session.execute(select(Credit.status))).scalars().all()
    assert grams == 2000
    assert statuses.count("credited") == 3  # 3 x 576 = 1,728; the 4th gets the 272 left
    assert statuses.count("capped") == 13
    assert await live.balance(rider) == 2000
    assert (await verify_ledger(live.sessionmaker.kw["bind"])).ok


async def test_an_unlinked_subject_waits_then_is_credited_on_link(live: Live) -> None:
    metro_co = await live.partner("metro-co")
    async with live.client(metro_co) as client:
        waiting = await client.submit_event(metro("trip-1", card="new-card"))
        page = await client.list_outcomes()
        assert waiting.status == "pending"
        assert waiting.reasons[0].code == "subject_not_linked"
        rider = await live.participant()
        released = await live.link(rider, metro_co, "new-card")
        assert [o.status for o in released] == ["credited"]
        after = await client.get_event("trip-1")
        changes = [o async for o in client.iter_outcomes(after=page.next_cursor)]
    assert after.status == "credited"
    assert await live.balance(rider) == TRIP_GRAMS
    # The partner's reconciliation feed shows the pending outcome, then the credited one.
    assert [o.status for o in page.outcomes] == ["pending"]
    assert page.next_cursor is None
    assert [o.status for o in changes] in (["pending", "credited"], ["credited"])


async def test_a_retraction_reverses_the_credit_and_frees_the_cap(live: Live) -> None:
    metro_co = await live.partner("metro-co")
    rider = await live.participant()
    await live.link(rider, metro_co, "6222020000000001")
    async with live.client(metro_co) as client:
        await client.submit_event(metro("trip-1"))
        retracted = await client.retract("trip-1", "fare_dispute")
        again = await client.retract("trip-1", "fare_dispute")
    assert retracted.status == again.status == "retracted"
    # The outcome says what was taken back: all of it from the balance, nothing owed.
    taken = [r for r in retracted.reasons if r.code == "points_taken_back"]
    assert [r.message for r in taken] == [f"{retracted.points} points taken back from the balance"]
    assert retracted.points > 0
    assert [r.code for r in again.reasons] == [r.code for r in retracted.reasons]
    assert await live.balance(rider) == 0
    async with live.sessionmaker() as session:
        used = await session.scalar(text("SELECT coalesce(sum(grams), 0) FROM cap_usage"))
    assert used == 0
    assert (await verify_ledger(live.sessionmaker.kw["bind"])).ok


async def test_ingestion_survives_losing_redis(live: Live) -> None:
    from redis.asyncio import Redis

    metro_co = await live.partner("metro-co")
    rider = await live.participant()
    await live.link(rider, metro_co, "6222020000000001")
    working = live.app.state.redis
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    events = [metro(f"t{i}", occurred_at=TRIP_AT + timedelta(minutes=10 * i)) for i in range(12)]

    async def send(chunk: list[Event]) -> list[str | None]:
        async with live.client(metro_co) as client:
            return [o.credit_id for o in await client.submit_events(chunk, batch_size=2)]

    try:
        # Redis goes away while batches are in flight.
        in_flight = asyncio.gather(*(send(events[k : k + 4]) for k in range(0, 12, 4)))
        await asyncio.sleep(0)
        live.app.state.redis = dead
        first = [credit for chunk in await in_flight for credit in chunk]
        retried = await send(events)
    finally:
        live.app.state.redis = working
        await dead.aclose()
    assert None not in first
    assert retried == first
    assert await live.balance(rider) == 2000  # 12 trips, the transit.daily cap of 2,000 g
    async with live.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Credit)) == 12


async def test_rotation_keeps_the_old_key_for_the_overlap_only(live: Live) -> None:
    from datetime import UTC, datetime

    from service.partners.credentials import rotate_credential

    metro_co = await live.partner("metro-co")
    partner_key = live.app.state.secrets.partner_secret_key
    async with live.sessionmaker() as session, session.begin():
        successor = await rotate_credential(
            session, partner_key, metro_co.key_id, overlap=timedelta(hours=1), now=datetime.now(UTC)
        )
    live.app.state.partner_credentials.clear()
    async with live.client(metro_co) as old, live.client(successor) as new:
        assert (await old.submit_event(metro("t1"))).status == "pending"
        assert (await new.submit_event(metro("t2"))).status == "pending"
    async with live.sessionmaker() as session, session.begin():
        await rotate_credential(
            session, partner_key, successor.key_id, overlap=timedelta(0), now=datetime.now(UTC)
        )
    live.app.state.partner_credentials.clear()
    async with live.client(successor) as retired:
        with pytest.raises(AuthenticationError) as refused:
            await retired.submit_event(metro("t3"))
    assert refused.value.problem.type.endswith("/revoked-key")


async def test_rate_limits_are_per_partner(live: Live) -> None:
    from sqlalchemy import update

    from service.models import Partner

    slow = await live.partner("slow-co")
    fast = await live.partner("fast-co")
    async with live.sessionmaker() as session, session.begin():
        await session.execute(
            update(Partner).where(Partner.code == "slow-co").values(rate_limit_per_second=1)
        )
    live.app.state.partner_credentials.clear()
    path = "/v1/partner/events"
    slow_responses = [
        await _signed(live, slow, "POST", path, metro(f"s{i}").to_json()) for i in range(8)
    ]
    fast_codes = [
        (await _signed(live, fast, "POST", path, metro(f"f{i}").to_json())).status_code
        for i in range(8)
    ]
    limited = [r for r in slow_responses if r.status_code == 429]
    # One a second: even if the eight requests spanned four seconds, four would be refused.
    assert len(limited) >= 4
    assert fast_codes == [200] * 8
    assert limited[0].headers["retry-after"] == "1"
    assert limited[0].json()["type"].endswith("/rate-limited")


async def test_the_outcome_feed_never_skips_an_outcome_committed_late(live: Live) -> None:
    from datetime import UTC, datetime

    from service.crediting import service as crediting
    from service.crediting.schemas import EventIn

    metro_co = await live.partner("metro-co")
    partner = await live.app.state.partner_credentials.get(
        live.sessionmaker, live.app.state.secrets.partner_secret_key, metro_co.key_id
    )
    assert partner is not None
    async with live.sessionmaker() as session:
        registry = await live.app.state.registry_cache.get(session)

    def event(external_id: str) -> EventIn:
        return EventIn.model_validate(metro(external_id, card="someone").to_json())

    # A slow transaction takes its outcome numbers first and commits last.
    slow = live.sessionmaker()
    try:
        await slow.begin()
        await crediting.ingest(
            slow, registry, live.settings(), partner.partner, [event("slow-1")], datetime.now(UTC)
        )
        async with live.client(metro_co) as client:
            fast = await client.submit_event(metro("fast-1", card="someone-else"))
            assert fast.status == "pending"
            while_open = await client.list_outcomes()
            await slow.commit()
            after = [o.external_id async for o in client.iter_outcomes()]
    finally:
        await slow.close()
    # While the slow one was open, the fast outcome (numbered after it) was held back.
    assert [o.external_id for o in while_open.outcomes] == []
    assert after == ["slow-1", "fast-1"]
