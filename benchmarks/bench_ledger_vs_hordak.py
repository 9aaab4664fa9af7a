"""Benchmark: service.ledger credits beside django-hordak 2.x, interleaved in one run.

Run (from the repository root, after `pip install -e '.[peers]'`):

    .venv/bin/python benchmarks/bench_ledger_vs_hordak.py [--database-url URL] [--rounds 3]

Creates two fresh databases on the server of ``--database-url`` (default: $DATABASE_URL, else
postgresql://postgres@127.0.0.1:5432/test) and drops them at the end:

* ``carbon_points_bench_<pid>``, migrated to head by ``service.migrations.upgrade``; an untimed
  warm-up credits every participant once (500 per transaction), which creates their POINTS and
  GCO2E accounts, exactly as benchmarks/bench_ledger.py does;
* ``hordak_bench_<pid>``, migrated by Django's ``migrate`` (settings configured in code), with
  one issuance account and one account per participant, all in one currency (``XXX``); an
  untimed warm-up credits every participant once there too.

The same logical credits (participant, points) then go to both systems, case by case:

  (1) 1 credit per database transaction, sequential;
  (2) 1 credit per transaction, 8 concurrent writers (ours: 8 asyncio tasks on an engine with
      pool_size 10; hordak: 8 threads, each with its own Django connection);
  (3) 500 credits per transaction (distinct participants per batch);
  (3b) hordak only: 500 per transaction written with Django's ``bulk_create`` (hordak's models,
      DB triggers still run, ``Leg.save()``'s Python checks skipped), hordak's best batch path.

Ours: ``credit(session, [CreditRequest, ...], now=...)`` in ``async with sessionmaker() as s,
s.begin()``. Hordak: a Transaction and two Legs (debit the issuance account, credit the
participant's account) in ``transaction.atomic()``, the same INSERTs ``Account.transfer_to``
issues. Each case runs ``--rounds`` times; the two systems alternate which goes first; the
table shows medians. Per case: credits/s, client CPU per credit (``time.process_time`` of this
process, all threads), PostgreSQL backend CPU per credit (``/proc`` of the database's backends,
when the server is local), bytes per credit (growth of ``pg_total_relation_size`` summed over
every table of the system's database, indexes and TOAST included) and WAL bytes per credit
(``pg_current_wal_lsn``, cluster-wide: noisy if anything else writes to the server).

Defaults: ``--participants 5000 --singles 1000 --batches 6 --batch 500 --rounds 3 --tasks 8
--pool 10 --seed 7``; a run takes about 2 minutes on a quiet 2-core machine, most of it in
hordak's one-object-at-a-time batch case (3).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from random import Random
from typing import Any

# Runnable as `python benchmarks/bench_ledger_vs_hordak.py` from a checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from benchmarks.bench_ledger import ORIGIN, Requests, describe_machine
from service import migrations
from service.db import create_engine, create_sessionmaker
from service.embedded import to_asyncpg_dsn
from service.ledger.schemas import CreditRequest
from service.ledger.service import credit

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
CURRENCY = "XXX"  # ISO 4217 "no currency": points are not money
INSTALL_HINT = "pip install -e '.[peers]'"
OURS = "ours"
HORDAK = "hordak"

Batches = list[list[CreditRequest]]


def missing_peers() -> list[str]:
    wanted = {"django-hordak": "hordak", "django": "django", "psycopg": "psycopg"}
    return [name for name, module in wanted.items() if importlib.util.find_spec(module) is None]


# --- measurement -------------------------------------------------------------------------------


@dataclass(slots=True)
class Sample:
    system: str
    case: str
    round: int
    credits: int
    seconds: float
    cpu: float
    server_cpu: float | None
    bytes_by_table: dict[str, int]
    wal: int

    @property
    def bytes(self) -> int:
        return sum(self.bytes_by_table.values())


@dataclass(slots=True)
class Snapshot:
    wall: float
    cpu: float
    sizes: dict[str, int]
    wal: int
    backends: dict[int, int] | None


class Probe:
    """A side connection to one system's database: table sizes, WAL position, backend CPU."""

    _SIZES = """
        SELECT c.relname, pg_total_relation_size(c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    """
    _BACKENDS = """
        SELECT pid FROM pg_stat_activity WHERE datname = current_database()
        AND pid <> pg_backend_pid() AND backend_type = 'client backend'
    """

    def __init__(self, conninfo: str) -> None:
        import psycopg

        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.ticks = os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.conn.close()

    def execute(self, statement: str) -> None:
        self.conn.execute(statement)

    def scalar(self, query: str) -> Any:
        row = self.conn.execute(query).fetchone()
        return None if row is None else row[0]

    def snapshot(self) -> Snapshot:
        sizes = {str(r[0]): int(r[1]) for r in self.conn.execute(self._SIZES)}
        wal = int(self.scalar("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))
        pids = [int(r[0]) for r in self.conn.execute(self._BACKENDS)]
        backends = self._cpu(pids)
        return Snapshot(time.perf_counter(), time.process_time(), sizes, wal, backends)

    @staticmethod
    def _cpu(pids: Sequence[int]) -> dict[int, int] | None:
        """utime + stime (clock ticks) of each backend, or None if the server is not local."""
        ticks: dict[int, int] = {}
        for pid in pids:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
                    return None
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return None
            ticks[pid] = int(fields[11]) + int(fields[12])
        return ticks

    def sample(self, system: str, case: str, round_: int, credits: int, before: Snapshot) -> Sample:
        wall, cpu = time.perf_counter(), time.process_time()
        after = self.snapshot()
        server: float | None = None
        if before.backends is not None and after.backends is not None:
            used = sum(t - before.backends.get(pid, 0) for pid, t in after.backends.items())
            server = used / self.ticks
        grown = {
            name: size - before.sizes.get(name, 0)
            for name, size in after.sizes.items()
            if size != before.sizes.get(name, 0)
        }
        return Sample(
            system,
            case,
            round_,
            credits,
            wall - before.wall,
            cpu - before.cpu,
            server,
            grown,
            after.wal - before.wal,
        )


# --- ours: service.ledger ----------------------------------------------------------------------


class Ours:
    def __init__(self, database_url: str, pool: int) -> None:
        self.engine = create_engine(database_url, pool_size=pool)
        self.sessionmaker: async_sessionmaker[AsyncSession] = create_sessionmaker(self.engine)

    async def write(self, batch: list[CreditRequest]) -> None:
        async with self.sessionmaker() as session, session.begin():
            results = await credit(session, batch, now=datetime.now(UTC))
        if len(results) != len(batch) or any(r.status != "created" for r in results):
            raise RuntimeError("ours: a benchmark credit was not created")

    async def sequential(self, batches: Batches) -> None:
        for batch in batches:
            await self.write(batch)

    async def concurrent(self, batches: Batches, tasks: int) -> None:
        queue = deque(batches)

        async def worker() -> None:
            while queue:
                await self.write(queue.popleft())

        await asyncio.gather(*(worker() for _ in range(tasks)))

    async def close(self) -> None:
        await self.engine.dispose()


# --- hordak ------------------------------------------------------------------------------------


def configure_django(url: URL) -> None:
    import django  # type: ignore[import-untyped]
    from django.conf import settings  # type: ignore[import-untyped]

    settings.configure(
        DEBUG=False,  # True would keep every query in memory
        USE_TZ=True,
        TIME_ZONE="UTC",
        SECRET_KEY="bench-only",
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": url.database,
                "USER": url.username or "",
                "PASSWORD": url.password or "",
                "HOST": url.host or "",
                "PORT": str(url.port or ""),
                "CONN_MAX_AGE": None,  # keep each thread's connection for the whole run
            }
        },
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "mptt",
            "djmoney",
            "hordak",
        ],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        # Hordak's exchange-rate backend insists on a currency it knows; no leg uses it.
        HORDAK_INTERNAL_CURRENCY="EUR",
        DEFAULT_CURRENCY=CURRENCY,
        CURRENCIES=[CURRENCY],
    )
    django.setup()


