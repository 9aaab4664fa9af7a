"""Retries until the receiver recovers, every event once by webhook-id; dead letters, replay;
several workers; crashed workers' leases."""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from service.models import WebhookMessage
from service.webhooks import service
from service.webhooks.delivery import DEFAULT_LEASE, claim_due
from service.webhooks.errors import MessageNotFoundError, MessageNotReplayableError
from service.webhooks.retry import DEFAULT_RETRY, RetryPolicy
from tests.webhooks.conftest import Behaviour, Env, Receiver, soon

FAST = RetryPolicy(base=timedelta(seconds=5), cap=timedelta(minutes=1), max_attempts=4)


def fails_first(times: int, *, error: str = "status") -> Behaviour:
    def behaviour(receiver: Receiver, request: httpx.Request, seen: int) -> int | Exception:
        if seen > times:
            return 200
        if error == "connect":
            return httpx.ConnectError("connection refused", request=request)
        if error == "timeout":
            return httpx.ReadTimeout("read timed out", request=request)
        return 503

    return behaviour


async def _rounds(env: Env, start: datetime, policy: RetryPolicy, rounds: int) -> datetime:
    """Run the worker `rounds` times, each one past every retry the previous could schedule."""
    now = start
    for _ in range(rounds):
        await env.deliver(now, retry=policy)
        now += policy.cap + timedelta(seconds=1)
    return now


async def test_retry_schedule_grows_doubles_and_caps() -> None:
    policy = DEFAULT_RETRY
    ceilings = [policy.ceiling(n).total_seconds() for n in range(1, policy.max_attempts)]
    assert ceilings[:4] == [5, 10, 20, 40]
    assert all(b == min(3600, 2 * a) for a, b in itertools.pairwise(ceilings))
    assert ceilings[-1] == 3600
    # The whole window is hours long: ~20 h at worst, ~10 h on average.
    assert 19 * 3600 < sum(ceilings) < 21 * 3600
    assert policy.exhausted(policy.max_attempts)
    assert not policy.exhausted(policy.max_attempts - 1)


@pytest.mark.parametrize("attempt", [1, 2, 5, 11, 29])
async def test_retry_delays_are_jittered_within_bounds(attempt: int) -> None:
    rng = random.Random(attempt)
    ceiling = DEFAULT_RETRY.ceiling(attempt)
    delays = [DEFAULT_RETRY.delay(attempt, rng) for _ in range(500)]
    assert all(timedelta(0) <= d <= ceiling for d in delays)
    # Full jitter: spread over the whole range, not bunched at the ceiling.
    assert len(set(delays)) == 500
    assert min(delays) < ceiling * 0.1
    assert max(delays) > ceiling * 0.9


async def test_a_failed_attempt_is_rescheduled_within_its_jitter_window(env: Env) -> None:
    env.receiver.behaviour = fails_first(1)
    await env.endpoint()
    (message_id,) = await env.enqueue()
    now = soon()
    await env.deliver(now)
    message = await env.message(message_id)
    assert (message.status, message.attempts, message.last_error) == ("pending", 1, "HTTP 503")
    wait = message.next_attempt_at - now
    assert timedelta(0) <= wait <= DEFAULT_RETRY.ceiling(1) + timedelta(seconds=1)
    assert message.lease_id is None
    assert message.leased_until is None
    # Not due again in the same run, nor before its time.
    assert await env.deliver(now) == 0
    assert await env.deliver(message.next_attempt_at + timedelta(milliseconds=1)) == 1
    assert (await env.message(message_id)).status == "delivered"


@pytest.mark.parametrize("error", ["status", "connect", "timeout"])
async def test_receiver_that_fails_then_recovers_gets_every_event_once(
    env: Env, error: str
) -> None:
    env.receiver.behaviour = fails_first(2, error=error)
    await env.endpoint()
    ids = [i for _ in range(5) for i in await env.enqueue(payload={"n": _})]

    await _rounds(env, soon(), FAST, rounds=3)

    assert set(env.receiver.processed) == set(ids)
    assert all(env.receiver.arrivals[i] == 3 for i in ids)  # the same id on every attempt
    for message_id in ids:
        message = await env.message(message_id)
        assert (message.status, message.attempts) == ("delivered", 3)
        attempts = await env.attempts(message_id)
        assert [a.attempt for a in attempts] == [1, 2, 3]
        if error == "status":
            assert [a.status_code for a in attempts] == [503, 503, 200]
        else:
            assert [a.error for a in attempts][:2] == [
                {"connect": "ConnectError", "timeout": "ReadTimeout"}[error]
            ] * 2
            assert attempts[2].status_code == 200


async def test_a_lost_response_is_sent_again_and_the_receiver_dedupes_by_webhook_id(
    env: Env,
) -> None:
    def processes_then_500_once(
        receiver: Receiver, request: httpx.Request, seen: int
    ) -> int | Exception:
        if seen == 1:
            receiver.process(request)  # the work is done, but the answer never gets back
            return 500
        return 200

    env.receiver.behaviour = processes_then_500_once
    await env.endpoint()
    ids = [i for n in range(3) for i in await env.enqueue(payload={"n": n})]

    await _rounds(env, soon(), FAST, rounds=2)

    assert all(env.receiver.arrivals[i] == 2 for i in ids)  # each was sent twice...
    assert sorted(env.receiver.processed) == sorted(ids)  # ...and acted on once
    assert [env.receiver.processed[i]["data"] for i in ids] == [{"n": 0}, {"n": 1}, {"n": 2}]
    # The retry carried the same body, so a receiver may also compare content.
    first, second = (r for r in env.receiver.requests if r.headers["webhook-id"] == ids[0])
    assert first.content == second.content


