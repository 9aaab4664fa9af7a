"""Probes of the crediting path without HTTP, for docs/performance.md's "why" figures.

Skipped unless CARBON_POINTS_PROBES=1 (each takes about 10 s; speed is not a test):

    CARBON_POINTS_PROBES=1 .venv/bin/pytest -s -p no:cacheprovider \\
        tests/benchmarks/test_probe_crediting_inprocess.py

1. Batches of 500 over 20,000 linked participants, one at a time and four at a time, in one
   process: how much concurrent batches overlap (they share participants, whose account
   locks they take before loading state, until they commit).
2. Single events through the group committer from 32 concurrent senders, in one process:
   what the group commit does when nothing but the database limits it.

Each prints its figure and checks that every event was credited.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from datetime import UTC, datetime

import pytest

from service.crediting import service as crediting
from service.crediting.group_commit import GroupCommitter
from service.crediting.schemas import EventIn
from service.partners.auth import PartnerContext
from tests.crediting.conftest import Live, live
from tests.crediting.test_set_based import _events, _partner, _riders

__all__ = ["live"]
pytestmark = pytest.mark.skipif(
    not os.environ.get("CARBON_POINTS_PROBES"),
    reason="a speed probe: run with CARBON_POINTS_PROBES=1 (see the module docstring)",
)
PARTICIPANTS = 20_000


async def _population(live: Live) -> tuple[PartnerContext, list[str]]:
    credential, partner = await _partner(live, "metro-co")
    cards = [f"6222{i:012d}" for i in range(PARTICIPANTS)]
    for start in range(0, PARTICIPANTS, 5_000):
        await _riders(live, credential.partner_id, cards[start : start + 5_000])
    return partner, cards


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_batches_at_once(live: Live, concurrency: int) -> None:
    partner, cards = await _population(live)
    async with live.sessionmaker() as session:
        registry = await live.app.state.registry_cache.get(session)
    rng = random.Random(1)
    batches = [_events(f"b{b}", rng.sample(cards, 500)) for b in range(40)]

    async def credit(events: list[EventIn]) -> None:
        async with live.sessionmaker() as session, session.begin():
            outcomes = await crediting.ingest(
                session, registry, live.settings(), partner, list(events), datetime.now(UTC)
            )
        assert {o.status for o in outcomes} <= {"credited", "capped"}

    for events in batches[:4]:  # warm up: accounts created, statements prepared
        await credit(events)
    queue = batches[4:]

    async def worker() -> None:
        while queue:
            await credit(queue.pop())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    print(f"\n{concurrency} batch(es) at once: {36 * 500 / elapsed:,.0f} credited events/s")


async def test_single_events_through_the_group_committer(live: Live) -> None:
    partner, cards = await _population(live)
    async with live.sessionmaker() as session:
        registry = await live.app.state.registry_cache.get(session)
    committer = GroupCommitter(live.sessionmaker, live.settings)
    rng = random.Random(2)
    done = 0
    stop = time.perf_counter() + 5

    async def sender(i: int) -> None:
        nonlocal done
        sent = 0
        while time.perf_counter() < stop:
            sent += 1
            (event,) = _events(f"s{i}-{sent}", [rng.choice(cards)])
            item = crediting.prepare(registry, live.settings(), partner, event, datetime.now(UTC))
            assert isinstance(item, crediting.Prepared)
            outcome = await committer.submit(item)
            assert outcome.status in ("credited", "capped"), outcome
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(sender(i) for i in range(32)))
    elapsed = time.perf_counter() - started
    print(
        f"\n32 senders, group commit: {done / elapsed:,.0f} events/s in "
        f"{committer.groups} groups ({committer.events / max(committer.groups, 1):.1f} a group)"
    )
