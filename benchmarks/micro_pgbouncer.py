"""Micro-benchmark: one parameterised statement's latency direct and through PgBouncer.

Run (from the repository root; Debian's pgbouncer installed):

    .venv/bin/python benchmarks/micro_pgbouncer.py [--statements 2000] [--rounds 5]

Three ways to send `SELECT $1::bigint + 1` one after another on one connection, interleaved
round robin (`--rounds` rounds of `--statements` statements each, the median per way):

``direct, cached``
    asyncpg straight to PostgreSQL with its statement cache (the service without
    CARBON_POINTS_DB_PGBOUNCER): one round trip a statement once prepared.
``direct, uncached``
    the same with `statement_cache_size=0` (what CARBON_POINTS_DB_PGBOUNCER sets), still
    direct: an unnamed statement is prepared (Parse, Describe, Sync) and then parsed again
    with its Bind and Execute, so two round trips.
``pgbouncer, uncached``
    the same through a PgBouncer in transaction pooling mode started for the run: the two
    round trips, each through PgBouncer.

The difference between the first two is the cost of giving up prepared statements; between
the last two, PgBouncer's own hop. Prints microseconds per statement.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg

from service.embedded import to_asyncpg_dsn
from tests.scaling_servers import PgBouncerServer, missing_pgbouncer


async def per_statement(dsn: str, cache: int, count: int) -> float:
    connection = await asyncpg.connect(dsn, statement_cache_size=cache)
    try:
        for i in range(50):  # warm up
            await connection.fetchval("SELECT $1::bigint + 1", i)
        started = time.perf_counter()
        for i in range(count):
            await connection.fetchval("SELECT $1::bigint + 1", i)
        return (time.perf_counter() - started) / count * 1e6
    finally:
        await connection.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--statements", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if reason := missing_pgbouncer(for_tests=False):
        raise SystemExit(reason)
    direct = to_asyncpg_dsn(args.database_url)
    bouncer = PgBouncerServer(
        Path(tempfile.mkdtemp(prefix="micro-pgbouncer-")), args.database_url, pool_size=4
    ).start()
    database = direct.rsplit("/", 1)[1].split("?", 1)[0]
    ways = {
        "direct, cached": (direct, 100),
        "direct, uncached": (direct, 0),
        "pgbouncer, uncached": (bouncer.url(database), 0),
    }
    results: dict[str, list[float]] = {name: [] for name in ways}
    try:
        for _ in range(args.rounds):
            for name, (dsn, cache) in ways.items():
                results[name].append(await per_statement(dsn, cache, args.statements))
    finally:
        bouncer.stop()
    print(f"{args.rounds} rounds x {args.statements} statements; microseconds per statement")
    for name, values in results.items():
        rounds = " ".join(f"{v:.0f}" for v in values)
        print(f"  {name:<20} median {statistics.median(values):>6.0f}   ({rounds})")


if __name__ == "__main__":
    asyncio.run(main())