class Hordak:
    """django-hordak 2.x in this process: migrate, make the accounts, write credits."""

    def __init__(self, url: URL, participants: Sequence[uuid.UUID]) -> None:
        configure_django(url)
        from django.core.management import call_command  # type: ignore[import-untyped]
        from django.db import transaction  # type: ignore[import-untyped]
        from hordak.models import Account, Leg, Transaction  # type: ignore[import-untyped]
        from moneyed import Money

        self.atomic = transaction.atomic
        self.Transaction: Any = Transaction
        self.Leg: Any = Leg
        self.Money: Any = Money
        call_command("migrate", verbosity=0, interactive=False)

        self.issuance: Any = Account.objects.create(
            name="Points issued", code="ISSUE", type="LI", currencies=[CURRENCY]
        )
        # Account.objects.create() per participant gives each a root of its own (tree_id n,
        # lft 1, rght 2) but takes 23-54 s for 5,000 (MPTT bookkeeping per insert). bulk_create
        # with those tree fields leaves the same rows; hordak's triggers still set full_code.
        base = int(self.issuance.tree_id)
        with transaction.atomic(), Account.objects.disable_mptt_updates():
            Account.objects.bulk_create(
                [
                    Account(
                        name=f"participant {p}",
                        code=f"P{i:05d}",
                        type="LI",
                        currencies=[CURRENCY],
                        tree_id=base + 1 + i,
                        lft=1,
                        rght=2,
                        level=0,
                    )
                    for i, p in enumerate(participants)
                ],
                batch_size=1000,
            )
        by_code = {a.code: a for a in Account.objects.exclude(pk=self.issuance.pk)}
        self.accounts: dict[uuid.UUID, Any] = {
            p: by_code[f"P{i:05d}"] for i, p in enumerate(participants)
        }

    def _objects(self, batch: list[CreditRequest]) -> None:
        # Account.transfer_to(issuance, amount) on the participant's account writes exactly
        # these three rows (credit self, debit to_account); written out here so the batch case
        # does not open a savepoint per credit (transfer_to is itself @atomic).
        with self.atomic():
            for r in batch:
                amount = self.Money(r.points, CURRENCY)
                tx = self.Transaction.objects.create(description=f"{r.origin}:{r.key}")
                self.Leg.objects.create(transaction=tx, account=self.issuance, debit=amount)
                self.Leg.objects.create(
                    transaction=tx, account=self.accounts[r.participant_id], credit=amount
                )

    def _bulk(self, batch: list[CreditRequest]) -> None:
        with self.atomic():
            txs = self.Transaction.objects.bulk_create(
                [self.Transaction(description=f"{r.origin}:{r.key}") for r in batch]
            )
            legs: list[Any] = []
            for tx, r in zip(txs, batch, strict=True):
                amount = self.Money(r.points, CURRENCY)
                legs.append(self.Leg(transaction=tx, account=self.issuance, debit=amount))
                legs.append(
                    self.Leg(transaction=tx, account=self.accounts[r.participant_id], credit=amount)
                )
            self.Leg.objects.bulk_create(legs)

    def sequential(self, batches: Batches) -> None:
        for batch in batches:
            self._objects(batch)

    def sequential_bulk(self, batches: Batches) -> None:
        for batch in batches:
            self._bulk(batch)


