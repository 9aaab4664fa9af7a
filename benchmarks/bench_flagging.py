"""The flag rules' cost on the crediting path, in one process: the same batches credited with
every rule off (A) and on (B), interleaved.

    PYTHONPATH=. DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python benchmarks/bench_flagging.py [--rounds 8] [--batches 6] [--batch 500]

`crediting.ingest` on one connection, no HTTP, so the noise of a shared machine weighs less
than in `bench_crediting.py --flag-rules` (which measures the same over signed HTTP). Each
round credits `--batches` batches of `--batch` metro trips (bench_crediting's generator:
20,000 linked riders, trips in the last hour) once with the rules off and once with every
rule on at its default thresholds (the partner-volume rule on with no surge: one partner,
no history), in an order that alternates. Prints each round's events/s and CPU per event, the
B/A ratio per round, their median, and how many credits the rules flagged. The generator's
trips start at random in the last hour, so about a third of a rider's trips overlap another
and the overlap rule flags them (a heavy case: each flagged credit also writes a hold and a
flag); `--unbroken` raises the thresholds so nothing is flagged, which measures the rules'
reads and evaluation alone. The database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from benchmarks._harness import admin, database_url_for
from benchmarks.bench_crediting import EventMaker, enable_flag_rules, flagged_share, populate
from service import migrations
from service.crediting import service as crediting
from service.crediting.flags import FlagRulesCache
from service.crediting.schemas import EventIn
from service.db import create_engine, create_sessionmaker
from service.embedded import to_asyncpg_dsn
from service.methodologies.service import RegistryCache
from service.partners.auth import PartnerContext
from service.review.rules import OFF, FlagRules

# --unbroken: every rule on, at thresholds this traffic never breaks, so every event is
# evaluated (the same reads) and nothing is flagged: the evaluation's cost alone.
UNBROKEN_SQL = """
UPDATE review_rules SET params = params || '{"max_trips": 1000}'::jsonb WHERE rule = 'velocity';
UPDATE review_rules SET params = params || '{"tolerance_seconds": 3600}'::jsonb
WHERE rule = 'overlap';
"""


TICK = os.sysconf("SC_CLK_TCK")


async def backend_cpu(monitor: asyncpg.Connection, database: str) -> float:
    """CPU seconds (user + system) used so far by PostgreSQL's backends connected to
    `database`, from /proc: what the database spent on this benchmark's statements."""
    total = 0.0
    for (pid,) in await monitor.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1", database
    ):
        try:
            fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


async def measure(
    args: argparse.Namespace, url: str, secrets_env: dict[str, str], server_url: str, name: str
) -> None:
    setup = await populate(url, secrets_env, args.participants)
    await enable_flag_rules(url)
    if args.unbroken:
        conn = await asyncpg.connect(to_asyncpg_dsn(url))
        try:
            await conn.execute(UNBROKEN_SQL)
        finally:
            await conn.close()
    engine = create_engine(url, pool_size=2)
    monitor = await asyncpg.connect(to_asyncpg_dsn(server_url))
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker() as session:
            registry = await RegistryCache().get(session)
            on: FlagRules = await FlagRulesCache().refresh(session)
        assert on.velocity is not None
        assert on.overlap is not None
        assert on.travel is not None
        assert on.identity_churn is not None
        assert on.partner_volume is not None
        partner = PartnerContext(
            setup.partner_id,
            "bench-metro",
            "transit",
            frozenset({"transit.metro", "transit.bus"}),
            None,
            100_000,
            setup.key_id,
        )
        base = crediting.CreditingSettings(
            pepper=secrets_env["CARBON_POINTS_IDENTIFIER_PEPPER"], validity=timedelta(days=365)
        )
        modes = {"off": OFF, "on": on}
        makers = {name: EventMaker(setup.cards, args.seed, f"ev-{name}") for name in modes}

        async def run(mode: str) -> tuple[float, float, float, int]:
            settings = crediting.CreditingSettings(base.pepper, base.validity, flags=modes[mode])
            events = [
                [EventIn.model_validate(makers[mode]().to_json()) for _ in range(args.batch)]
                for _ in range(args.batches)
            ]
            db_cpu = await backend_cpu(monitor, name)
            wall, cpu = time.perf_counter(), time.process_time()
            credited = 0
            for batch in events:
                async with sessionmaker() as session, session.begin():
                    outcomes = await crediting.ingest(
                        session, registry, settings, partner, batch, datetime.now(UTC)
                    )
                credited += sum(1 for o in outcomes if o.status in ("credited", "capped"))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            return wall, cpu, await backend_cpu(monitor, name) - db_cpu, credited

        await run("off")  # warm-up: plans, caches
        await run("on")
        ratios: list[float] = []
        cpu_ratios: list[float] = []
        for round_ in range(args.rounds):
            order = ["off", "on"] if round_ % 2 == 0 else ["on", "off"]
            rate: dict[str, float] = {}
            per_event: dict[str, float] = {}
            for mode in order:
                wall, cpu, db, credited = await run(mode)
                rate[mode] = credited / wall
                per_event[mode] = 1e6 * (cpu + db) / max(credited, 1)
                print(
                    f"r{round_ + 1} rules {mode:<3} {rate[mode]:8,.0f} credited/s;"
                    f" CPU per event: {1e6 * cpu / max(credited, 1):5.0f} us here"
                    f" + {1e6 * db / max(credited, 1):5.0f} us PostgreSQL"
                    f" = {per_event[mode]:5.0f} us",
                    flush=True,
                )
            ratios.append(rate["on"] / rate["off"])
            cpu_ratios.append(per_event["off"] / per_event["on"])
        print(
            f"\nrules on / off, throughput per round: {' '.join(f'{r:.3f}' for r in ratios)};"
            f" median {statistics.median(ratios):.3f}"
        )
        print(
            "rules off / on, CPU per event (this process + PostgreSQL), per round: "
            f"{' '.join(f'{r:.3f}' for r in cpu_ratios)}; median "
            f"{statistics.median(cpu_ratios):.3f}  (the throughput a CPU-bound box keeps)"
        )
        print(await flagged_share(url))
    finally:
        await monitor.close()
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--participants", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--unbroken",
        action="store_true",
        help="thresholds this traffic never breaks: the rules' evaluation alone, no flags",
    )
    args = parser.parse_args()
    name = f"carbon_points_bench_flagging_{os.getpid()}"
    server_url = args.database_url
    secrets_env = {
        "CARBON_POINTS_PARTNER_SECRET_KEY": secrets.token_urlsafe(48),
        "CARBON_POINTS_IDENTIFIER_PEPPER": secrets.token_urlsafe(48),
        "CARBON_POINTS_JWT_SIGNING_KEY": secrets.token_urlsafe(48),
    }
    asyncio.run(admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(admin(server_url, f'CREATE DATABASE "{name}"'))
    try:
        url = database_url_for(server_url, name)
        migrations.upgrade(url)
        asyncio.run(measure(args, url, secrets_env, server_url, name))
    finally:
        asyncio.run(admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
