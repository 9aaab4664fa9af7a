"""Redis Cluster for real: 3 masters and their replicas from Debian's redis-server
(`redis_cluster` in tests/conftest.py), the service's own client and keys on it, and a
master killed while partner batches are in flight.

The rest of the Redis-dependent suite runs on a cluster too: `make pytest-scaling`
(CARBON_POINTS_TEST_REDIS_CLUSTER=1).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import structlog
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from sqlalchemy import func, select

from integrations import Event, Outcome
from service.accounts.throttle import LoginThrottle
from service.models import Credit, PartnerEvent
from service.partners.credentials import IssuedCredential
from service.redis import create_redis, key
from tests.crediting.conftest import TRIP_AT, Live, metro
from tests.scaling_servers import RedisClusterServer, redis_keys

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def on_cluster(live: Live, redis_cluster: RedisClusterServer) -> AsyncIterator[RedisCluster]:
    """The app's Redis swapped for a cluster client on `redis_cluster`, for one test."""
    client = create_redis(redis_cluster.url)
    assert isinstance(client, RedisCluster)
    await client.flushdb(target_nodes=RedisCluster.PRIMARIES)
    saved = live.app.state.redis
    live.app.state.redis = client
    try:
        yield client
    finally:
        live.app.state.redis = saved
        await client.aclose()


def test_the_url_or_the_setting_chooses_the_cluster_client() -> None:
    assert isinstance(create_redis("redis+cluster://127.0.0.1:7000"), RedisCluster)
    assert isinstance(create_redis("redis://127.0.0.1:7000/0", cluster=True), RedisCluster)
    seeded = create_redis("redis+cluster://127.0.0.1:7000,127.0.0.1:7001,[::1]:7002")
    assert isinstance(seeded, RedisCluster)
    assert {(n.host, n.port) for n in seeded.nodes_manager.startup_nodes.values()} == {
        ("127.0.0.1", 7000),
        ("127.0.0.1", 7001),
        ("::1", 7002),
    }
    plain = create_redis("redis://127.0.0.1:6379/3")
    assert isinstance(plain, Redis)
    assert not isinstance(plain, RedisCluster)


def test_keys_used_together_share_a_slot() -> None:
    partner = uuid.uuid4()
    replay = key(f"partner:{partner}", "replay", "key-id", "webhook-id")
    rate = key(f"partner:{partner}", "rate", 1_700_000_000)
    assert key_slot(replay.encode()) == key_slot(rate.encode())
    # A board and its names, whatever the board's key holds (a region may be any text).
    for board_key in ("CN-JX", "a}b", "{x}", "杭州"):
        board = key(f"leaderboard:region:{board_key}:2026-W01")
        names = key(f"leaderboard:region:{board_key}:2026-W01", "names")
        assert key_slot(board.encode()) == key_slot(names.encode())
    # ... while partners spread over the slots (not one tag for everything).
    slots = {key_slot(key(f"partner:{uuid.uuid4()}", "rate", 1).encode()) for _ in range(50)}
    assert len(slots) > 40


def test_every_redis_key_in_the_service_is_made_by_key() -> None:
    """No key spelled by hand: every `cp:` string literal outside service/redis.py would be a
    key without a hash tag (or with one nobody checked)."""
    literal = re.compile(r"""["']cp:""")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "service").rglob("*.py"))
        if path.name != "redis.py" or path.parent.name != "service"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert offenders == []


async def test_the_service_keys_live_on_the_cluster(
    live: Live, on_cluster: RedisCluster, redis_cluster: RedisClusterServer
) -> None:
    metro_co = await live.partner("metro-co")
    rider = await live.participant()
    await live.link(rider, metro_co, "6222020000000001")
    async with live.client(metro_co) as client:
        outcome = await client.submit_event(metro("trip-1"))
    assert outcome.status == "credited"
    tag = f"partner:{metro_co.partner_id}"
    keys = set(await redis_keys(on_cluster, key(tag, "*")))
    assert len([k for k in keys if ":replay:" in k]) == 1
    assert len([k for k in keys if ":rate:" in k]) == 1
    # Both on one master: the one the tag's slot belongs to.
    owner = redis_cluster.master_of(key(tag, "rate", 0))
    assert all(owner.client().exists(k) for k in keys)

    # The login throttle's script (EVAL) and counters, on the cluster.
    throttle = LoginThrottle(per_account=2)
    login = b"\x01" * 32
    await throttle.attempt(on_cluster, login, "198.51.100.7")
    await throttle.attempt(on_cluster, login, "198.51.100.7")
    account = key(f"login-account:{login.hex()}")
    address = key("login-address:198.51.100.7")
    assert int(await on_cluster.get(account) or 0) == 2
    await throttle.succeeded(on_cluster, login, "198.51.100.7")
    assert await on_cluster.exists(account) == 0
    assert int(await on_cluster.get(address) or 0) == 1