class Workers:
    """Long-lived threads, each with its own Django connection (opened before any timing)."""

    def __init__(self, hordak: Hordak, count: int) -> None:
        self.hordak = hordak
        self.queue: deque[list[CreditRequest]] = deque()
        self.go = [threading.Event() for _ in range(count)]
        self.done = threading.Barrier(count + 1)
        self.stop = False
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(count)
        ]
        for t in self.threads:
            t.start()
        self.run([])  # every thread connects once

    def _loop(self, index: int) -> None:
        from django.db import connection

        try:
            while True:
                self.go[index].wait()
                self.go[index].clear()
                if self.stop:
                    return
                try:
                    connection.ensure_connection()  # a no-op once connected
                    while True:
                        try:
                            batch = self.queue.popleft()
                        except IndexError:
                            break
                        self.hordak._objects(batch)
                except BaseException as exc:
                    self.errors.append(exc)
                self.done.wait()
        finally:
            connection.close()

    def run(self, batches: Batches) -> None:
        self.queue.extend(batches)
        for event in self.go:
            event.set()
        self.done.wait()
        if self.errors:
            raise RuntimeError("hordak worker failed") from self.errors[0]

    def close(self) -> None:
        self.stop = True
        for event in self.go:
            event.set()
        for t in self.threads:
            t.join()


# --- orchestration -----------------------------------------------------------------------------