async def test_after_the_last_attempt_the_message_is_dead_and_replay_revives_it(
    env: Env,
) -> None:
    env.receiver.behaviour = fails_first(10**6)
    await env.endpoint()
    (message_id,) = await env.enqueue()

    now = await _rounds(env, soon(), FAST, rounds=FAST.max_attempts + 2)

    message = await env.message(message_id)
    assert (message.status, message.attempts, message.last_error) == (
        "dead",
        FAST.max_attempts,
        "HTTP 503",
    )
    assert env.receiver.arrivals[message_id] == FAST.max_attempts  # no tries after death
    async with env.sessionmaker() as session:
        assert [m.id for m in await service.list_dead(session)] == [message_id]

    env.receiver.behaviour = fails_first(0)
    async with env.sessionmaker() as session, session.begin():
        replayed = await service.replay(session, message_id)
    assert (replayed.id, replayed.status, replayed.attempts) == (message_id, "pending", 0)
    async with env.sessionmaker() as session:
        assert list(await service.list_dead(session)) == []

    await env.deliver(now, retry=FAST)
    message = await env.message(message_id)
    assert (message.status, message.attempts, message.last_error) == ("delivered", 1, None)
    assert list(env.receiver.processed) == [message_id]
    assert len(await env.attempts(message_id)) == FAST.max_attempts + 1  # the audit trail stays

    # Delivered messages can be replayed too (a receiver lost its data); same id again.
    async with env.sessionmaker() as session, session.begin():
        await service.replay(session, message_id)
    await env.deliver(now, retry=FAST)
    assert env.receiver.arrivals[message_id] == FAST.max_attempts + 2
    assert (await env.message(message_id)).status == "delivered"


async def test_replay_refuses_pending_and_unknown_messages(env: Env) -> None:
    await env.endpoint()
    (message_id,) = await env.enqueue()
    async with env.sessionmaker() as session, session.begin():
        with pytest.raises(MessageNotReplayableError):
            await service.replay(session, message_id)
    async with env.sessionmaker() as session, session.begin():
        with pytest.raises(MessageNotFoundError):
            await service.replay(session, "msg_unknown")


async def test_concurrent_workers_never_deliver_the_same_message_twice(env: Env) -> None:
    env.receiver.delay = 0.002  # slow enough that the workers' batches overlap
    await env.endpoint()
    ids = [i for n in range(120) for i in await env.enqueue(payload={"n": n})]
    now = soon()

    attempted = await asyncio.gather(*(env.deliver(now, batch_size=10) for _ in range(4)))

    assert sum(attempted) == 120
    assert sum(1 for n in attempted if n > 0) >= 2  # the work really was shared
    assert env.receiver.arrivals == {i: 1 for i in ids}
    async with env.sessionmaker() as session:
        statuses = set(await session.scalars(select(WebhookMessage.status)))
    assert statuses == {"delivered"}


async def test_an_expired_lease_is_picked_up_again(env: Env) -> None:
    await env.endpoint()
    (message_id,) = await env.enqueue()
    now = soon()

    # A worker claims the message, then dies before sending.
    claimed, _ = await claim_due(env.sessionmaker, now=now, leased_until=now + DEFAULT_LEASE)
    assert [m.id for m in claimed] == [message_id]
    leased = await env.message(message_id)
    assert leased.leased_until == now + DEFAULT_LEASE
    assert leased.attempts == 1

    # While the lease holds, nobody else sends it.
    assert await env.deliver(now + DEFAULT_LEASE - timedelta(seconds=1)) == 0
    assert env.receiver.requests == []

    # Once it has expired, the next worker does.
    assert await env.deliver(now + DEFAULT_LEASE + timedelta(seconds=1)) == 1
    message = await env.message(message_id)
    assert (message.status, message.attempts) == ("delivered", 2)
    assert env.receiver.arrivals[message_id] == 1


async def test_a_late_failure_from_an_expired_lease_does_not_undo_a_newer_attempt(
    env: Env,
) -> None:
    """A slow worker's lease runs out and another worker takes over; the slow worker's
    failure, recorded afterwards, must not reschedule or kill the message."""
    from service.webhooks import repository

    await env.endpoint()
    (message_id,) = await env.enqueue()
    now = soon()
    (slow,), _ = await claim_due(env.sessionmaker, now=now, leased_until=now + DEFAULT_LEASE)
    (fresh,), _ = await claim_due(
        env.sessionmaker,
        now=now + DEFAULT_LEASE + timedelta(seconds=1),
        leased_until=now + 2 * DEFAULT_LEASE,
    )
    assert slow.id == fresh.id == message_id
    assert slow.lease_id != fresh.lease_id

    async with env.sessionmaker() as session, session.begin():
        await repository.mark_failed(
            session,
            message_id,
            lease_id=slow.lease_id,
            error="HTTP 500",
            next_attempt_at=None,  # the slow worker thought this was its last try
        )
    message = await env.message(message_id)
    assert (message.status, message.lease_id) == ("pending", fresh.lease_id)

    async with env.sessionmaker() as session, session.begin():
        await repository.mark_delivered(session, message_id, at=datetime.now(UTC))
    assert (await env.message(message_id)).status == "delivered"


def test_a_batch_lease_outlasts_its_slowest_case() -> None:
    from service.webhooks.delivery import TOTAL_TIMEOUT, lease_for

    assert lease_for(1, 16) == DEFAULT_LEASE
    # 100 messages, 16 at a time: 7 waves that could each time out in full.
    assert lease_for(100, 16) > timedelta(seconds=7 * TOTAL_TIMEOUT)