async def _send_all(live: Live, credential: IssuedCredential, events: list[Event]) -> list[Outcome]:
    async with live.client(credential) as client:
        return list(await client.submit_events(events, batch_size=5))


async def test_a_master_killed_mid_run_loses_nothing_acknowledged(
    live: Live, on_cluster: RedisCluster, redis_cluster: RedisClusterServer
) -> None:
    """Batches go in from four senders while the master holding the partner's replay and
    rate keys is SIGKILLed. Redis fails open while its replica takes over (or a request
    meets the new master); PostgreSQL decides: every acknowledged event is credited exactly
    once, and all of them sent again change nothing."""
    metro_co = await live.partner("metro-co")
    riders = [await live.participant() for _ in range(8)]
    for n, rider in enumerate(riders):
        await live.link(rider, metro_co, f"62220200000000{n:02d}")
    events = [
        metro(
            f"trip-{n}-{i}",
            card=f"62220200000000{n:02d}",
            occurred_at=TRIP_AT + timedelta(minutes=i),
        )
        for n in range(len(riders))
        for i in range(20)
    ]
    victim = redis_cluster.master_of(key(f"partner:{metro_co.partner_id}", "rate", 0))
    acknowledged: dict[str, Outcome] = {}
    killed = asyncio.Event()
    slowest: list[float] = []

    async def sender(chunk: list[Event]) -> None:
        for start in range(0, len(chunk), 5):
            batch = chunk[start : start + 5]
            sent = time.monotonic()
            outcomes = await _send_all(live, metro_co, batch)
            slowest.append(time.monotonic() - sent)
            for outcome in outcomes:
                acknowledged[outcome.external_id] = outcome
            if len(acknowledged) >= 30 and not killed.is_set():
                killed.set()
                redis_cluster.kill(victim)

    chunks = [events[k::4] for k in range(4)]
    with structlog.testing.capture_logs() as logs:
        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(sender(c) for c in chunks)), timeout=240)
        took = time.monotonic() - started
    failed_open = [e for e in logs if "unavailable" in e.get("event", "")]
    print(
        f"{len(events)} events in {took:.1f} s, slowest batch {max(slowest):.1f} s;"
        f" Redis failed open {len(failed_open)} times"
    )
    assert killed.is_set()
    assert victim.process.poll() is not None
    assert len(acknowledged) == len(events)  # every request answered, none lost to Redis

    # PostgreSQL: exactly one event row and one credit per acknowledged event.
    async with live.sessionmaker() as session:
        rows = (
            await session.execute(
                select(PartnerEvent.external_id, func.count()).group_by(PartnerEvent.external_id)
            )
        ).all()
        credits = int(await session.scalar(select(func.count()).select_from(Credit)) or 0)
    assert {external: count for external, count in rows} == {e.external_id: 1 for e in events}
    credited = {o.credit_id for o in acknowledged.values() if o.credit_id}
    assert credits == len(credited) > 0

    # Everything sent again (a partner retrying after the outage): the same answers, no credit.
    again = await _send_all(live, metro_co, events)
    assert {o.external_id: o.credit_id for o in again} == {
        e: o.credit_id for e, o in acknowledged.items()
    }
    async with live.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Credit)) == credits

    # The cluster healed: a replica took the slots over, and the client follows it.
    await asyncio.to_thread(_wait_healthy, redis_cluster)
    new_owner = redis_cluster.master_of(key(f"partner:{metro_co.partner_id}", "rate", 0))
    assert new_owner.port != victim.port
    probe = key(f"partner:{metro_co.partner_id}", "probe")
    assert await on_cluster.set(probe, b"1")
    assert new_owner.client().get(probe) == b"1"


def _wait_healthy(cluster: RedisClusterServer) -> None:
    deadline = time.monotonic() + 30
    while not cluster.healthy():
        assert time.monotonic() < deadline, "the cluster did not fail over"
        time.sleep(0.2)