@contextmanager
def databases(args: argparse.Namespace, names: Sequence[str]) -> Iterator[None]:
    import psycopg

    server = make_url(to_asyncpg_dsn(args.database_url)).set(database="postgres")
    with psycopg.connect(server.render_as_string(False), autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield
    finally:
        with psycopg.connect(server.render_as_string(False), autocommit=True) as conn:
            for name in names:
                if args.keep_database:
                    print(f"kept database {name}")
                else:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(slots=True)
class Run:
    samples: list[Sample] = field(default_factory=list)

    def median(self, system: str, case: str, value: Callable[[Sample], float | None]) -> float:
        values = [
            v
            for s in self.samples
            if s.system == system and s.case == case and (v := value(s)) is not None
        ]
        return statistics.median(values) if values else float("nan")


CASES = ("1", "2", "3", "3b")


def measure(args: argparse.Namespace, ours_url: str, hordak_url: URL) -> Run:
    rng = Random(args.seed)
    participants = [
        uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(args.participants)
    ]
    requests = Requests(participants, args.seed)
    run = Run()
    written = {OURS: 0, HORDAK: 0}

    started = time.perf_counter()
    hordak = Hordak(hordak_url, participants)
    print(f"  hordak: migrated, {len(participants) + 1:,} accounts", file=sys.stderr)
    with asyncio.Runner() as runner:
        ours = Ours(ours_url, args.pool)
        workers: Workers | None = None
        ours_probe = Probe(to_asyncpg_dsn(ours_url))
        hordak_probe = Probe(hordak_url.render_as_string(False))
        try:
            # Warm-up (not timed): every participant credited once in each system, 500 per
            # transaction (ours: creates the accounts), then both concurrent paths once.
            shuffled = rng.sample(participants, len(participants))
            now = datetime.now(UTC)
            warm = [
                [requests.one(p, now) for p in shuffled[i : i + args.batch]]
                for i in range(0, len(shuffled), args.batch)
            ]
            runner.run(ours.sequential(warm))
            hordak.sequential_bulk(warm)
            warm += requests.batches(4 * args.tasks, 1)
            runner.run(ours.concurrent(warm[-4 * args.tasks :], args.tasks))
            workers = Workers(hordak, args.tasks)
            workers.run(warm[-4 * args.tasks :])
            written[OURS] = written[HORDAK] = sum(len(b) for b in warm)
            for probe in (ours_probe, hordak_probe):
                probe.execute("VACUUM ANALYZE")
            print(f"  warm-up done in {time.perf_counter() - started:.0f} s", file=sys.stderr)

            for round_ in range(args.rounds):
                for index, case in enumerate(CASES):
                    if case in ("1", "2"):
                        work = requests.batches(args.singles, 1)
                    else:
                        work = requests.batches(args.batches, args.batch)
                    credits = sum(len(b) for b in work)
                    systems = [OURS, HORDAK] if (round_ + index) % 2 == 0 else [HORDAK, OURS]
                    if case == "3b":
                        systems = [HORDAK]
                    for system in systems:
                        probe = ours_probe if system == OURS else hordak_probe
                        before = probe.snapshot()
                        if system == OURS:
                            if case == "2":
                                runner.run(ours.concurrent(work, args.tasks))
                            else:
                                runner.run(ours.sequential(work))
                        elif case == "2":
                            workers.run(work)
                        elif case == "3b":
                            hordak.sequential_bulk(work)
                        else:
                            hordak.sequential(work)
                        run.samples.append(probe.sample(system, case, round_, credits, before))
                        written[system] += credits
                print(
                    f"  round {round_ + 1}/{args.rounds} done "
                    f"({time.perf_counter() - started:.0f} s)",
                    file=sys.stderr,
                )
            check(ours_probe, hordak_probe, written)
        finally:
            if workers is not None:
                workers.close()
            ours_probe.close()
            hordak_probe.close()
            runner.run(ours.close())
            from django.db import connections

            connections.close_all()
    return run


def check(ours_probe: Probe, hordak_probe: Probe, written: dict[str, int]) -> None:
    """Cheap sanity checks: every credit landed once in each system; hordak's legs balance."""
    ours_count = ours_probe.scalar(
        f"SELECT count(*) FROM ledger_transactions WHERE origin = '{ORIGIN}'"
    )
    hordak_count = hordak_probe.scalar("SELECT count(*) FROM hordak_transaction")
    unbalanced = hordak_probe.scalar(
        "SELECT coalesce(sum(credit), 0) - coalesce(sum(debit), 0) FROM hordak_leg"
    )
    ok = ours_count == written[OURS] and hordak_count == written[HORDAK] and unbalanced == 0
    print(
        f"check {'OK' if ok else 'FAILED'}: ours {ours_count:,} credit transactions "
        f"(expected {written[OURS]:,}), hordak {hordak_count:,} (expected {written[HORDAK]:,}), "
        f"hordak sum(credit) - sum(debit) = {unbalanced}"
    )
    if not ok:
        raise RuntimeError("a system did not store the credits it was given")


def load_average() -> str:
    try:
        return ", ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def fmt(value: float, spec: str) -> str:
    return "-" if value != value else format(value, spec)  # NaN -> "-"


def report(args: argparse.Namespace, run: Run) -> None:
    labels = {
        "1": "(1) 1/tx, sequential",
        "2": f"(2) 1/tx, {args.tasks} concurrent",
        "3": f"(3) {args.batch}/tx",
        "3b": f"(3b) {args.batch}/tx, hordak bulk_create",
    }

    def rate(s: Sample) -> float:
        return s.credits / s.seconds

    def cpu(s: Sample) -> float:
        return 1000 * s.cpu / s.credits

    def server(s: Sample) -> float | None:
        return None if s.server_cpu is None else 1000 * s.server_cpu / s.credits

    def size(s: Sample) -> float:
        return s.bytes / s.credits

    def wal(s: Sample) -> float:
        return s.wal / s.credits

    print()
    print(f"medians of {args.rounds} round(s); credits per case: ", end="")
    print(f"{args.singles:,} in (1) and (2), {args.batches * args.batch:,} in (3) and (3b)")
    print()
    head = f"{'case':<36} {'credits/s':>19} {'ours/':>7}"
    print(head + f" {'client CPU ms/cr':>17} {'server CPU ms/cr':>17}")
    print(
        f"{'':<36} {'ours':>9} {'hordak':>9} {'hordak':>7}"
        f" {'ours':>8} {'hordak':>8} {'ours':>8} {'hordak':>8}"
    )
    for case in CASES:
        ours_case = "3" if case == "3b" else case
        o_rate = run.median(OURS, ours_case, rate)
        h_rate = run.median(HORDAK, case, rate)
        o_text = "  (3)" if case == "3b" else fmt(o_rate, ",.0f")
        print(
            f"{labels[case]:<36} {o_text:>9} {fmt(h_rate, ',.0f'):>9} "
            f"{fmt(o_rate / h_rate, '.2f'):>7} "
            f"{fmt(run.median(OURS, case, cpu), '.3f'):>8} "
            f"{fmt(run.median(HORDAK, case, cpu), '.3f'):>8} "
            f"{fmt(run.median(OURS, case, server), '.3f'):>8} "
            f"{fmt(run.median(HORDAK, case, server), '.3f'):>8}"
        )
    print()
    print(f"{'case':<36} {'bytes/credit':>17} {'WAL bytes/credit':>19}")
    print(f"{'':<36} {'ours':>8} {'hordak':>8} {'ours':>9} {'hordak':>9}")
    for case in CASES:
        print(
            f"{labels[case]:<36} {fmt(run.median(OURS, case, size), ',.0f'):>8} "
            f"{fmt(run.median(HORDAK, case, size), ',.0f'):>8} "
            f"{fmt(run.median(OURS, case, wal), ',.0f'):>9} "
            f"{fmt(run.median(HORDAK, case, wal), ',.0f'):>9}"
        )
    print()
    print("table + index growth per credit, by table (mean over rounds, bytes):")
    for system in (OURS, HORDAK):
        tables: dict[str, dict[str, float]] = {}
        for case in CASES:
            samples = [s for s in run.samples if s.system == system and s.case == case]
            credits = sum(s.credits for s in samples)
            for s in samples:
                for name, grown in s.bytes_by_table.items():
                    tables.setdefault(name, {}).setdefault(case, 0.0)
                    tables[name][case] += grown / credits
        for name in sorted(tables):
            cells = "  ".join(
                f"{c}: {fmt(tables[name].get(c, 0.0), ',.0f'):>5}"
                for c in CASES
                if any(s.system == system and s.case == c for s in run.samples)
            )
            print(f"  {system:<7} {name:<28} {cells}")
    print(FAIRNESS)


FAIRNESS = """
What each system writes per credit (read the ratio with this in mind):
* ours (service.ledger.credit): one ledger_transactions row holding the canonical request as
  JSONB, under a unique (origin, idempotency_key) index (a retried credit is answered, not
  doubled); FOUR postings (POINTS and GCO2E, issuance shard -> participant), each with the
  account's next account_seq and a SHA-256 chain hash computed in Python; one lot and its 'open'
  movement (expiry bookkeeping); the posted balance, chain seq and chain head of the 4 touched
  accounts updated under FOR NO KEY UPDATE row locks; append-only and deferred balance
  constraint triggers checked at commit.
* hordak: one hordak_transaction row (uuid, timestamp, date, description = origin:key, not
  unique, not checked) and TWO legs (uuid, numeric(13,2) debit or credit, currency), points only
  (no grams). Per leg, two deferred constraint triggers run at commit: check_leg (the
  transaction's legs sum to zero per currency, an index lookup on transaction_id) and the
  account-currency check (the account row's JSONB currencies). No account row is updated or
  locked: balances are not stored but summed from the legs on every read (get_balance walks
  the account's MPTT subtree), so hordak moves cost from writes to reads and has no hot
  issuance row. The account tree (MPTT) is only touched when accounts are created or moved, not
  per credit. Hordak has no idempotency, no expiry lots, no hash chain.
* Drivers and runtimes differ: ours is SQLAlchemy 2 async + asyncpg (binary protocol, prepared
  statements) on one event loop; hordak is the Django ORM + psycopg 3 (client-side parameter
  binding) and its concurrent case is 8 Python threads sharing the GIL on this machine's cores.
  Ours uses the service's own engine settings (service.db.create_engine): pool_pre_ping pings
  each connection on checkout, one extra round trip per transaction that Django does not make
  (CONN_HEALTH_CHECKS off); the loop is the stock asyncio one, not the uvloop the app runs on.
* (3) compares our set-based batch path with hordak through its ORM one object at a time
  (3 INSERT round trips per credit); (3b) is hordak's rows written with Django bulk_create
  (2 multi-row INSERTs per batch; DB triggers still run, Leg.save()'s Python checks do not),
  the fairer batch peer. Hordak has no batch API of its own.
* Client CPU is this process only (both systems' Python); server CPU is the database backends
  serving each system (background writer, WAL writer, autovacuum excluded). Table growth is
  counted in 8 kB pages, so it includes free space and, for ours, dead tuples from account
  updates; WAL is cluster-wide and includes full-page images after checkpoints.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_URL)
    parser.add_argument("--participants", type=int, default=5000)
    parser.add_argument("--singles", type=int, default=1000, help="credits in (1) and (2)")
    parser.add_argument("--batches", type=int, default=6, help="batches in (3) and (3b)")
    parser.add_argument("--batch", type=int, default=500, help="credits per batch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=8, help="concurrent writers in (2)")
    parser.add_argument("--pool", type=int, default=10, help="our engine's pool_size")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args()
    if args.batch > args.participants:
        parser.error("--batch must not exceed --participants (distinct participants per batch)")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    missing = missing_peers()
    if missing:
        print(
            f"{', '.join(missing)} not installed; this benchmark needs the peers extra:\n"
            f"    {INSTALL_HINT}\n"
            "(or: .venv/bin/pip install 'django-hordak>=2,<3' 'psycopg[binary]')",
            file=sys.stderr,
        )
        raise SystemExit(2)

    pid = os.getpid()
    server = make_url(to_asyncpg_dsn(args.database_url))
    ours_name, hordak_name = f"carbon_points_bench_{pid}", f"hordak_bench_{pid}"
    ours_url = server.set(database=ours_name).render_as_string(False)
    hordak_url = server.set(database=hordak_name)

    from importlib.metadata import version

    load_before = load_average()

    print(f"machine: {describe_machine()}")
    print(
        f"django-hordak {version('django-hordak')}, Django {version('django')}, "
        f"psycopg {version('psycopg')}, SQLAlchemy {version('sqlalchemy')}"
    )
    print(f"databases: {ours_name}, {hordak_name} on {server.set(database='').render_as_string()}")
    with databases(args, [ours_name, hordak_name]):
        migrations.upgrade(ours_url)
        run = measure(args, ours_url, hordak_url)
    report(args, run)
    print(f"load average (1, 5, 15 min): {load_before} at start, {load_average()} at the end")


if __name__ == "__main__":
    main()
