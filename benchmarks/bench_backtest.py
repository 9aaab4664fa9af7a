"""Benchmark: a back-test over 1,000,000 stored credits, against a plain SELECT of the same rows.

Run (from the repository root; `make bench-backtest` does the same):

    .venv/bin/python benchmarks/bench_backtest.py [--database-url URL] [--events 1000000]

Creates a fresh database ``carbon_points_bench_backtest_<pid>`` on the server of
``--database-url`` (default: $DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/test),
migrates it to head (which files the shipped methodology library), and drops it at the end
unless ``--keep``.

Seeding, in a child process (so the back-test's peak RSS below is its own): ``--events``
metro trips by ``--participants`` riders over ``--days`` days, in occurrence order. Each is
evaluated by the engine under ``transit.metro`` v1 with the cap usage its rider has so far, as
crediting does, so the stored credits are exactly what the service would have stored (the
back-test's mismatch count proves it: it must be 0). Rows are written with COPY, 100,000 at a
time: the partner events, then their credits.

Then, timed in this process:

  (a) the floor: a plain SELECT of the same columns of the same rows, in the same order,
      streamed through a server-side cursor, JSON columns decoded; nothing else;
  (b) the back-test: `service.methodologies.backtest.backtest`, the function the API and the
      CLI call, of a draft (the metro factor 46.7 -> 50 g/km) over the whole window.

Printed: events/s and wall time of each, the ratio of (b) to (a), and the process's peak RSS
before and after (b).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

# Runnable as `python benchmarks/bench_backtest.py` from a checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg

from benchmarks._harness import database_url_for, describe_machine, drop, recreate
from points_rules import Action, Methodology, Usage, evaluate, parse_methodology
from service import migrations
from service.crediting.decide import jsonable_inputs
from service.db import create_engine, create_sessionmaker
from service.embedded import to_asyncpg_dsn
from service.methodologies.backtest import backtest
from service.methodologies.service import library_sources, sync_library

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
CHUNK = 100_000
PARTNER_ID = uuid.UUID("00000000-0000-4000-8000-00000000be01")
WINDOW_END = datetime(2026, 11, 1, tzinfo=UTC)

EVENT_COLUMNS = (
    "id",
    "partner_id",
    "external_id",
    "content_hash",
    "action_type",
    "occurred_at",
    "received_at",
    "subject_hash",
    "region",
    "quantities",
    "status",
    "participant_id",
    "methodology_id",
    "methodology_version",
    "grams",
    "points",
    "reasons",
)
CREDIT_COLUMNS = (
    "event_id",
    "participant_id",
    "partner_id",
    "action_type",
    "occurred_at",
    "received_at",
    "region",
    "methodology_id",
    "methodology_version",
    "inputs",
    "usage_before",
    "status",
    "grams",
    "points",
)


def metro() -> Methodology:
    source = dict(library_sources())["transit.metro.yaml"]
    return parse_methodology(source, "transit.metro.yaml")


def draft() -> Methodology:
    source = dict(library_sources())["transit.metro.yaml"]
    changed = source.replace("version: 1", "version: 2", 1).replace(
        "    value: 46.7\n", "    value: 50\n", 1
    )
    return parse_methodology(changed, "draft.yaml")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- seeding (a child process) ------------------------------------------------------------------


async def seed(database_url: str, events: int, participants: int, days: int, seed: int) -> None:
    rng = random.Random(seed)
    m = metro()
    riders = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(participants)]
    start = WINDOW_END - timedelta(days=days)
    step = timedelta(days=days) / events
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        await conn.execute(
            "INSERT INTO partners (id, code, name, kind, allowed_action_types) "
            "VALUES ($1, 'bench-metro', 'Bench Metro', 'transit', ARRAY['transit.metro'])",
            PARTNER_ID,
        )
        await conn.execute(
            "INSERT INTO participants (id, kind, display_name) "
            "SELECT unnest($1::uuid[]), 'citizen', 'rider'",
            riders,
        )
        usage: dict[uuid.UUID, dict[str, Usage]] = {}
        began = time.perf_counter()
        for first in range(0, events, CHUNK):
            event_rows, credit_rows = [], []
            for n in range(first, min(first + CHUNK, events)):
                event_id = n + 1
                rider = riders[rng.randrange(participants)]
                occurred = start + step * n
                received = occurred + timedelta(seconds=rng.randrange(5, 600))
                distance = rng.randrange(1000, 20000)
                quantities = {"distance_m": str(distance), "duration_s": "1800"}
                action = Action(
                    "transit.metro",
                    occurred,
                    received,
                    {"distance_m": Decimal(distance), "duration_s": Decimal(1800)},
                    None,
                )
                mine = usage.setdefault(rider, {})
                outcome = evaluate(m, action, mine)
                before = {k: mine.get(k, Usage(0, 0)) for k in outcome.usage_keys}
                for key, used in before.items():
                    mine[key] = Usage(used.grams + outcome.grams, used.points + outcome.points)
                reasons = json.dumps(
                    [{"code": r.code, "message": r.message} for r in outcome.reasons]
                )
                event_rows.append(
                    (
                        event_id,
                        PARTNER_ID,
                        f"trip-{event_id}",
                        event_id.to_bytes(32, "big"),
                        "transit.metro",
                        occurred,
                        received,
                        rider.bytes * 2,
                        None,
                        json.dumps(quantities),
                        outcome.status,
                        rider,
                        m.id,
                        m.version,
                        outcome.grams,
                        outcome.points,
                        reasons,
                    )
                )
                credit_rows.append(
                    (
                        event_id,
                        rider,
                        PARTNER_ID,
                        "transit.metro",
                        occurred,
                        received,
                        None,
                        m.id,
                        m.version,
                        json.dumps(jsonable_inputs(outcome.inputs)),
                        json.dumps({k: [u.grams, u.points] for k, u in before.items()}),
                        outcome.status,
                        outcome.grams,
                        outcome.points,
                    )
                )
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "partner_events", records=event_rows, columns=EVENT_COLUMNS
                )
                await conn.copy_records_to_table(
                    "credits", records=credit_rows, columns=CREDIT_COLUMNS
                )
            done = first + len(event_rows)
            print(f"  seeded {done:,} ({time.perf_counter() - began:.0f} s)", flush=True)
        await conn.execute("ANALYZE partner_events")
        await conn.execute("ANALYZE credits")
    finally:
        await conn.close()


# --- timed phases --------------------------------------------------------------------------------


FLOOR_SQL = (
    "SELECT event_id, participant_id, action_type, occurred_at, received_at, region, "
    "methodology_id, methodology_version, inputs, usage_before, status, grams, points "
    "FROM credits WHERE methodology_id = $1 AND occurred_at >= $2 AND occurred_at < $3 "
    "ORDER BY event_id"
)


async def floor(database_url: str, start: datetime, end: datetime) -> tuple[int, float]:
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        began = time.perf_counter()
        rows = 0
        async with conn.transaction(readonly=True):
            async for row in conn.cursor(FLOOR_SQL, "transit.metro", start, end, prefetch=5000):
                json.loads(row["inputs"])
                json.loads(row["usage_before"])
                rows += 1
        return rows, time.perf_counter() - began
    finally:
        await conn.close()


async def run_backtest(
    database_url: str, start: datetime, end: datetime, batch: int
) -> tuple[int, int, float]:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            began = time.perf_counter()
            report = await backtest(session, draft(), start, end, batch=batch)
            seconds = time.perf_counter() - began
            await session.rollback()
    finally:
        await engine.dispose()
    return report.events, report.mismatches, seconds


async def prepare(server_url: str, name: str) -> str:
    database_url = await recreate(server_url, name)
    await asyncio.to_thread(migrations.upgrade, database_url)
    engine = create_engine(database_url, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            await sync_library(session)
    finally:
        await engine.dispose()
    return database_url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--participants", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--batch", type=int, default=5000, help="the back-test's page size")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--seed-into", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.seed_into:
        asyncio.run(seed(args.seed_into, args.events, args.participants, args.days, args.seed))
        return 0

    name = f"carbon_points_bench_backtest_{os.getpid()}"
    server_url = database_url_for(args.database_url, "postgres")
    print(f"machine: {describe_machine()}")
    database_url = asyncio.run(prepare(server_url, name))
    try:
        began = time.perf_counter()
        print(f"seeding {args.events:,} credits ({args.participants:,} riders, {args.days} days)")
        child = [sys.executable, __file__, "--seed-into", database_url]
        child += ["--events", str(args.events), "--participants", str(args.participants)]
        child += ["--days", str(args.days), "--seed", str(args.seed)]
        subprocess.run(child, check=True)
        print(f"seeded in {time.perf_counter() - began:.0f} s")
        start, end = WINDOW_END - timedelta(days=args.days), WINDOW_END
        rows, floor_seconds = asyncio.run(floor(database_url, start, end))
        print(
            f"(a) floor, plain SELECT streamed: {rows:,} rows in {floor_seconds:.1f} s, "
            f"{rows / floor_seconds:,.0f} rows/s"
        )
        rss_before = peak_rss_mib()
        measured = asyncio.run(run_backtest(database_url, start, end, args.batch))
        events, mismatches, seconds = measured
        rss_after = peak_rss_mib()
        print(
            f"(b) back-test: {events:,} events in {seconds:.1f} s, {events / seconds:,.0f} "
            f"events/s, {mismatches} mismatches; peak RSS {rss_before:.0f} MiB before, "
            f"{rss_after:.0f} MiB after"
        )
        print(f"back-test / floor: {(events / seconds) / (rows / floor_seconds):.2f} of the floor")
        if events != args.events or mismatches or rows != args.events:
            print("FAILED: every stored credit must be read and reproduced", file=sys.stderr)
            return 1
    finally:
        if not args.keep:
            asyncio.run(drop(server_url, name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
