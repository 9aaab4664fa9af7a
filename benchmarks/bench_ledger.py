"""Benchmark: credits per second through the ledger, against a floor of hand-written SQL.

Run (from the repository root):

    .venv/bin/python benchmarks/bench_ledger.py [--database-url URL] [--participants 5000]

Creates a fresh database ``carbon_points_bench_<pid>`` on the server of ``--database-url``
(default: $DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/test), migrates it to head,
and drops it at the end. A warm-up (not timed) credits every participant of the pool once, which
creates their POINTS and GCO2E accounts. Then it times:

  (a) service.credit, 1 credit per database transaction, sequential;
  (b) service.credit, 1 credit per transaction, ``--tasks`` concurrent tasks (pool ``--pool``);
  (c) service.credit, ``--batch`` credits per transaction (distinct participants per batch);
  (d) the floor: the same logical rows per batch, written by hand-written SQL (``unnest``
      arrays) over a raw asyncpg connection, one transaction per batch, with the schema's
      triggers in place;
  (e) the floor at 1 credit per transaction.

The floor writes the same rows as the service: one ledger_transactions row with the canonical
request JSON, 2 POINTS and 2 GCO2E postings with the next account_seq of each account, one lot and
its 'open' movement per credit, and the new balances and chain heads of the touched accounts. It
looks up and locks the accounts by code (FOR NO KEY UPDATE, ascending id) like the service does,
but it does NOT compute the hash chain: every chain_hash it writes is 32 random bytes. So
``verify_ledger`` runs after the service phases and before the floor (the floor's rows would fail
the chain check by construction).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Runnable as `python benchmarks/bench_ledger.py` from a checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import orjson
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service import migrations
from service.db import create_engine, create_sessionmaker
from service.embedded import to_asyncpg_dsn
from service.ledger import repository as repo
from service.ledger.schemas import CreditRequest
from service.ledger.service import credit
from service.ledger.verify import verify_ledger

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
ORIGIN = "bench.metro"
VALIDITY = timedelta(days=730)


@dataclass(slots=True)
class Figure:
    label: str
    credits: int
    transactions: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.credits / self.seconds

    @property
    def ms_per_transaction(self) -> float:
        return 1000 * self.seconds / self.transactions


class Requests:
    """Fresh credits like metro trips: 300-900 points and grams, expiring in 730 days."""

    def __init__(self, participants: Sequence[uuid.UUID], seed: int) -> None:
        self.participants = list(participants)
        self.rng = random.Random(seed)
        self.run = uuid.uuid4().hex[:8]
        self.counter = 0

    def one(self, participant: uuid.UUID, now: datetime) -> CreditRequest:
        self.counter += 1
        return CreditRequest(
            origin=ORIGIN,
            key=f"{self.run}-{self.counter:08d}",
            participant_id=participant,
            points=self.rng.randint(300, 900),
            grams=self.rng.randint(300, 900),
            expires_at=now + VALIDITY,
            credit_id=str(uuid.UUID(int=self.rng.getrandbits(128))),
            methodology_id="transit.metro",
            methodology_version=1,
        )

    def batches(self, count: int, size: int) -> list[list[CreditRequest]]:
        """`count` batches of `size` credits, each to distinct participants (a random sample)."""
        now = datetime.now(UTC)
        return [
            [self.one(p, now) for p in self.rng.sample(self.participants, size)]
            for _ in range(count)
        ]


# --- the service -------------------------------------------------------------------------------


async def service_batch(
    sessionmaker: async_sessionmaker[AsyncSession], batch: list[CreditRequest]
) -> None:
    async with sessionmaker() as session, session.begin():
        results = await credit(session, batch)
    if len(results) != len(batch) or any(r.status != "created" for r in results):
        raise RuntimeError("a benchmark credit was not created")


async def run_sequential(
    label: str,
    write: Callable[[list[CreditRequest]], Awaitable[None]],
    batches: list[list[CreditRequest]],
) -> Figure:
    started = time.perf_counter()
    for batch in batches:
        await write(batch)
    elapsed = time.perf_counter() - started
    return Figure(label, sum(len(b) for b in batches), len(batches), elapsed)


async def run_concurrent(
    label: str,
    write: Callable[[list[CreditRequest]], Awaitable[None]],
    batches: list[list[CreditRequest]],
    tasks: int,
) -> Figure:
    queue = list(reversed(batches))

    async def worker() -> None:
        while queue:
            await write(queue.pop())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    elapsed = time.perf_counter() - started
    return Figure(label, sum(len(b) for b in batches), len(batches), elapsed)


# --- the floor: hand-written SQL ---------------------------------------------------------------

_INSERT_TRANSACTIONS = """
INSERT INTO ledger_transactions (origin, idempotency_key, kind, request)
SELECT o, k, 'credit', r::jsonb FROM unnest($1::text[], $2::text[], $3::text[]) AS t(o, k, r)
ORDER BY o, k
ON CONFLICT (origin, idempotency_key) DO NOTHING
RETURNING idempotency_key, id
"""
_LOCK_ACCOUNTS = """
SELECT id, code, posted, chain_seq FROM ledger_accounts WHERE code = ANY($1::text[])
ORDER BY id FOR NO KEY UPDATE
"""
_INSERT_POSTINGS = """
INSERT INTO ledger_postings (transaction_id, account_id, asset, amount, account_seq, chain_hash)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[],
                     $6::bytea[])
