"""Benchmark: the app's read path (balance and history) over HTTP, against a floor in the same run.

Run (from the repository root):

    .venv/bin/python benchmarks/bench_app_reads.py [--workers 2] [--rounds 3] [--duration 5]
    .venv/bin/python benchmarks/bench_app_reads.py --duration 3 --rounds 1     # quick look
    .venv/bin/python benchmarks/bench_app_reads.py --only service --rate 500,1000 --py-spy /tmp/spy

Issue 12: "app reads >= 0.5 of the floor in a closed loop, and p99 <= 20 ms at an open-loop
1,000 requests/s", on this machine, load generator included. Two servers run side by side,
each with ``--workers W`` worker processes, on the same machine as PostgreSQL, Redis and the
load generator, on the SAME database:

``service``
    ``carbon-points serve``.
``floor``
    ``benchmarks/floor_reads.py`` under uvicorn with the service's settings: the same bearer
    JWT verified with PyJWT (HS256, the service's token format and signing key; a bad token is
    a 401), then ONE indexed SELECT on an asyncpg pool (balance: the POINTS account's posted
    and held by its code; history: a page of postings joined with their transactions, newest
    first), answered with orjson.

Set-up: a fresh database ``carbon_points_bench_app_reads_<pid>`` on the server of
``--database-url`` (default: $DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/test),
migrated to head; ``--users`` citizens (a participant and a user each) COPYed in, then
``--credits`` credits each through the ledger's own ``service.ledger.service.credit`` (batches
of distinct participants, lots expiring over two years), so balances have lots and history
pages are full; then ``VACUUM (ANALYZE)``. Secrets are random and handed to the service by
environment; the floor gets the same JWT signing key. Access tokens are minted with the
service's ``mint_access_token`` before every slice (they last ten minutes). Before measuring,
a sample of 50 users is checked on both servers: the balance is the sum credited, the history
page is full (and the floor refuses a token signed with another key).

Phases, each interleaved round robin: ``--rounds`` rounds; in each round every server gets one
slice of the phase (the order rotates from round to round), with ``--settle`` s of quiet
between slices. Requests are half ``GET /v1/app/balance``, half ``GET
/v1/app/history?limit=--limit``, each for a random user with their own token; both servers get
the same request stream (same seeds).

1. Closed loop: ``--closed-connections`` connections (16), each sending its next request as
   soon as the last one is answered, for ``--closed-duration`` s: the maximum throughput.
2. Open loop at each rate of ``--rate`` (1,000 requests/s): ``--duration`` s on a fixed
   schedule drawn before the clock starts, at most ``--connections`` connections; latency runs
   from each request's *scheduled* time to the end of its response (no coordinated
   omission); after the schedule, at most ``--drain`` s more, then what is unfinished is
   cancelled and counted as an error.

Per phase, a table: the median over rounds per server (requests/s, p50 and p99 of all requests,
p99 of balance and of history), the service's ratio to the floor, and the cores each process
group used (from /proc): the generator, the server under test, PostgreSQL's backends of the
benchmark's database and its other processes, Redis, and the rest of the machine (a busy "rest"
means the box was shared). Then the service against the targets. The floor prints its SQL
statements per request (one).

The load generator is one asyncio process with a minimal HTTP/1.1 keep-alive client on raw
sockets (``benchmarks/_harness.py``: pre-built request bytes, Content-Length framing; a few
tens of microseconds of CPU per request). ``--py-spy DIR`` records the service's workers in
the first round of every phase and prints the top frames. A default run takes about three
minutes (set-up included).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Runnable as `python benchmarks/bench_app_reads.py` from a checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import orjson

from benchmarks import _harness as h
from service import migrations
from service.accounts.tokens import Keyring, mint_access_token
from service.db import create_engine, create_sessionmaker
from service.embedded import to_asyncpg_dsn
from service.ledger.schemas import CreditRequest
from service.ledger.service import credit

SERVICE = "service"
FLOOR = "floor"
TARGET_RATE = 1_000.0
TARGET_P99_MS = 20.0
TARGET_OF_FLOOR = 0.5
ENDPOINTS = ("balance", "history")
PROJECT_FRAMES = ("service/", "points_rules/")


# --- set-up -------------------------------------------------------------------------------


@dataclass
class Citizen:
    user_id: uuid.UUID
    participant_id: uuid.UUID
    points: int = 0


async def populate(database_url: str, users: int, credits: int, seed: int) -> list[Citizen]:
    """COPY the participants and users, then credit each user through the ledger service."""
    citizens = [Citizen(uuid.uuid4(), uuid.uuid4()) for _ in range(users)]
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "participants",
                records=[(c.participant_id, "citizen", "Bench citizen", "CN-JX") for c in citizens],
                columns=["id", "kind", "display_name", "region"],
            )
            # Nobody logs in: the login hash only has to be unique, the password hash present.
            await conn.copy_records_to_table(
                "users",
                records=[
                    (c.user_id, c.participant_id, secrets.token_bytes(32), "bench-no-login")
                    for c in citizens
                ],
                columns=["id", "participant_id", "login_hash", "password_hash"],
            )
    finally:
        await conn.close()

    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    engine = create_engine(database_url, pool_size=4)
    sessionmaker = create_sessionmaker(engine)
    batch_size = 500
    try:
        now = datetime.now(UTC)
        batches: list[list[CreditRequest]] = []
        for round_ in range(credits):
            # Distinct participants per batch; lots spread over ~2 years of expiry dates.
            order = citizens[:]
            rng.shuffle(order)
            for start in range(0, len(order), batch_size):
                batch = []
                for c in order[start : start + batch_size]:
                    points = rng.randint(50, 900)
                    c.points += points
                    batch.append(
                        CreditRequest(
                            origin="bench",
                            key=f"{run}-{round_}-{c.participant_id}",
                            participant_id=c.participant_id,
                            points=points,
                            grams=points,
                            expires_at=now + timedelta(days=rng.randint(30, 730)),
                            credit_id=str(rng.getrandbits(40)),
                            methodology_id="transit.metro",
                            methodology_version=1,
                        )
                    )
                batches.append(batch)

        queue = list(reversed(batches))

        async def writer() -> None:
            while queue:
                batch = queue.pop()
                async with sessionmaker() as session, session.begin():
                    results = await credit(session, batch, now=now)
                if any(r.status != "created" for r in results):
                    raise RuntimeError("a benchmark credit was not created")

        await asyncio.gather(*(writer() for _ in range(3)))
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        # VACUUM too: autovacuum would otherwise start on the freshly filled ledger tables
        # during the first phase, and the visibility map allows index-only scans.
        await conn.execute("VACUUM (ANALYZE)")
    finally:
        await conn.close()
    return citizens


def build_requests(port: int, citizens: list[Citizen], keyring: Keyring, limit: int) -> list[bytes]:
    """For user i: [2i] balance, [2i + 1] history, each with a freshly minted token."""
    out = []
    for c in citizens:
        token = mint_access_token(
            keyring, user_id=c.user_id, participant_id=c.participant_id, generation=0
        )
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        for path in ("/v1/app/balance", f"/v1/app/history?limit={limit}"):
            out.append(h.http_request("GET", path, port, headers))
    return out


# --- phases ---------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    server: h.Server
    slices: dict[str, list[Phase]] = field(default_factory=dict)


@dataclass
class Phase:
    """One slice: one phase, one round, one server."""

    name: str
    wall: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: {e: [] for e in ENDPOINTS})
    errors: Counter[str] = field(default_factory=Counter)
    lag: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    offered: float | None = None
    cut_off: int = 0

    @property
    def ok(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def rate(self) -> float:
        return self.ok / self.wall if self.wall else 0.0

    def percentile(self, q: float, endpoint: str | None = None) -> float:
        """Nearest-rank percentile in ms (successful requests)."""
        values = (
            self.latencies[endpoint]
            if endpoint
            else [x for v in self.latencies.values() for x in v]
        )
        return h.percentile(values, q)


@dataclass
class Slice:
    target: Target
    idle: list[h.Server]
    requests: list[bytes]
    args: argparse.Namespace
    database: str
    seed: int


async def send(pool: h.Pool, phase: Phase, raw: bytes, endpoint: str, scheduled: float) -> None:
    try:
        status, _ = await pool.request(raw)
    except h.NETWORK_ERRORS as exc:
        phase.errors[type(exc).__name__] += 1
        return
    if status != 200:
        phase.errors[f"HTTP {status}"] += 1
        return
    phase.latencies[endpoint].append(time.perf_counter() - scheduled)


async def open_loop(s: Slice, rate: float, duration: float) -> Phase:
    phase = Phase(f"open loop {rate:g}/s", offered=rate)
    rng = random.Random(s.seed)
    users = len(s.requests) // 2
    # The whole schedule is drawn before the clock starts.
    plan = []
    for _ in range(int(rate * duration)):
        kind = rng.randrange(2)
        plan.append((s.requests[2 * rng.randrange(users) + kind], ENDPOINTS[kind]))
    server = s.target.server
    pool = h.Pool(server.port, s.args.connections)
    await pool.fill()
    in_flight: set[asyncio.Task[None]] = set()
    interval = 1.0 / rate
    before = h.sample_cpu(server, s.idle, [s.database])
    start = time.perf_counter()
    for i, (raw, endpoint) in enumerate(plan):
        scheduled = start + i * interval
        now = time.perf_counter()
        if scheduled > now:
            await asyncio.sleep(scheduled - now)
            now = time.perf_counter()
        phase.lag.append(now - scheduled)
        job = asyncio.create_task(send(pool, phase, raw, endpoint, scheduled))
        in_flight.add(job)
        job.add_done_callback(in_flight.discard)
    # An overloaded server would take long to drain its backlog: wait at most --drain s; what
    # is cut off then counts as an error.
    late: set[asyncio.Task[None]] = set()
    if in_flight:
        _, late = await asyncio.wait(set(in_flight), timeout=s.args.drain)
    cut_off = time.perf_counter()
    for job in late:
        job.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    phase.cut_off = len(late)
    if late:
        phase.errors["cut off at the drain deadline"] += len(late)
    # The rate is over the schedule, or longer when the answers came later.
    phase.wall = max(cut_off - start, duration)
    phase.cpu = h.cpu_share(before, h.sample_cpu(server, s.idle, [s.database]))
    pool.close()
    return phase


async def closed_loop(s: Slice, duration: float) -> Phase:
    phase = Phase(f"closed loop x {s.args.closed_connections}")
    users = len(s.requests) // 2
    server = s.target.server
    deadline = 0.0

    async def task(index: int, conn: h.Connection) -> None:
        rng = random.Random(s.seed * 1000 + index)
        try:
            while time.perf_counter() < deadline:
                kind = rng.randrange(2)
                started = time.perf_counter()
                try:
                    status, _, reusable = await conn.request(
                        s.requests[2 * rng.randrange(users) + kind]
                    )
                except h.NETWORK_ERRORS as exc:
                    phase.errors[type(exc).__name__] += 1
                    conn.close()
                    conn = await h.Connection.open(server.port)
                    continue
                if status == 200:
                    phase.latencies[ENDPOINTS[kind]].append(time.perf_counter() - started)
                else:
                    phase.errors[f"HTTP {status}"] += 1
                if not reusable:
                    conn.close()
                    conn = await h.Connection.open(server.port)
        finally:
            conn.close()

    connections = [await h.Connection.open(server.port) for _ in range(s.args.closed_connections)]
    before = h.sample_cpu(server, s.idle, [s.database])
    start = time.perf_counter()
    deadline = start + duration
    await asyncio.gather(*(task(i, c) for i, c in enumerate(connections)))
    phase.wall = time.perf_counter() - start
    phase.cpu = h.cpu_share(before, h.sample_cpu(server, s.idle, [s.database]))
    return phase


async def check_responses(
    server: h.Server, requests: list[bytes], citizens: list[Citizen], limit: int, credits: int
) -> list[str]:
    """A sample of users: 200s, the balance is the sum credited, the history page is full."""
    pool = h.Pool(server.port, 4)
    problems = []
    try:
        for i in random.Random(1).sample(range(len(citizens)), min(50, len(citizens))):
            status, body = await pool.request(requests[2 * i])
            balance = orjson.loads(body)
            if status != 200 or balance.get("available") != citizens[i].points:
                problems.append(f"{server.name}: balance of user {i}: {status} {body[:200]!r}")
            status, body = await pool.request(requests[2 * i + 1])
            items = orjson.loads(body).get("items", []) if status == 200 else []
            if len(items) != min(limit, credits):
                problems.append(f"{server.name}: history of user {i}: {status} {len(items)} items")
        # A token signed with another key must be refused.
        stranger = build_requests(
            server.port, citizens[:1], Keyring.from_secrets(secrets.token_urlsafe(48)), limit
        )
        for raw in stranger:
            status, _ = await pool.request(raw)
            if status != 401:
                problems.append(f"{server.name}: a token signed with another key got {status}")
    finally:
        pool.close()
    return problems


# --- the run ------------------------------------------------------------------------------------


def report_slice(target: Target, phase: Phase) -> None:
    errors = sum(phase.errors.values())
    lag = f", generator lag p99 {h.percentile(phase.lag, 99):.1f} ms" if phase.lag else ""
    print(
        f"  {target.name:<8} {phase.rate:8,.0f}/s  p50 {phase.percentile(50):6.1f}  p99 "
        f"{phase.percentile(99):7.1f} ms (balance {phase.percentile(99, 'balance'):.1f}, "
        f"history {phase.percentile(99, 'history'):.1f})  errors {errors:,}"
        f"{' ' + str(dict(phase.errors)) if errors else ''}{lag}; "
        f"{h.CORES_HEADER} {h.cores(phase.cpu)}",
        flush=True,
    )


async def run(
    args: argparse.Namespace,
    targets: list[Target],
    keyring: Keyring,
    citizens: list[Citizen],
    database: str,
) -> list[str]:
    profile: list[str] = []
    problems: list[str] = []
    phases: list[tuple[str, float]] = []
    if args.closed_duration > 0:
        phases.append(("closed", args.closed_duration))
    phases += [(f"open {float(rate):g}", args.duration) for rate in args.rate.split(",") if rate]
    try:
        await asyncio.gather(*(t.server.wait_ready() for t in targets))
        for t in targets:
            print(f"{t.name}: {t.server.base_url}, workers {t.server.worker_pids()}", flush=True)
            requests = build_requests(t.server.port, citizens, keyring, args.limit)
            problems += await check_responses(
                t.server, requests, citizens, args.limit, args.credits
            )
            # Warm-up (not timed): every worker's pool, prepared statements, and the caches.
            idle = [o.server for o in targets if o is not t]
            warm = Slice(t, idle, requests, args, database, args.seed)
            await open_loop(warm, 200.0, 2.0)
        print(f"response check on 50 users: {'OK' if not problems else problems[:3]}", flush=True)
        for n, (name, duration) in enumerate(phases):
            print(f"\n{name.replace('open', 'open loop')}{'/s' if name != 'closed' else ''}:")
            for round_ in range(args.rounds):
                for t in h.rotated(targets, round_):
                    requests = build_requests(t.server.port, citizens, keyring, args.limit)
                    idle = [o.server for o in targets if o is not t]
                    s = Slice(t, idle, requests, args, database, args.seed + 100 * n + round_)
                    label = f"{t.name} {name} round {round_ + 1}"
                    profiled = t.name == SERVICE and round_ == 0
                    spies = h.start_py_spy(
                        args.py_spy if profiled else None, t.server, label, duration
                    )
                    if name == "closed":
                        phase = await closed_loop(s, duration)
                    else:
                        phase = await open_loop(s, float(name.split()[1]), duration)
                    h.finish_py_spy(spies, label, profile, PROJECT_FRAMES)
                    t.slices.setdefault(name, []).append(phase)
                    report_slice(t, phase)
                    await asyncio.sleep(args.settle)
    finally:
        for t in targets:
            t.server.stop()
    for line in profile:
        print(line)
    return problems


@dataclass
class Figures:
    """The medians over rounds of one phase on one server."""

    rate: float
    rounds: list[float]
    p50: float
    p99: float
    p99_by: dict[str, float]
    errors: int
    cpu: dict[str, float]


def figures(slices: Sequence[Phase]) -> Figures:
    return Figures(
        rate=statistics.median(p.rate for p in slices),
        rounds=[p.rate for p in slices],
        p50=statistics.median(p.percentile(50) for p in slices),
        p99=statistics.median(p.percentile(99) for p in slices),
        p99_by={e: statistics.median(p.percentile(99, e) for p in slices) for e in ENDPOINTS},
        errors=sum(sum(p.errors.values()) for p in slices),
        cpu=h.median_cpu([p.cpu for p in slices]),
    )


def floor_statements(target: Target) -> str:
    totals = h.floor_stats(target.server.log_path)
    parts = []
    for kind in ENDPOINTS:
        requests = totals[f"{kind}_requests"]
        if requests:
            per = totals[f"{kind}_statements"] / requests
            parts.append(f"{kind} {per:.2f} statements/request ({requests:,} requests)")
    return "; ".join(parts) or f"no floor-stats line in {target.server.log_path}"


def summary(args: argparse.Namespace, targets: Sequence[Target], problems: list[str]) -> None:
    print(
        f"\nsummary: median of {args.rounds} round(s) per server; workers {args.workers}, "
        f"service pool {args.pool}/worker; {args.users:,} users x {args.credits} credits, "
        f"history limit {args.limit}; load generator on the same {os.cpu_count()} cores"
    )
    verdicts: list[str] = []
    names = list(targets[0].slices) if targets else []
    for name in names:
        per_server = {t.name: figures(t.slices[name]) for t in targets if t.slices.get(name)}
        floor = per_server.get(FLOOR)
        title = "closed loop" if name == "closed" else f"open loop {name.split()[1]}/s"
        if name == "closed":
            title += f" x {args.closed_connections} connections, {args.closed_duration:g} s"
        else:
            title += f", {args.duration:g} s (+ at most {args.drain:g} s drain)"
        print(f"\n{title}")
        print(
            f"  {'server':<8} {'requests/s':>10} {'/floor':>6} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'p99 bal':>8} {'p99 hist':>8} {'errors':>6}  {'rounds':<22} {h.CORES_HEADER}"
        )
        for server, f in per_server.items():
            rounds = " ".join(f"{r:,.0f}" for r in f.rounds)
            of_floor = h.ratio(f.rate, floor.rate if floor else None)
            print(
                f"  {server:<8} {f.rate:>10,.0f} {of_floor:>6}"
                f" {f.p50:>8,.1f} {f.p99:>8,.1f} {f.p99_by['balance']:>8,.1f} "
                f"{f.p99_by['history']:>8,.1f} {f.errors:>6,}  {rounds:<22} {h.cores(f.cpu)}"
            )
        service = per_server.get(SERVICE)
        if service is None:
            continue
        if name == "closed" and floor is not None:
            met = service.rate >= TARGET_OF_FLOOR * floor.rate
            verdicts.append(
                f"  closed loop: service {service.rate:,.0f}/s = "
                f"{h.ratio(service.rate, floor.rate)} of the floor's {floor.rate:,.0f}/s "
                f"(target >= {TARGET_OF_FLOOR:g}) -> {'met' if met else 'MISSED'}"
            )
        elif name != "closed" and float(name.split()[1]) >= TARGET_RATE:
            offered = float(name.split()[1])
            worst = max(service.p99_by.values())
            kept_up = service.rate >= 0.98 * offered and not service.errors
            met = kept_up and worst <= TARGET_P99_MS
            verdicts.append(
                f"  open loop {offered:,.0f}/s: service achieved {service.rate:,.0f}/s, p99 "
                f"balance {service.p99_by['balance']:.1f} ms, history "
                f"{service.p99_by['history']:.1f} ms, {service.errors:,} errors (target p99 <= "
                f"{TARGET_P99_MS:g} ms, keeping up) -> {'met' if met else 'MISSED'}"
                + (f"; floor p99 {floor.p99:.1f} ms" if floor else "")
            )
    for t in targets:
        if t.name == FLOOR:
            print(f"\nfloor statements: {floor_statements(t)}")
    print("\ntargets (issue 12), the service's medians")
    for line in verdicts or ["  (no service phase at the target rate)"]:
        print(line)
    print(f"  response check: {'OK' if not problems else 'FAILED: ' + '; '.join(problems[:3])}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="See the module docstring for what is measured.",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL server; the benchmark makes (and drops) its own database there",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--redis-db", type=int, default=13, help="the Redis db the service uses")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per server")
    parser.add_argument("--pool", type=int, default=10, help="DB connections per worker")
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--credits", type=int, default=20, help="credits per user")
    parser.add_argument("--limit", type=int, default=20, help="history page size")
    parser.add_argument("--rounds", type=int, default=3, help="slices per server and phase")
    parser.add_argument("--settle", type=float, default=1.0, help="quiet between slices, s")
    parser.add_argument(
        "--rate", default="1000", help="open-loop requests/s, comma-separated for several phases"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="each open-loop slice, s")
    parser.add_argument("--connections", type=int, default=64, help="open loop: at most")
    parser.add_argument("--drain", type=float, default=5.0, help="open loop: wait at most, s")
    parser.add_argument(
        "--closed-duration", type=float, default=5.0, help="each closed-loop slice, s; 0 skips"
    )
    parser.add_argument("--closed-connections", type=int, default=16)
    parser.add_argument("--only", choices=(SERVICE, FLOOR), help="run one server only")
    parser.add_argument("--log-level", default="WARNING", help="the service's log level")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--py-spy", metavar="DIR", help="profile the service's first slices")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    name = f"carbon_points_bench_app_reads_{os.getpid()}"
    server_url = args.database_url
    signing_key = secrets.token_urlsafe(48)
    workdir = Path(tempfile.mkdtemp(prefix="bench-app-reads-"))
    print(h.describe_machine())
    print(f"database {name}; server logs and data dir under {workdir}", flush=True)
    database_url = asyncio.run(h.recreate(server_url, name))
    problems = ["not run"]
    try:
        started = time.perf_counter()
        migrations.upgrade(database_url)
        citizens = asyncio.run(populate(database_url, args.users, args.credits, args.seed))
        print(
            f"set up in {time.perf_counter() - started:.1f} s: {len(citizens):,} users, "
            f"{len(citizens) * args.credits:,} credits",
            flush=True,
        )
        targets = []
        if args.only in (None, SERVICE):
            env = {
                **os.environ,
                "CARBON_POINTS_PARTNER_SECRET_KEY": secrets.token_urlsafe(48),
                "CARBON_POINTS_IDENTIFIER_PEPPER": secrets.token_urlsafe(48),
                "CARBON_POINTS_JWT_SIGNING_KEY": signing_key,
                "DATABASE_URL": database_url,
                "REDIS_URL": h.redis_url_with_db(args.redis_url, args.redis_db),
                "CARBON_POINTS_LOG_LEVEL": args.log_level,
                "CARBON_POINTS_DATA_DIR": str(workdir / "data"),
                "CARBON_POINTS_DB_POOL_SIZE": str(args.pool),
            }
            command = h.service_command(h.free_port(), args.workers)
            log = workdir / "service.log"
            targets.append(Target(SERVICE, h.Server(SERVICE, command, env, args.workers, log)))
        if args.only in (None, FLOOR):
            env = {
                **os.environ,
                "FLOOR_DATABASE_URL": to_asyncpg_dsn(database_url),
                "FLOOR_JWT_SIGNING_KEYS": signing_key,
                "FLOOR_POOL": str(args.pool),
            }
            command = h.floor_command("floor_reads", h.free_port(), args.workers)
            log = workdir / "floor.log"
            targets.append(Target(FLOOR, h.Server(FLOOR, command, env, args.workers, log)))
        keyring = Keyring.from_secrets(signing_key)
        problems = asyncio.run(run(args, targets, keyring, citizens, name))
        summary(args, targets, problems)
    finally:
        if args.keep_database:
            print(f"kept database {name}")
        else:
            asyncio.run(h.drop(server_url, name))
    sys.exit(0 if not problems else 1)


if __name__ == "__main__":
    main()
