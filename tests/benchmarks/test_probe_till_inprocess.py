"""A probe of the till's cost in one process, for docs/performance.md's "where the time
goes" figures (issue 12).

Skipped unless CARBON_POINTS_PROBES=1 (about 15 s; speed is not a test):

    CARBON_POINTS_PROBES=1 .venv/bin/pytest -s -p no:cacheprovider \\
        tests/benchmarks/test_probe_till_inprocess.py

One till, one customer at a time, authorise + capture through the whole ASGI app (no
socket, no uvicorn), sequentially: the CPU time a pair costs this process (the service's
Python, the driver's parsing; PostgreSQL's own time is another process), then the same
pairs under cProfile, printing the functions with the most own time grouped by package.
Checks that every pair was captured.
"""

from __future__ import annotations

import collections
import cProfile
import os
import pstats
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from service.merchants.auth import issue_key
from service.merchants.service import create_merchant
from service.redemption.service import create_token
from tests.crediting.conftest import Live, live, metro

__all__ = ["live"]
pytestmark = pytest.mark.skipif(
    not os.environ.get("CARBON_POINTS_PROBES"),
    reason="a speed probe: run with CARBON_POINTS_PROBES=1 (see the module docstring)",
)
PAIRS = 300
CUSTOMERS = 20


async def test_till_pair_cost(live: Live) -> None:
    partner = await live.partner("metro-probe")
    riders = []
    async with live.client(partner) as client:
        for i in range(CUSTOMERS):
            rider = await live.participant()
            await live.link(rider, partner, f"card-{i}")
            trips = [
                metro(f"r{i}t{n}", card=f"card-{i}", quantities={"distance_m": 20_000})
                for n in range(20)
            ]
            await client.submit_events(trips)
            riders.append(rider)
    async with live.sessionmaker() as session, session.begin():
        merchant = await create_merchant(session, code="probe-cafe", name="Probe Cafe")
        token = (await issue_key(session, merchant.id, ["redeem"])).token
    headers = {"authorization": f"Bearer {token}"}

    async def codes(n: int) -> list[str]:
        async with live.sessionmaker() as session, session.begin():
            now = datetime.now(UTC)
            return [
                (await create_token(session, riders[i % CUSTOMERS], now=now)).token
                for i in range(n)
            ]

    async def pairs(http: httpx.AsyncClient, batch: list[str]) -> int:
        done = 0
        for code in batch:
            authorised = await http.post(
                "/v1/merchant/redemptions",
                json={"redemption_token": code, "points": 1},
                headers={**headers, "idempotency-key": uuid.uuid4().hex},
            )
            assert authorised.status_code == 201, authorised.text
            captured = await http.post(
                f"/v1/merchant/redemptions/{authorised.json()['id']}/capture",
                json={},
                headers={**headers, "idempotency-key": uuid.uuid4().hex},
            )
            assert captured.json()["status"] == "captured", captured.text
            done += 1
        return done

    async with httpx.AsyncClient(transport=live.transport, base_url="http://probe") as http:
        await pairs(http, await codes(30))  # warm: caches, prepared statements
        batch = await codes(PAIRS)
        cpu, wall = time.process_time(), time.perf_counter()
        assert await pairs(http, batch) == PAIRS
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(
            f"\ntill in-process: {PAIRS} pairs, {1000 * cpu / PAIRS:.2f} ms CPU a pair"
            f" in this process, {1000 * wall / PAIRS:.2f} ms wall a pair (sequential)"
        )
        batch = await codes(PAIRS)
        profile = cProfile.Profile()
        profile.enable()
        assert await pairs(http, batch) == PAIRS
        profile.disable()
    stats = pstats.Stats(profile)
    by_package: collections.Counter[str] = collections.Counter()
    total = 0.0
    for (path, _line, _name), (_cc, _nc, own, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        total += own
        parts = path.replace("\\", "/").split("/")
        if "site-packages" in parts:
            package = parts[parts.index("site-packages") + 1]
        elif "service" in parts:
            package = "service/" + parts[parts.index("service") + 1]
        elif path.startswith("~") or path == "~":
            package = "builtins (C)"
        else:
            package = "stdlib: " + parts[-1]
        by_package[package] += own
    print(f"own time by package under cProfile (total {total:.2f} s for {PAIRS} pairs):")
    for package, own in by_package.most_common(14):
        print(f"  {100 * own / total:5.1f}%  {package}")
    print("top functions by own time:")
    stats.sort_stats("tottime").print_stats(18)