"""
_INSERT_LOTS_AND_MOVEMENTS = """
WITH lots AS (
    INSERT INTO ledger_lots (account_id, transaction_id, amount, remaining, expires_at)
    SELECT a, t, n, n, e FROM unnest($1::bigint[], $2::bigint[], $3::bigint[],
                                     $4::timestamptz[]) AS u(a, t, n, e)
    RETURNING id, transaction_id, amount
)
INSERT INTO ledger_lot_movements (lot_id, kind, amount, transaction_id)
SELECT id, 'open', amount, transaction_id FROM lots
"""
_SAVE_ACCOUNTS = """
UPDATE ledger_accounts AS a SET posted = u.posted, chain_seq = u.seq, chain_hash = u.hash
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[]) AS u(id, posted, seq, hash)
WHERE a.id = u.id
"""


async def floor_batch(conn: asyncpg.Connection, batch: list[CreditRequest]) -> None:
    """One database transaction writing the rows service.credit writes for `batch`."""
    shard = secrets.randbelow(repo.ISSUANCE_SHARDS)
    issue_points = repo.issuance_account_code("POINTS", shard)
    issue_grams = repo.issuance_account_code("GCO2E", shard)
    codes = [issue_points, issue_grams]
    for r in batch:
        codes.append(repo.participant_account_code(r.participant_id, "POINTS"))
        codes.append(repo.participant_account_code(r.participant_id, "GCO2E"))
    async with conn.transaction():
        # Idempotency keys first, then account locks: the service's lock order.
        inserted = await conn.fetch(
            _INSERT_TRANSACTIONS,
            [r.origin for r in batch],
            [r.key for r in batch],
            [orjson.dumps(r.content()).decode() for r in batch],
        )
        tx_ids = {row["idempotency_key"]: row["id"] for row in inserted}
        if len(tx_ids) != len(batch):
            raise RuntimeError("floor: an idempotency key already existed")
        accounts = {
            row["code"]: [row["id"], row["posted"], row["chain_seq"], b""]
            for row in await conn.fetch(_LOCK_ACCOUNTS, codes)
        }
        p_tx: list[int] = []
        p_account: list[int] = []
        p_asset: list[str] = []
        p_amount: list[int] = []
        p_seq: list[int] = []
        p_hash: list[bytes] = []

        def post(tx: int, code: str, asset: str, amount: int) -> None:
            state = accounts[code]
            state[1] += amount
            state[2] += 1
            state[3] = secrets.token_bytes(32)  # NOT the real chain hash
            p_tx.append(tx)
            p_account.append(state[0])
            p_asset.append(asset)
            p_amount.append(amount)
            p_seq.append(state[2])
            p_hash.append(state[3])

        lot_account: list[int] = []
        lot_tx: list[int] = []
        lot_amount: list[int] = []
        lot_expiry: list[datetime] = []
        for r in sorted(batch, key=lambda r: (r.origin, r.key)):
            tx = tx_ids[r.key]
            points_code = repo.participant_account_code(r.participant_id, "POINTS")
            post(tx, issue_points, "POINTS", -r.points)
            post(tx, points_code, "POINTS", r.points)
            post(tx, issue_grams, "GCO2E", -r.grams)
            post(tx, repo.participant_account_code(r.participant_id, "GCO2E"), "GCO2E", r.grams)
            lot_account.append(accounts[points_code][0])
            lot_tx.append(tx)
            lot_amount.append(r.points)
            lot_expiry.append(r.expires_at)
        await conn.execute(_INSERT_POSTINGS, p_tx, p_account, p_asset, p_amount, p_seq, p_hash)
        await conn.execute(_INSERT_LOTS_AND_MOVEMENTS, lot_account, lot_tx, lot_amount, lot_expiry)
        touched = sorted(accounts.values())
        await conn.execute(
            _SAVE_ACCOUNTS,
            [s[0] for s in touched],
            [s[1] for s in touched],
            [s[2] for s in touched],
            [s[3] for s in touched],
        )


# --- orchestration -----------------------------------------------------------------------------


async def admin(server_url: str, statement: str) -> None:
    parsed = make_url(to_asyncpg_dsn(server_url))
    conn = await asyncpg.connect(parsed.set(database="postgres").render_as_string(False))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def measure(args: argparse.Namespace, database_url: str) -> list[Figure]:
    rng = random.Random(args.seed)
    participants = [
        uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(args.participants)
    ]
    requests = Requests(participants, args.seed)
    engine: AsyncEngine = create_engine(database_url, pool_size=args.pool)
    sessionmaker = create_sessionmaker(engine)

    async def service(batch: list[CreditRequest]) -> None:
        await service_batch(sessionmaker, batch)

    figures: list[Figure] = []
    try:
        # Warm-up (not timed): every participant credited once, creating their accounts.
        shuffled = rng.sample(participants, len(participants))
        now = datetime.now(UTC)
        for start in range(0, len(shuffled), args.batch):
            await service([requests.one(p, now) for p in shuffled[start : start + args.batch]])
        await service_batch(sessionmaker, requests.batches(1, 1)[0])

        singles = requests.batches(args.singles, 1)
        figures.append(await run_sequential("(a) service, 1/tx, sequential", service, singles))
        print(f"  {figures[-1].label}: done", file=sys.stderr)
        singles = requests.batches(args.singles, 1)
        label = f"(b) service, 1/tx, {args.tasks} tasks"
        figures.append(await run_concurrent(label, service, singles, args.tasks))
        print(f"  {figures[-1].label}: done", file=sys.stderr)
        batches = requests.batches(args.batches, args.batch)
        label = f"(c) service, {args.batch}/tx"
        figures.append(await run_sequential(label, service, batches))
        print(f"  {figures[-1].label}: done", file=sys.stderr)

        if args.skip_verify:
            print("verify_ledger: skipped (--skip-verify)")
        else:
            started = time.perf_counter()
            report = await verify_ledger(engine)
            print(
                f"verify_ledger on the service-written data: "
                f"{'OK' if report.ok else 'VIOLATIONS'} ({report.transactions:,} transactions, "
                f"{report.postings:,} postings, {report.accounts:,} accounts) "
                f"in {time.perf_counter() - started:.1f} s"
            )
            for violation in report.violations[:10]:
                print(f"  {violation}")
    finally:
        await engine.dispose()

    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:

        async def floor(batch: list[CreditRequest]) -> None:
            await floor_batch(conn, batch)

        await floor(requests.batches(1, args.batch)[0])  # warm the prepared statements
        batches = requests.batches(args.batches, args.batch)
        label = f"(d) floor SQL, {args.batch}/tx"
        figures.append(await run_sequential(label, floor, batches))
        print(f"  {figures[-1].label}: done", file=sys.stderr)
        if args.singles:
            singles = requests.batches(args.singles, 1)
            figures.append(await run_sequential("(e) floor SQL, 1/tx", floor, singles))
    finally:
        await conn.close()
    return figures


def describe_machine() -> str:
    try:
        psql = subprocess.run(
            ["psql", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        psql = "psql not found"
    return (
        f"{platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}, "
        f"asyncpg {asyncpg.__version__}, {psql}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_URL)
    parser.add_argument("--participants", type=int, default=5000)
    parser.add_argument("--singles", type=int, default=2000, help="credits in (a), (b), (e)")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-verify", action="store_true")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args()
    if args.batch > args.participants:
        parser.error("--batch must not exceed --participants (distinct participants per batch)")

    name = f"carbon_points_bench_{os.getpid()}"
    parsed = make_url(to_asyncpg_dsn(args.database_url))
    database_url = parsed.set(database=name).render_as_string(False)
    print(f"machine: {describe_machine()}")
    print(f"database: {parsed.set(database=name).render_as_string(True)} (fresh, migrated)")
    asyncio.run(admin(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(admin(args.database_url, f'CREATE DATABASE "{name}"'))
    try:
        migrations.upgrade(database_url)
        figures = asyncio.run(measure(args, database_url))
    finally:
        if args.keep_database:
            print(f"kept database {name}")
        else:
            asyncio.run(admin(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    print()
    print(f"{'case':<34} {'credits':>8} {'db tx':>6} {'seconds':>8} {'credits/s':>10} {'ms/tx':>8}")
    for f in figures:
        print(
            f"{f.label:<34} {f.credits:>8,} {f.transactions:>6,} {f.seconds:>8.2f} "
            f"{f.per_second:>10,.0f} {f.ms_per_transaction:>8.2f}"
        )
    by_prefix = {f.label[:3]: f for f in figures}
    if "(c)" in by_prefix and "(d)" in by_prefix:
        ratio = by_prefix["(c)"].per_second / by_prefix["(d)"].per_second
        verdict = "meets" if ratio >= 0.5 else "is BELOW"
        print(f"\nbatch path / floor = (c)/(d) = {ratio:.0%}  ({verdict} the 50% target)")
    print(
        "floor: hand-written SQL over asyncpg with unnest arrays, same rows and triggers; it does"
        "\nnot compute the hash chain (chain_hash = 32 random bytes), so verify ran before it."
    )


if __name__ == "__main__":
    main()
