"""The outbox: nothing sent for rolled-back work, committed work delivered, signed to spec."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from integrations import verify_webhook
from service.models import WebhookMessage
from service.webhooks import service
from service.webhooks.errors import InvalidEndpointError
from tests.webhooks.conftest import PARTNER_KEY, Env, soon


class Boom(Exception):
    pass


async def _message_count(env: Env) -> int:
    async with env.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(WebhookMessage)) or 0)


async def test_rolled_back_enqueue_sends_nothing(env: Env) -> None:
    await env.endpoint()
    ids: list[str] = []

    async def business_transaction_that_fails() -> None:
        async with env.sessionmaker() as session, session.begin():
            ids.extend(
                await service.enqueue(
                    session,
                    owner_type="merchant",
                    owner_id=env.owner_id,
                    event_type="credit.created",
                    payload={"points": 5},
                )
            )
            raise Boom  # the business transaction fails after announcing its event

    with pytest.raises(Boom):
        await business_transaction_that_fails()
    assert len(ids) == 1  # the message was written, inside the transaction that rolled back

    assert await env.deliver() == 0
    assert env.receiver.requests == []
    assert await _message_count(env) == 0


async def test_committed_enqueue_is_delivered_once(env: Env) -> None:
    issued = await env.endpoint()
    (message_id,) = await env.enqueue(payload={"credit_id": "c-1", "points": 12})

    assert await env.deliver() == 1
    assert await env.deliver() == 0  # nothing left to do

    (request,) = env.receiver.requests
    assert request.method == "POST"
    assert str(request.url) == "https://receiver.example/hooks"
    assert request.headers["webhook-id"] == message_id
    assert request.headers["content-type"] == "application/json"
    body = orjson.loads(request.content)
    assert body["type"] == "credit.created"
    assert body["data"] == {"credit_id": "c-1", "points": 12}
    message = await env.message(message_id)
    assert message.status == "delivered"
    assert message.delivered_at is not None
    assert message.endpoint_id == issued.endpoint_id
    (attempt,) = await env.attempts(message_id)
    assert (attempt.attempt, attempt.status_code, attempt.error) == (1, 204, None)


async def test_signature_verifies_with_the_reference_library(env: Env) -> None:
    issued = await env.endpoint()
    await env.enqueue(payload={"points": 7, "note": "绿色出行"})
    await env.deliver()

    (request,) = env.receiver.requests
    headers = dict(request.headers)
    assert issued.secret.startswith("whsec_")
    assert request.headers["webhook-signature"].startswith("v1,")
    verified = Webhook(issued.secret).verify(request.content, headers)
    assert verified["data"] == {"points": 7, "note": "绿色出行"}
    # And with the project's own SDK, as a Python receiver would.
    verify_webhook(secret=issued.secret, headers=headers, body=request.content)
    # A receiver holding another secret rejects it.
    other = await env.endpoint(owner_id=uuid.uuid4())
    with pytest.raises(Exception, match="signature"):
        Webhook(other.secret).verify(request.content, headers)


async def test_rotated_secret_old_and_new_both_verify_during_the_overlap(env: Env) -> None:
    old = await env.endpoint()
    async with env.sessionmaker() as session, session.begin():
        new = await service.rotate_secret(
            session, PARTNER_KEY, old.endpoint_id, now=datetime.now(UTC), overlap=timedelta(hours=1)
        )
    assert new.secret != old.secret
    await env.enqueue()
    await env.deliver()
    (request,) = env.receiver.requests
    assert len(request.headers["webhook-signature"].split()) == 2
    for secret in (old.secret, new.secret):
        Webhook(secret).verify(request.content, dict(request.headers))

    # Past the overlap only the new secret signs.
    await env.enqueue()
    await env.deliver(datetime.now(UTC) + timedelta(hours=2))
    late = env.receiver.requests[-1]
    assert len(late.headers["webhook-signature"].split()) == 1
    Webhook(new.secret).verify(late.content, dict(late.headers))
    with pytest.raises(Exception, match="signature"):
        Webhook(old.secret).verify(late.content, dict(late.headers))


async def test_enqueue_reaches_only_active_subscribed_endpoints_of_the_owner(env: Env) -> None:
    credits = await env.endpoint(("credit.created",))
    both = await env.endpoint(("credit.created", "redemption.captured"))
    await env.endpoint(("redemption.captured",))  # not subscribed to credits
    await env.endpoint(("credit.created",), owner_id=uuid.uuid4())  # another merchant
    await env.endpoint(("credit.created",), owner_type="partner", owner_id=env.owner_id)
    disabled = await env.endpoint(("credit.created",))
    async with env.sessionmaker() as session, session.begin():
        await service.disable_endpoint(session, disabled.endpoint_id, now=datetime.now(UTC))

    ids = await env.enqueue("credit.created")
    assert len(ids) == 2
    endpoints = {(await env.message(i)).endpoint_id for i in ids}
    assert endpoints == {credits.endpoint_id, both.endpoint_id}
    async with env.sessionmaker() as session:
        listed = await service.list_endpoints(session, owner_type="merchant", owner_id=env.owner_id)
        everything = await service.list_endpoints(
            session, owner_type="merchant", owner_id=env.owner_id, include_disabled=True
        )
    assert len(listed) == 3
    assert len(everything) == 4


async def test_an_owner_without_endpoints_gets_nothing(env: Env) -> None:
    assert await env.enqueue() == []
    assert await _message_count(env) == 0


async def test_disabled_endpoint_pending_messages_go_dead_unsent(env: Env) -> None:
    issued = await env.endpoint()
    (message_id,) = await env.enqueue()
    async with env.sessionmaker() as session, session.begin():
        await service.disable_endpoint(session, issued.endpoint_id, now=datetime.now(UTC))
    assert await env.deliver() == 1
    assert env.receiver.requests == []
    message = await env.message(message_id)
    assert (message.status, message.last_error) == ("dead", "EndpointDisabled")


async def test_bad_enqueue_calls_raise_in_the_callers_transaction(env: Env) -> None:
    await env.endpoint()
    async with env.sessionmaker() as session:
        with pytest.raises(ValueError, match="event type"):
            await service.enqueue(
                session,
                owner_type="merchant",
                owner_id=env.owner_id,
                event_type="credit.deleted",
                payload={},
            )
        with pytest.raises(ValueError, match="owner type"):
            await service.enqueue(
                session,
                owner_type="user",
                owner_id=env.owner_id,
                event_type="credit.created",
                payload={},
            )
        with pytest.raises(TypeError):
            await service.enqueue(
                session,
                owner_type="merchant",
                owner_id=env.owner_id,
                event_type="credit.created",
                payload={"amount": object()},
            )


@pytest.mark.parametrize(
    ("url", "events"),
    [
        ("ftp://receiver.example/x", ["credit.created"]),
        ("/relative", ["credit.created"]),
        ("https://receiver.example/x y", ["credit.created"]),
        ("https://" + "a" * 2050 + ".example/", ["credit.created"]),
        ("https://receiver.example/x", []),
        ("https://receiver.example/x", ["credit.deleted"]),
    ],
)
async def test_invalid_endpoints_are_refused_and_nothing_is_written(
    env: Env, url: str, events: list[str]
) -> None:
    with pytest.raises(InvalidEndpointError):
        await env.endpoint(tuple(events), url=url)
    async with env.sessionmaker() as session:
        assert (
            await service.list_endpoints(
                session, owner_type="merchant", owner_id=env.owner_id, include_disabled=True
            )
            == []
        )


def test_message_ids_sort_by_creation_and_suit_the_signed_content() -> None:
    first = service.new_message_id()
    later = [service.new_message_id() for _ in range(50)]
    assert len(first) == 30
    assert first.startswith("msg_")
    assert "." not in first
    assert len(set(later)) == 50
    time.sleep(0.002)
    assert service.new_message_id() > first


async def test_payload_is_sent_as_json_types(env: Env) -> None:
    await env.endpoint()
    when = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    ident = uuid.uuid4()
    await env.enqueue(payload={"at": when, "id": ident})
    await env.deliver(soon())
    body = orjson.loads(env.receiver.requests[0].content)
    assert body["data"] == {"at": "2026-11-30T08:00:00+00:00", "id": str(ident)}


async def test_the_outbox_state_and_its_gauges_show_pending_lag_and_dead_letters(
    env: Env,
) -> None:
    from prometheus_client import REGISTRY

    from service import metrics

    async with env.sessionmaker() as session:
        before = await service.outbox_state(session, now=datetime.now(UTC))
    issued = await env.endpoint()
    await env.enqueue()
    await env.enqueue()
    later = datetime.now(UTC) + timedelta(minutes=2)
    async with env.sessionmaker() as session:
        waiting = await service.outbox_state(session, now=later)
    assert waiting.pending == before.pending + 2
    assert waiting.lag_seconds >= 119  # due since they were written, two minutes ago by then

    async with env.sessionmaker() as session, session.begin():
        await service.disable_endpoint(session, issued.endpoint_id, now=datetime.now(UTC))
    assert await env.deliver() == 2
    async with env.sessionmaker() as session:
        after = await service.outbox_state(session, now=datetime.now(UTC))
    assert (after.pending, after.dead) == (before.pending, before.dead + 2)

    await metrics.refresh_from_database(env.sessionmaker, force=True)
    assert REGISTRY.get_sample_value("carbon_points_webhook_dead_letters") == after.dead
    assert REGISTRY.get_sample_value("carbon_points_webhook_outbox_pending") == after.pending
