"""Benchmark: the crediting path end to end over signed HTTP, against two floors in the same run.

Run (from the repository root):

    .venv/bin/python benchmarks/bench_crediting.py [--workers 2] [--rounds 3] [--duration 5]
    .venv/bin/python benchmarks/bench_crediting.py --duration 4 --rounds 1     # quick look
    .venv/bin/python benchmarks/bench_crediting.py --only service              # no floors

Every speed target is judged against floors measured in the same run, driven by the same load
generator (PRODUCT.md, Targets). Three servers run side by side, each with ``--workers W``
worker processes, on the same machine as PostgreSQL, Redis and the load generator:

``service``
    ``carbon-points serve`` on a fresh database ``carbon_points_bench_crediting_<pid>``.
``minimal floor``
    ``benchmarks/floor_app.py`` (FLOOR_MODE=minimal) on ``<db>_floor``: signature check, one
    event row deduplicated with ON CONFLICT, one posting pair, one balance update, set-based,
    one statement a request.
``same-writes floor``
    ``benchmarks/floor_app.py`` (FLOOR_MODE=samewrites) on ``<db>_samewrites``, migrated to
    head and seeded like the service's database: hand-written set-based SQL writing the rows
    the service writes for each credited event (events, credits, cap usage, ledger transaction,
    four chained postings, lot and movement, balances), in a constant number of statements.

Set-up: the service's and the same-writes floor's databases are migrated to head, get the
methodology library, one partner allowed ``transit.metro`` and ``transit.bus`` (rate limit
100,000/s) with one credential, and ``--participants`` participants each linked to a card
number with the service's keyed hash (``subject_hash``); their ledger accounts are created by
their first credit. Secrets are random, generated here, handed to the servers by environment.

Phases, each interleaved round robin: ``--rounds`` rounds, in each round every server gets one
slice of the phase (the order rotates from round to round), ``--settle`` s of quiet between
slices. Each server keeps its own event generators and its own re-send pool across rounds, and
gets the same event stream (same seeds), so re-sends hit that server's own acknowledged events.

1. Batched: ``--tasks`` tasks send signed batches of ``--batch`` metro events for
   ``--duration`` s; about ``--resend`` of each batch are events this server acknowledged
   earlier, re-sent unchanged (their outcome must be the original one). Credited events/s
   counts distinct external ids answered ``credited``/``capped``, over first send to last answer.
2. Single events, closed loop: ``--single-tasks`` tasks, one event after another.
3. Single events, open loop at ``--rate`` events/s: the schedule is built before the clock
   starts, latency runs from each event's *scheduled* time (no coordinated omission), requests
   wait for one of ``--open-connections`` connections; after the schedule, at most ``--drain`` s
   more, then what is unfinished is cancelled and counted with its latency so far.

The load generator is ``integrations.AsyncCarbonPointsClient`` (real HMAC signing,
``max_retries=0``; only a 2xx is an acknowledgement), one client with one connection per sender
(httpcore's shared pool costs O(connections x waiting) per request), all sharing one SSL
context; httpcore's per-request ``import sniffio`` is short-circuited when sniffio is absent.
Same code, same requests for the three servers.

Per phase, a table: the median over rounds per server, and its ratio to each floor; the cores
each process group used (from /proc): the generator, the server under test, PostgreSQL's
backends of its database, PostgreSQL's other processes, Redis, and the rest of the machine
(the box may be shared: a busy "rest" column means the figures are not this code's alone).
Then the service against the targets (8,000 credited events/s batched or 0.7 of the
same-writes floor; 1,000 single events/s closed loop; p99 <= 50 ms at an open-loop 800/s).

Checks: on the service's database, every acknowledged event with status credited/capped has
exactly one ``credits`` row and, when it earned points or grams, exactly one ledger
transaction with origin ``crediting`` and key ``event:<event id>`` (none otherwise), the ids
and points agree across ``partner_events``, ``credits`` and the ledger, the stored status is the
acknowledged one; then ``verify_ledger``. The same-writes floor's database gets the same checks
(it has the same tables); the minimal floor's, one event row per acknowledged external id with
the acknowledged points, postings summing to zero and balances to the events' points. Every
database is ANALYZEd first (after the measuring). ``--verify-floor`` also runs ``ledger verify``
on the same-writes floor's database. Each floor prints its SQL statements per request (counted
by its workers). The script exits with status 1 if a check fails.

A default run (3 rounds x 5 s x 3 phases x 3 servers) takes about 4 minutes.

``--py-spy DIR`` records the service's workers with py-spy during its first batched and
closed-loop slices and prints the top frames.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import math
import os
import random
import re
import secrets
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

# Runnable as `python benchmarks/bench_crediting.py` from a checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# httpcore runs `import sniffio` on every request; without sniffio installed, each failed import
# searches sys.path again (about 0.5 ms of the load generator's CPU a request). A None entry
# makes the import fail at once, and httpcore then assumes asyncio, which is right here.
if importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from benchmarks._harness import (
    CpuSample,
    Server,
    admin,
    cpu_seconds,
    database_url_for,
    describe_machine,
    floor_command,
    free_port,
    machine_busy_seconds,
    pids_named,
    ratio,
    redis_url_with_db,
    service_command,
)
from benchmarks.floor_app import create_minimal_schema
from integrations import AsyncCarbonPointsClient, CarbonPointsError, Event
from service import migrations
from service.db import create_engine, create_sessionmaker
from service.embedded import to_asyncpg_dsn
from service.ledger.verify import verify_ledger
from service.methodologies.service import sync_library
from service.partners.credentials import issue_credential, subject_hash
from service.partners.service import create_partner
from tests.scaling_servers import PgBouncerServer, missing_pgbouncer

ROOT = Path(__file__).resolve().parents[1]
CREDITED = frozenset({"credited", "capped"})
CLK_TCK = os.sysconf("SC_CLK_TCK")

SERVICE = "service"
SERVICE_FLAGS = "service, flags on"
MINIMAL = "minimal floor"
SAME_WRITES = "same-writes floor"
FLOORS = (MINIMAL, SAME_WRITES)
SERVICES = (SERVICE, SERVICE_FLAGS)

# PRODUCT.md, Targets ("target now"), each judged in the same run as its floors.
TARGET_BATCHED = 8_000.0  # credited events/s, signed batches of 500 ...
TARGET_BATCHED_OF_MINIMAL = 0.4  # ... which is about 0.4 of the minimal floor ...
TARGET_BATCHED_OF_SAME_WRITES = 0.7  # ... or, met too, 0.7 of the same-writes floor
TARGET_SINGLE = 1_000.0  # single events/s, closed loop, 32 senders
TARGET_P99_MS = 50.0  # single events, open loop at 800/s

PHASES = ("batched", "closed", "open")


# --- set-up -------------------------------------------------------------------------------


@dataclass
class Setup:
    """What the load generator needs to reach one server's partner."""

    database_url: str
    partner_id: uuid.UUID
    key_id: str
    secret: str
    cards: list[str]


async def max_connections(server_url: str) -> int:
    parsed = make_url(to_asyncpg_dsn(server_url)).set(database="postgres")
    conn = await asyncpg.connect(parsed.render_as_string(hide_password=False))
    try:
        return int(await conn.fetchval("SHOW max_connections"))
    finally:
        await conn.close()


def card_number(i: int) -> str:
    return f"6222{i:012d}"


async def populate(database_url: str, secrets_env: dict[str, str], participants: int) -> Setup:
    """A database at head: library, partner, credential, linked participants (no accounts)."""
    engine = create_engine(database_url, pool_size=2)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            await sync_library(session)
            partner = await create_partner(
                session,
                code="bench-metro",
                name="Bench Metro",
                kind="transit",
                action_types=["transit.metro", "transit.bus"],
                rate_limit_per_second=100_000,
            )
            issued = await issue_credential(
                session, secrets_env["CARBON_POINTS_PARTNER_SECRET_KEY"], partner.id
            )
    finally:
        await engine.dispose()
    pepper = secrets_env["CARBON_POINTS_IDENTIFIER_PEPPER"]
    cards = [card_number(i) for i in range(participants)]
    ids = [uuid.uuid4() for _ in cards]
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "participants",
                records=[(pid, "citizen", "Bench rider") for pid in ids],
                columns=["id", "kind", "display_name"],
            )
            await conn.copy_records_to_table(
                "identity_links",
                records=[
                    (pid, issued.partner_id, subject_hash(pepper, issued.partner_id, card))
                    for pid, card in zip(ids, cards, strict=True)
                ],
                columns=["participant_id", "partner_id", "subject_hash"],
            )
        # Only the tables filled here. ANALYZE on the still empty ledger and event tables would
        # record "0 rows", and the service's connections would then cache generic plans with
        # sequential scans (trigger functions, foreign-key checks) that get slower with every
        # batch until autovacuum analyzes again (see docs/performance.md, crediting section).
        await conn.execute("ANALYZE participants, identity_links")
    finally:
        await conn.close()
    return Setup(database_url, issued.partner_id, issued.key_id, issued.secret, cards)


# Every flag rule on, at its default thresholds, except the partner-volume rule's floor: the
# benchmark's one partner has no history, so at its default it would flag every credit after
# the first minute. Raised above any rate here, the rule still runs (its refresher's query once
# a minute per worker) without flagging everything.
FLAG_RULES_SQL = """
UPDATE review_rules SET enabled = true;
UPDATE review_rules SET params = params || '{"min_events_per_hour": 100000000}'::jsonb
WHERE rule = 'partner_volume';
"""


async def enable_flag_rules(database_url: str) -> None:
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        await conn.execute(FLAG_RULES_SQL)
    finally:
        await conn.close()


async def flagged_share(database_url: str) -> str:
    """How many credits the rules flagged (their points held), and by which rules."""
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        credits = await conn.fetchval("SELECT count(*) FROM credits WHERE points > 0")
        rows = await conn.fetch(
            "SELECT rule, count(*) AS n FROM review_flags, unnest(rules) AS rule"
            " GROUP BY rule ORDER BY rule"
        )
        flagged = await conn.fetchval("SELECT count(*) FROM review_flags")
    finally:
        await conn.close()
    rules = ", ".join(f"{r['rule']} {r['n']:,}" for r in rows) or "none"
    share = flagged / credits if credits else 0.0
    return (
        f"flagged: {flagged:,} of {credits:,} credits with points ({share:.1%}); by rule: {rules}"
    )


# --- the servers ----------------------------------------------------------------------------


# --- CPU accounting from /proc --------------------------------------------------------------


def postgres_processes(database: str) -> tuple[list[int], list[int]]:
    """PostgreSQL's processes: (backends connected to `database`, all the others)."""
    ours: list[int] = []
    rest: list[int] = []
    tag = f" {database} ".encode()
    for pid in pids_named("postgres"):
        try:
            title = (Path("/proc") / str(pid) / "cmdline").read_bytes()
        except OSError:
            continue
        (ours if tag in title else rest).append(pid)
    return ours, rest


# The box is shared: "postgres other" is PostgreSQL's own processes (WAL writer, checkpointer,
# autovacuum) and other databases' backends; "rest" is every other process on the machine.
CPU_GROUPS = (
    "generator",
    "server",
    "idle servers",
    "postgres",
    "postgres other",
    "redis",
    "rest",
)


def sample_cpu(server: Server, idle: Sequence[Server], database: str) -> CpuSample:
    ours, rest = postgres_processes(database)
    groups = {
        "generator": [os.getpid()],
        "server": server.all_pids(),
        "idle servers": [pid for other in idle for pid in other.all_pids()],
        "postgres": ours,
        "postgres other": rest,
        "redis": pids_named("redis-server"),
    }
    return CpuSample(
        time.monotonic(),
        {name: {pid: cpu_seconds(pid) for pid in pids} for name, pids in groups.items()},
        machine_busy_seconds(),
    )


def cpu_share(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """Cores used by each group between two samples (processes alive at both ends, plus new);
    "rest" is the machine's busy time less all the groups."""
    wall = after.at - before.at
    if wall <= 0:
        return {}
    shares = {}
    for name, now in after.by_group.items():
        then = before.by_group.get(name, {})
        used = sum(seconds - then.get(pid, 0.0) for pid, seconds in now.items())
        shares[name] = used / wall
    shares["rest"] = max(0.0, (after.machine - before.machine) / wall - sum(shares.values()))
    return shares


# --- events ---------------------------------------------------------------------------------


@dataclass
class Acked:
    status: str
    points: int
    grams: int
    credit_id: str | None


@dataclass
class Phase:
    """One slice: one phase, one round, one server."""

    name: str
    round: int = 0
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    acked: dict[str, Acked] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    resent: int = 0
    resent_mismatch: int = 0
    cut_off: int = 0
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def credited(self) -> int:
        return sum(1 for a in self.acked.values() if a.status in CREDITED)

    @property
    def credited_per_second(self) -> float:
        return self.credited / self.wall if self.wall else 0.0

    @property
    def acked_per_second(self) -> float:
        return len(self.acked) / self.wall if self.wall else 0.0

    @property
    def throughput(self) -> float:
        """The phase's figure: credited events/s for batches, answered events/s for singles."""
        return self.credited_per_second if self.name == "batched" else self.acked_per_second

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the request latencies, in ms."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[rank - 1] * 1000


class EventMaker:
    """Metro trips: 1-30 km (median about 8 km), 20-55 km/h plus station time, last hour."""

    def __init__(self, cards: Sequence[str], seed: int, prefix: str) -> None:
        self.cards = cards
        self.rng = random.Random(seed)
        self.prefix = prefix
        self.count = 0

    def __call__(self) -> Event:
        rng = self.rng
        self.count += 1
        km = min(30.0, max(1.0, rng.lognormvariate(math.log(8.0), 0.6)))
        distance_m = int(km * 1000)
        speed_kmh = rng.uniform(20.0, 55.0)
        duration_s = int(distance_m / (speed_kmh / 3.6)) + rng.randint(60, 300)
        occurred_at = datetime.now(UTC) - timedelta(seconds=duration_s + rng.uniform(0, 3300))
        return Event(
            external_id=f"{self.prefix}-{self.count:08d}",
            action_type="transit.metro",
            occurred_at=occurred_at.replace(microsecond=0),
            subject_ref=rng.choice(self.cards),
            quantities={"distance_m": distance_m, "duration_s": duration_s},
            place_ids=[
                f"station:M-{rng.randint(1, 180):03d}",
                f"station:M-{rng.randint(1, 180):03d}",
            ],
        )


@dataclass
class Target:
    """One server under test, with the generator state it keeps from round to round."""

    name: str
    setup: Setup
    server: Server
    sent: list[Event] = field(default_factory=list)  # acknowledged batch events, to re-send
    makers: dict[str, EventMaker] = field(default_factory=dict)
    slices: dict[str, list[Phase]] = field(default_factory=dict)

    def maker(self, key: str, seed: int) -> EventMaker:
        """The same generators (and seeds) for every server: the same event stream."""
        if key not in self.makers:
            self.makers[key] = EventMaker(self.setup.cards, seed, key)
        return self.makers[key]

    def acked(self) -> dict[str, Acked]:
        merged: dict[str, Acked] = {}
        for slices in self.slices.values():
            for phase in slices:
                merged.update(phase.acked)
        return merged


_SSL: ssl.SSLContext | None = None


def new_client(base_url: str, setup: Setup, connections: int = 1) -> AsyncCarbonPointsClient:
    global _SSL
    # One SSL context for all clients: each new one would load the CA bundle (about 0.1 s of
    # CPU), and the servers are plain HTTP anyway.
    _SSL = _SSL or httpx.create_ssl_context()
    return AsyncCarbonPointsClient(
        base_url,
        key_id=setup.key_id,
        secret=setup.secret,
        max_retries=0,
        timeout=httpx.Timeout(120.0, connect=10.0),
        transport=httpx.AsyncHTTPTransport(
            verify=_SSL,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        ),
    )


def new_clients(target: Target, count: int) -> list[AsyncCarbonPointsClient]:
    """One client, with one connection, per sender: httpcore's pool scans every connection for
    every queued request (O(connections x waiting) per request), a cost of the load generator
    that would grow with the number of senders and weigh most on the fastest server."""
    return [new_client(target.server.base_url, target.setup) for _ in range(count)]


async def close_all(clients: Iterable[AsyncCarbonPointsClient]) -> None:
    await asyncio.gather(*(client.aclose() for client in clients))


def record(phase: Phase, events: Iterable[Event], outcomes: Iterable[object]) -> None:
    for event, outcome in zip(events, outcomes, strict=True):
        status = str(getattr(outcome, "status", ""))
        acked = Acked(
            status,
            int(getattr(outcome, "points", 0)),
            int(getattr(outcome, "grams", 0)),
            getattr(outcome, "credit_id", None),
        )
        previous = phase.acked.get(event.external_id)
        if previous is None:
            phase.acked[event.external_id] = acked
            phase.statuses[status] += 1
        else:
            phase.resent += 1
            if previous != acked:
                phase.resent_mismatch += 1


# --- the phases: one slice each -----------------------------------------------------------------


@dataclass
class Slice:
    target: Target
    idle: list[Server]
    args: argparse.Namespace
    round: int
    profile: list[str]

    @property
    def database(self) -> str:
        return str(make_url(self.target.setup.database_url).database)


async def warm_up(target: Target, args: argparse.Namespace) -> None:
    """Not timed: connections, caches, prepared statements, the first credential lookups."""
    clients = new_clients(target, 8)
    make = target.maker("w", args.seed)
    batch = max(1, min(args.batch, 1000))
    results = await asyncio.gather(
        *(clients[i % 8].submit_event(make()) for i in range(32)),
        *(
            clients[i].submit_events([make() for _ in range(batch)], batch_size=batch)
            for i in range(2)
        ),
        return_exceptions=True,
    )
    await close_all(clients)
    failed = Counter(type(r).__name__ for r in results if isinstance(r, BaseException))
    if failed:
        print(f"{target.name}: warm-up requests failed: {dict(failed)}", flush=True)


async def batched_slice(s: Slice) -> Phase:
    target, args = s.target, s.args
    phase = Phase("batched", s.round)
    # What this server acknowledged in its earlier slices: a re-send of one of those is a
    # re-send here too (its outcome must be the first one), not a new acknowledgement.
    earlier: dict[str, Acked] = {}
    for previous in target.slices.get("batched", []):
        earlier.update(previous.acked)
    clients = new_clients(target, args.tasks)
    deadline = time.perf_counter() + args.duration

    async def task(index: int, client: AsyncCarbonPointsClient) -> None:
        make = target.maker(f"b{index}", args.seed * 1000 + index)
        rng = random.Random(args.seed * 7919 + index + 104_729 * s.round)
        while time.perf_counter() < deadline:
            sent = target.sent
            resend = [
                rng.choice(sent)
                for _ in range(int(args.batch * args.resend))
                if len(sent) > args.batch
            ]
            resend = list({e.external_id: e for e in resend}.values())
            fresh = [make() for _ in range(args.batch - len(resend))]
            batch = fresh + resend
            rng.shuffle(batch)
            started = time.perf_counter()
            try:
                outcomes = await client.submit_events(batch, batch_size=len(batch))
            except CarbonPointsError as exc:
                phase.errors[type(exc).__name__] += 1
                continue
            finally:
                phase.requests += 1
            phase.latencies.append(time.perf_counter() - started)
            record(phase, batch, outcomes)
            target.sent.extend(fresh)

    spies = start_py_spy(s, "batched", args.duration)
    before = sample_cpu(target.server, s.idle, s.database)
    started = time.perf_counter()
    await asyncio.gather(*(task(i, client) for i, client in enumerate(clients)))
    phase.wall = time.perf_counter() - started
    phase.cpu = cpu_share(before, sample_cpu(target.server, s.idle, s.database))
    await close_all(clients)
    finish_py_spy(spies, s.profile)
    for external_id in [x for x in phase.acked if x in earlier]:
        acked = phase.acked.pop(external_id)
        phase.statuses[acked.status] -= 1
        phase.resent += 1
        phase.resent_mismatch += acked != earlier[external_id]
    return phase


async def closed_loop_slice(s: Slice) -> Phase:
    target, args = s.target, s.args
    phase = Phase("closed", s.round)
    clients = new_clients(target, args.single_tasks)
    deadline = time.perf_counter() + args.single_duration

    async def task(index: int, client: AsyncCarbonPointsClient) -> None:
        make = target.maker(f"s{index}", args.seed * 2000 + index)
        while time.perf_counter() < deadline:
            event = make()
            started = time.perf_counter()
            try:
                outcome = await client.submit_event(event)
            except CarbonPointsError as exc:
                phase.errors[type(exc).__name__] += 1
                continue
            finally:
                phase.requests += 1
            phase.latencies.append(time.perf_counter() - started)
            record(phase, [event], [outcome])

    spies = start_py_spy(s, "single closed loop", args.single_duration)
    before = sample_cpu(target.server, s.idle, s.database)
    started = time.perf_counter()
    await asyncio.gather(*(task(i, client) for i, client in enumerate(clients)))
    phase.wall = time.perf_counter() - started
    phase.cpu = cpu_share(before, sample_cpu(target.server, s.idle, s.database))
    await close_all(clients)
    finish_py_spy(spies, s.profile)
    return phase


async def open_loop_slice(s: Slice) -> Phase:
    target, args = s.target, s.args
    phase = Phase("open", s.round)
    clients = new_clients(target, args.open_connections)
    make = target.maker("o", args.seed * 3000)
    total = int(args.rate * args.open_duration)
    interval = 1.0 / args.rate
    in_flight: set[asyncio.Task[None]] = set()
    scheduled_at: dict[asyncio.Task[None], float] = {}

    # Requests wait here for a free connection (a client with one), first come first served.
    idle: asyncio.Queue[AsyncCarbonPointsClient] = asyncio.Queue()
    for client in clients:
        idle.put_nowait(client)

    async def send(event: Event, scheduled: float) -> None:
        client = await idle.get()
        try:
            outcome = await client.submit_event(event)
        except CarbonPointsError as exc:
            phase.errors[type(exc).__name__] += 1
            return
        finally:
            idle.put_nowait(client)
            phase.requests += 1
        phase.latencies.append(time.perf_counter() - scheduled)
        record(phase, [event], [outcome])

    events = [make() for _ in range(total)]  # built before the clock: the schedule stays honest
    before = sample_cpu(target.server, s.idle, s.database)
    start = time.perf_counter()
    for i, event in enumerate(events):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        job = asyncio.create_task(send(event, scheduled))
        scheduled_at[job] = scheduled
        in_flight.add(job)
        job.add_done_callback(in_flight.discard)
    # An overloaded server would take minutes to drain the backlog: stop waiting after
    # --drain seconds; what is cut off counts with its latency so far (a lower bound).
    _, late = await asyncio.wait(in_flight, timeout=args.drain) if in_flight else (set(), set())
    for job in late:
        job.cancel()
    cut_off = time.perf_counter()
    phase.latencies += [cut_off - scheduled_at[job] for job in late]
    phase.cut_off = len(late)
    await asyncio.gather(*late, return_exceptions=True)
    phase.wall = cut_off - start
    phase.cpu = cpu_share(before, sample_cpu(target.server, s.idle, s.database))
    await close_all(clients)
    return phase


SLICES: dict[str, Callable[[Slice], Awaitable[Phase]]] = {
    "batched": batched_slice,
    "closed": closed_loop_slice,
    "open": open_loop_slice,
}


# --- py-spy (the service only) ----------------------------------------------------------------


def start_py_spy(
    s: Slice, phase: str, duration: float
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    if not s.args.py_spy or s.target.name != SERVICE or s.round != 0:
        return []
    binary = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    out = Path(s.args.py_spy)
    out.mkdir(parents=True, exist_ok=True)
    spies = []
    seconds = max(2, int(duration) - 2)
    s.profile.append(f"\n{phase}:")
    for pid in s.target.server.worker_pids():
        path = out / f"{phase.replace(' ', '-')}-worker-{pid}.txt"
        command = [binary, "record", "-p", str(pid), "-d", str(seconds), "-r", "97"]
        command += ["-f", "raw", "-o", str(path), "--nonblocking"]
        spies.append(
            (subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), path)
        )
    s.profile.append(f"py-spy: {len(spies)} worker(s), {seconds} s each, raw stacks in {out}/")
    return spies


def finish_py_spy(spies: list[tuple[subprocess.Popen[bytes], Path]], profile: list[str]) -> None:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for process, path in spies:
        process.wait(timeout=60)
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            frames = stack.split(";")
            total += count
            own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
    if not total:
        if spies:
            profile.append("py-spy recorded nothing (ptrace not permitted?)")
        return
    profile.append(f"{total} samples; top frames by own time:")
    profile += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(20)]
    profile.append("project frames by inclusive time:")
    ours = [
        (frame, n)
        for frame, n in inclusive.most_common()
        if any(part in frame for part in ("service/", "points_rules/", "integrations/"))
    ]
    profile += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in ours[:25]]


# --- checks -----------------------------------------------------------------------------------

_CHECK = """
SELECT
  count(*) AS acked,
  count(*) FILTER (WHERE e.id IS NULL) AS missing_event,
  count(*) FILTER (WHERE e.status IS DISTINCT FROM a.status) AS status_differs,
  count(*) FILTER (WHERE a.status IN ('credited', 'capped')) AS acked_credited,
  count(*) FILTER (WHERE a.status IN ('credited', 'capped') AND c.n <> 1) AS credit_rows_not_one,
  count(*) FILTER (WHERE a.status NOT IN ('credited', 'capped') AND c.n <> 0) AS stray_credit_rows,
  count(*) FILTER (WHERE a.status IN ('credited', 'capped') AND (a.points > 0 OR a.grams > 0)
                   AND t.n <> 1) AS ledger_not_one,
  count(*) FILTER (WHERE (a.points = 0 AND a.grams = 0) AND t.n <> 0) AS stray_ledger,
  count(*) FILTER (WHERE a.status IN ('credited', 'capped')
                   AND (a.credit_id IS DISTINCT FROM e.id::text
                        OR c.points IS DISTINCT FROM a.points
                        OR c.transaction_id IS DISTINCT FROM e.credit_transaction_id
                        OR c.transaction_id IS DISTINCT FROM t.id)) AS ids_or_points_disagree,
  coalesce(sum(a.points) FILTER (WHERE a.status IN ('credited', 'capped')), 0) AS points
FROM bench_acked a
LEFT JOIN partner_events e ON e.partner_id = $1 AND e.external_id = a.external_id
LEFT JOIN LATERAL (
  SELECT count(*) AS n, max(points) AS points, max(transaction_id) AS transaction_id
  FROM credits WHERE event_id = e.id) c ON true
LEFT JOIN LATERAL (
  SELECT count(*) AS n, max(id) AS id FROM ledger_transactions
  WHERE origin = 'crediting' AND idempotency_key = 'event:' || e.id) t ON true
"""

_GLOBAL = """
SELECT
  (SELECT count(*) FROM partner_events) AS events,
  (SELECT count(*) FROM partner_events WHERE status IN ('credited', 'capped')) AS events_credited,
  (SELECT count(*) FROM credits) AS credits,
  (SELECT count(*) FROM (SELECT event_id FROM credits GROUP BY event_id HAVING count(*) > 1) d)
    AS duplicate_credits,
  (SELECT count(*) FROM ledger_transactions WHERE origin = 'crediting') AS ledger_credits,
  (SELECT count(*) FROM credits WHERE points > 0 OR grams > 0) AS credits_with_value,
  (SELECT count(*) FROM (SELECT idempotency_key FROM ledger_transactions
     WHERE origin = 'crediting' GROUP BY idempotency_key HAVING count(*) > 1) d)
    AS duplicate_ledger_keys
"""

_MINIMAL_CHECK = """
SELECT
  count(*) AS acked,
  count(*) FILTER (WHERE e.n <> 1) AS event_rows_not_one,
  count(*) FILTER (WHERE e.n = 1 AND (e.points IS DISTINCT FROM a.points
                                      OR e.id::text IS DISTINCT FROM a.credit_id))
    AS ids_or_points_disagree,
  coalesce(sum(a.points), 0) AS points
FROM bench_acked a
LEFT JOIN LATERAL (
  SELECT count(*) AS n, max(id) AS id, max(points) AS points FROM floor_events
  WHERE partner_id = $1 AND external_id = a.external_id) e ON true
"""

_MINIMAL_GLOBAL = """
SELECT
  (SELECT count(*) FROM floor_events) AS events,
  (SELECT count(*) FROM floor_postings) AS postings,
  (SELECT coalesce(sum(amount), 0) FROM floor_postings) AS postings_sum,
  (SELECT coalesce(sum(points), 0) FROM floor_events) AS event_points,
  (SELECT coalesce(sum(points), 0) FROM floor_balances) AS balance_points
"""


async def _load_acked(conn: asyncpg.Connection, acked: dict[str, Acked]) -> None:
    await conn.execute(
        "CREATE TEMP TABLE bench_acked (external_id text PRIMARY KEY, status text,"
        " points bigint, grams bigint, credit_id text)"
    )
    await conn.copy_records_to_table(
        "bench_acked",
        records=[(x, a.status, a.points, a.grams, a.credit_id) for x, a in acked.items()],
    )
    await conn.execute("ANALYZE bench_acked")


def _verdict_line(bad: dict[str, int]) -> str:
    return (
        "exactly once: "
        + ("OK" if not any(bad.values()) else "FAILED")
        + " ("
        + ", ".join(f"{k}={v}" for k, v in bad.items())
        + ")"
    )


async def check(target: Target) -> list[str]:
    """The exactly-once checks of a database with the service's schema."""
    acked = target.acked()
    conn = await asyncpg.connect(to_asyncpg_dsn(target.setup.database_url))
    try:
        await _load_acked(conn, acked)
        row = await conn.fetchrow(_CHECK, target.setup.partner_id)
        glob = await conn.fetchrow(_GLOBAL)
    finally:
        await conn.close()
    assert row is not None
    assert glob is not None
    bad = {
        k: row[k]
        for k in (
            "missing_event",
            "status_differs",
            "credit_rows_not_one",
            "stray_credit_rows",
            "ledger_not_one",
            "stray_ledger",
            "ids_or_points_disagree",
        )
    }
    bad["duplicate_credits"] = glob["duplicate_credits"]
    bad["duplicate_ledger_keys"] = glob["duplicate_ledger_keys"]
    bad["credits_vs_credited_events"] = glob["credits"] - glob["events_credited"]
    bad["ledger_vs_credits_with_value"] = glob["ledger_credits"] - glob["credits_with_value"]
    bad["resent_outcome_differs"] = sum(
        p.resent_mismatch for slices in target.slices.values() for p in slices
    )
    return [
        f"acknowledged external ids: {row['acked']:,}; credited/capped: {row['acked_credited']:,}"
        f" ({row['points']:,} points)",
        f"database: {glob['events']:,} events, {glob['events_credited']:,} credited/capped, "
        f"{glob['credits']:,} credits rows, {glob['ledger_credits']:,} ledger credit transactions"
        f" ({glob['credits_with_value']:,} credits with points or grams)",
        _verdict_line(bad),
    ]


async def check_minimal(target: Target) -> list[str]:
    """The minimal floor: one event row per acknowledged id, postings and balances add up."""
    acked = target.acked()
    conn = await asyncpg.connect(to_asyncpg_dsn(target.setup.database_url))
    try:
        await _load_acked(conn, acked)
        row = await conn.fetchrow(_MINIMAL_CHECK, target.setup.partner_id)
        glob = await conn.fetchrow(_MINIMAL_GLOBAL)
    finally:
        await conn.close()
    assert row is not None
    assert glob is not None
    bad = {
        "event_rows_not_one": row["event_rows_not_one"],
        "ids_or_points_disagree": row["ids_or_points_disagree"],
        "postings_not_two_per_event": glob["postings"] - 2 * glob["events"],
        "postings_sum": glob["postings_sum"],
        "balances_vs_events": glob["balance_points"] - glob["event_points"],
        "resent_outcome_differs": sum(
            p.resent_mismatch for slices in target.slices.values() for p in slices
        ),
    }
    return [
        f"acknowledged external ids: {row['acked']:,} ({row['points']:,} points)",
        f"database: {glob['events']:,} events, {glob['postings']:,} postings",
        _verdict_line(bad),
    ]


async def analyze(database_url: str) -> None:
    """Statistics for the checks and the verifier, once the measuring is over. Never analyzed,
    the ledger's tables get plans made for empty tables: `ledger verify` then takes ten times
    as long (67 s instead of 7.5 s for 17,000 transactions on this machine)."""
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def run_verify(database_url: str) -> str:
    engine = create_engine(database_url, pool_size=2)
    try:
        started = time.perf_counter()
        report = await verify_ledger(engine)
        seconds = time.perf_counter() - started
    finally:
        await engine.dispose()
    verdict = "OK" if report.ok else f"{len(report.violations)} violation(s)"
    shown = "".join(f"\n    {v}" for v in report.violations[:10])
    return (
        f"ledger verify: {report.transactions:,} transactions, {report.postings:,} postings, "
        f"{report.accounts:,} accounts, {report.lots:,} lots: {verdict} ({seconds:.1f} s){shown}"
    )


_FLOOR_STATS = re.compile(r"^floor-stats .*$", re.MULTILINE)


def floor_statements(target: Target) -> str | None:
    """Statements per request, from the floor workers' totals in the server log."""
    totals: Counter[str] = Counter()
    for line in _FLOOR_STATS.findall(target.server.log_path.read_text(errors="replace")):
        for part in line.split()[1:]:
            key, _, value = part.partition("=")
            if value.isdigit() and key != "pid":
                totals[key] += int(value)
    if not totals:
        return None
    parts = []
    for kind in ("single", "batch"):
        requests = totals[f"{kind}_requests"]
        if requests:
            parts.append(
                f"{kind} {totals[f'{kind}_statements'] / requests:.2f} statements/request"
                f" (+ {totals[f'{kind}_begin_commit'] / requests:.0f} BEGIN/COMMIT;"
                f" {requests:,} requests)"
            )
    if totals["retries"]:
        parts.append(f"{totals['retries']} deadlock retries")
    return "; ".join(parts)


# --- the run ------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, targets: list[Target]) -> bool:
    profile: list[str] = []
    try:
        await asyncio.gather(*(t.server.wait_ready() for t in targets))
        for t in targets:
            print(f"{t.name}: {t.server.base_url}, workers {t.server.worker_pids()}", flush=True)
        for t in targets:
            await warm_up(t, args)
        durations = {
            "batched": args.duration,
            "closed": args.single_duration,
            "open": args.open_duration,
        }
        for name in PHASES:
            if durations[name] <= 0:
                continue
            print(f"\n{title(name, args)}", flush=True)
            for round_ in range(args.rounds):
                # The order rotates, so no server always runs first (or after the slowest).
                order = targets[round_ % len(targets) :] + targets[: round_ % len(targets)]
                for t in order:
                    idle = [other.server for other in targets if other is not t]
                    phase = await SLICES[name](Slice(t, idle, args, round_, profile))
                    t.slices.setdefault(name, []).append(phase)
                    report_slice(t, phase)
                    await asyncio.sleep(args.settle)
    finally:
        for t in targets:
            t.server.stop()
    for line in profile:
        print(line)

    ok = True
    print("\nchecks", flush=True)
    for t in targets:
        print(f"  {t.name}:")
        await analyze(t.setup.database_url)
        lines = await (check_minimal(t) if t.name == MINIMAL else check(t))
        if t.name == SERVICE_FLAGS:
            lines.append(await flagged_share(t.setup.database_url))
        verify = t.name in SERVICES or (t.name == SAME_WRITES and args.verify_floor)
        if verify and not args.skip_verify:
            lines.append(await run_verify(t.setup.database_url))
        for line in lines:
            ok = ok and "FAILED" not in line and "violation" not in line
            print("    " + line)
        if t.name in FLOORS:
            stats = floor_statements(t)
            print(f"    statements: {stats or 'no floor-stats line in ' + str(t.server.log_path)}")
    return ok


def title(name: str, args: argparse.Namespace) -> str:
    if name == "batched":
        return (
            f"batched: {args.batch} events a request, {args.tasks} senders, "
            f"{args.rounds} x {args.duration:g} s per server"
        )
    if name == "closed":
        return (
            f"single events, closed loop: {args.single_tasks} senders, "
            f"{args.rounds} x {args.single_duration:g} s per server"
        )
    return (
        f"single events, open loop at {args.rate:g}/s: {args.open_connections} connections, "
        f"{args.rounds} x {args.open_duration:g} s per server (+ at most {args.drain:g} s drain)"
    )


def report_slice(target: Target, phase: Phase) -> None:
    cpu = " ".join(f"{k} {v:.2f}" for k, v in phase.cpu.items())
    unit = "credited/s" if phase.name == "batched" else "events/s"
    extra = ""
    if phase.name == "batched":
        extra = f"; re-sent {phase.resent:,} (outcome differs: {phase.resent_mismatch})"
    if phase.cut_off:
        extra += f"; cut off {phase.cut_off:,}"
    errors = dict(phase.errors)
    print(
        f"  r{phase.round + 1} {target.name:<18} {phase.throughput:>9,.0f} {unit} "
        f"({len(phase.acked):,} events, {phase.requests:,} requests, {phase.wall:.1f} s); "
        f"p50 {phase.percentile(50):,.1f} ms, p99 {phase.percentile(99):,.1f} ms{extra}; "
        f"errors {errors or 0}; statuses {dict(phase.statuses)}; cores: {cpu}",
        flush=True,
    )


# --- the summary ----------------------------------------------------------------------------------


@dataclass
class Figures:
    """The medians over rounds of one phase on one server."""

    throughput: float
    rounds: list[float]
    p50: float
    p99: float
    cpu: dict[str, float]
    errors: int
    cut_off: int


def figures(slices: Sequence[Phase]) -> Figures:
    return Figures(
        throughput=statistics.median(p.throughput for p in slices),
        rounds=[p.throughput for p in slices],
        p50=statistics.median(p.percentile(50) for p in slices),
        p99=statistics.median(p.percentile(99) for p in slices),
        cpu={g: statistics.median(p.cpu.get(g, 0.0) for p in slices) for g in CPU_GROUPS},
        errors=sum(sum(p.errors.values()) for p in slices),
        cut_off=sum(p.cut_off for p in slices),
    )


CORES_SHOWN = ("generator", "server", "postgres", "postgres other", "redis", "rest")
CORES_HEADER = "cores: generator/server/postgres/pg other/redis/rest of machine"


def summary(args: argparse.Namespace, targets: Sequence[Target], ok: bool) -> None:
    print(
        f"\nsummary: median of {args.rounds} round(s) per server; workers {args.workers}; "
        f"load generator on the same {os.cpu_count()} cores"
    )
    by_phase: dict[str, dict[str, Figures]] = {}
    for name in PHASES:
        per_server = {t.name: figures(t.slices[name]) for t in targets if t.slices.get(name)}
        if not per_server:
            continue
        by_phase[name] = per_server
        floor_min = per_server.get(MINIMAL)
        floor_same = per_server.get(SAME_WRITES)
        print(f"\n{title(name, args)}")
        if name == "open":
            header = (
                f"  {'server':<18} {'achieved/s':>10} {'p50 ms':>9} {'p99 ms':>9} "
                f"{'/minimal':>8} {'/same-wr':>8} {'p99 x min':>9} {'p99 x sw':>9} "
                f"{'cut off':>7}  {CORES_HEADER}"
            )
        else:
            unit = "credited/s" if name == "batched" else "events/s"
            header = (
                f"  {'server':<18} {unit:>10} {'p50 ms':>9} {'p99 ms':>9} "
                f"{'/minimal':>8} {'/same-wr':>8}  {'rounds':<26} {CORES_HEADER}"
            )
        print(header)
        for server, f in per_server.items():
            cores = "/".join(f"{f.cpu[g]:.2f}" for g in CORES_SHOWN)
            common = (
                f"  {server:<18} {f.throughput:>10,.0f} {f.p50:>9,.1f} {f.p99:>9,.1f} "
                f"{ratio(f.throughput, floor_min.throughput if floor_min else None):>8} "
                f"{ratio(f.throughput, floor_same.throughput if floor_same else None):>8}"
            )
            if name == "open":
                p99_min = ratio(f.p99, floor_min.p99 if floor_min else None)
                p99_same = ratio(f.p99, floor_same.p99 if floor_same else None)
                print(f"{common} {p99_min:>9} {p99_same:>9} {f.cut_off:>7,}  {cores}")
            else:
                rounds = " ".join(f"{r:,.0f}" for r in f.rounds)
                print(f"{common}  {rounds:<26} {cores}")
        service = per_server.get(SERVICE)
        if service and (floor_min or floor_same):
            of_min = ratio(service.throughput, floor_min.throughput if floor_min else None)
            of_same = ratio(service.throughput, floor_same.throughput if floor_same else None)
            print(f"  service / minimal floor: {of_min}; service / same-writes floor: {of_same}")
        flags = per_server.get(SERVICE_FLAGS)
        if service and flags:
            # The flagging cost: the same load, interleaved, with every rule on and off.
            pairs = " ".join(
                f"{on / off:.3f}"
                for on, off in zip(flags.rounds, service.rounds, strict=False)
                if off
            )
            print(
                f"  flags on / service: {ratio(flags.throughput, service.throughput)} "
                f"(medians); per round: {pairs}"
            )
    targets_table(args, by_phase, ok, any(t.name == SERVICE for t in targets))


def targets_table(
    args: argparse.Namespace, by_phase: dict[str, dict[str, Figures]], ok: bool, service: bool
) -> None:
    rows: list[tuple[str, str, str, str]] = []
    batched = by_phase.get("batched", {})
    if SERVICE in batched:
        s = batched[SERVICE]
        floor_min = batched.get(MINIMAL)
        floor_same = batched.get(SAME_WRITES)
        of_min = s.throughput / floor_min.throughput if floor_min and floor_min.throughput else None
        of_same = (
            s.throughput / floor_same.throughput if floor_same and floor_same.throughput else None
        )
        rows.append(
            (
                f"batched ({args.batch}/request, {args.tasks} senders): credited events/s",
                f"{s.throughput:,.0f}",
                f">= {TARGET_BATCHED:,.0f}",
                verdict(s.throughput >= TARGET_BATCHED),
            )
        )
        if of_min is not None:
            rows.append(
                (
                    "  / minimal floor (8,000/s is about 0.4 of it)",
                    f"{of_min:.2f}",
                    f">= {TARGET_BATCHED_OF_MINIMAL:g}",
                    verdict(of_min >= TARGET_BATCHED_OF_MINIMAL),
                )
            )
        if of_same is not None:
            rows.append(
                (
                    "  / same-writes floor",
                    f"{of_same:.2f}",
                    f">= {TARGET_BATCHED_OF_SAME_WRITES:g}",
                    verdict(of_same >= TARGET_BATCHED_OF_SAME_WRITES),
                )
            )
        met = s.throughput >= TARGET_BATCHED or (
            of_same is not None and of_same >= TARGET_BATCHED_OF_SAME_WRITES
        )
        rows.append(
            (
                "  batched target (8,000/s, or 0.7 of the same-writes floor)",
                "",
                "",
                verdict(met),
            )
        )
        rows.append(
            ("  batch request latency p50 / p99", f"{s.p50:,.0f} / {s.p99:,.0f} ms", "", "")
        )
    closed = by_phase.get("closed", {})
    if SERVICE in closed:
        s = closed[SERVICE]
        rows.append(
            (
                f"single, closed loop ({args.single_tasks} senders): events/s",
                f"{s.throughput:,.0f}",
                f">= {TARGET_SINGLE:,.0f}",
                verdict(s.throughput >= TARGET_SINGLE),
            )
        )
        rows.append(("  latency p50 / p99", f"{s.p50:,.1f} / {s.p99:,.1f} ms", "", ""))
    opened = by_phase.get("open", {})
    if SERVICE in opened:
        s = opened[SERVICE]
        rows.append(
            (
                f"single, open loop at {args.rate:g}/s: achieved events/s",
                f"{s.throughput:,.0f}",
                f"{args.rate:g}",
                verdict(s.throughput >= 0.98 * args.rate and not s.errors and not s.cut_off),
            )
        )
        rows.append(
            (
                "  latency from schedule p50 / p99",
                f"{s.p50:,.1f} / {s.p99:,.1f} ms",
                f"p99 <= {TARGET_P99_MS:g} ms",
                verdict(s.p99 <= TARGET_P99_MS),
            )
        )
    label = "exactly once + ledger verify" + ("" if service else " (floors)")
    rows.append((label, "OK" if ok else "FAILED", "OK", verdict(ok)))
    width = max(len(r[0]) for r in rows)
    print("\ntargets (PRODUCT.md), the service's medians" if service else "\nchecks")
    print(f"  {'':{width}}  {'measured':>22}  {'target':>14}")
    for name, measured, target, mark in rows:
        print(f"  {name:{width}}  {measured:>22}  {target:>14}  {mark}")


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--redis-db", type=int, default=14)
    parser.add_argument("--workers", type=int, default=2, help="worker processes per server")
    parser.add_argument("--pool", type=int, default=10, help="DB connections per worker")
    parser.add_argument("--participants", type=int, default=20_000)
    parser.add_argument(
        "--only", choices=("all", "service", "floors"), default="all", help="servers to measure"
    )
    parser.add_argument("--rounds", type=int, default=3, help="slices per server and phase")
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds per slice (batched; default of all)"
    )
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=6, help="concurrent batch senders")
    parser.add_argument("--resend", type=float, default=0.015, help="share of a batch re-sent")
    parser.add_argument("--single-duration", type=float, help="closed loop slice, s")
    parser.add_argument("--single-tasks", type=int, default=32)
    parser.add_argument("--rate", type=float, default=800.0, help="open-loop events/s")
    parser.add_argument("--open-duration", type=float, help="open loop slice, s")
    parser.add_argument("--open-connections", type=int, default=64)
    parser.add_argument("--drain", type=float, default=2.0, help="open loop: wait at most")
    parser.add_argument("--settle", type=float, default=0.5, help="quiet between slices, s")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--py-spy", metavar="DIR", help="profile the service's workers")
    parser.add_argument("--skip-verify", action="store_true")
    parser.add_argument(
        "--verify-floor",
        action="store_true",
        help="ledger verify on the same-writes floor's database too (slow: it holds the most)",
    )
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument(
        "--pgbouncer",
        action="store_true",
        help="the service reaches PostgreSQL through a PgBouncer in transaction pooling mode"
        " (Debian's pgbouncer, started for the run; CARBON_POINTS_DB_PGBOUNCER=true); set-up,"
        " checks and ledger verify go direct",
    )
    parser.add_argument(
        "--pgbouncer-pool",
        type=int,
        help="PgBouncer's server connections (default: --workers x --pool)",
    )
    parser.add_argument(
        "--flag-rules",
        action="store_true",
        help="also measure the service with every flag rule on (its own database), interleaved"
        " with the others; the summary gives its ratio to the service",
    )
    args = parser.parse_args()
    if args.single_duration is None:
        args.single_duration = args.duration
    if args.open_duration is None:
        args.open_duration = args.duration
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    name = f"carbon_points_bench_crediting_{os.getpid()}"
    wanted = {
        "all": [SERVICE, MINIMAL, SAME_WRITES],
        "service": [SERVICE],
        "floors": [MINIMAL, SAME_WRITES],
    }[args.only]
    if args.flag_rules and SERVICE in wanted:
        wanted.insert(wanted.index(SERVICE) + 1, SERVICE_FLAGS)
    databases = {
        SERVICE: name,
        SERVICE_FLAGS: f"{name}_flags",
        MINIMAL: f"{name}_floor",
        SAME_WRITES: f"{name}_samewrites",
    }
    server_url = args.database_url
    secrets_env = {
        "CARBON_POINTS_PARTNER_SECRET_KEY": secrets.token_urlsafe(48),
        "CARBON_POINTS_IDENTIFIER_PEPPER": secrets.token_urlsafe(48),
        "CARBON_POINTS_JWT_SIGNING_KEY": secrets.token_urlsafe(48),
    }
    pepper = secrets_env["CARBON_POINTS_IDENTIFIER_PEPPER"]
    workdir = Path(tempfile.mkdtemp(prefix="bench-crediting-"))
    print(describe_machine())
    print(
        f"databases {', '.join(databases[w] for w in wanted)}; server logs under {workdir}",
        flush=True,
    )
    for target in wanted:
        database = databases[target]
        asyncio.run(admin(server_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        asyncio.run(admin(server_url, f'CREATE DATABASE "{database}"'))
    ok = False
    targets: list[Target] = []
    bouncer: PgBouncerServer | None = None
    try:
        started = time.perf_counter()
        setups: dict[str, Setup] = {}
        for target in (SERVICE, SERVICE_FLAGS, SAME_WRITES):
            if target in wanted:
                url = database_url_for(server_url, databases[target])
                migrations.upgrade(url)
                setups[target] = asyncio.run(populate(url, secrets_env, args.participants))
                if target == SERVICE_FLAGS:
                    asyncio.run(enable_flag_rules(url))
        if MINIMAL in wanted:
            url = database_url_for(server_url, databases[MINIMAL])
            asyncio.run(create_minimal_schema(to_asyncpg_dsn(url)))
            setups[MINIMAL] = Setup(
                url,
                uuid.uuid4(),
                "pk_floor" + secrets.token_hex(8),
                secrets.token_urlsafe(32),
                [card_number(i) for i in range(args.participants)],
            )
        print(
            f"set up in {time.perf_counter() - started:.1f} s: "
            f"{args.participants:,} linked participants",
            flush=True,
        )
        # The service's pool is pool_size + max_overflow per worker (service/db.py); a floor's,
        # --pool per worker, closed again when idle.
        wanted_connections = sum(
            args.workers * args.pool * (2 if w in SERVICES else 1) for w in wanted
        )
        limit = asyncio.run(max_connections(server_url))
        print(
            f"PostgreSQL max_connections {limit}; the servers of this run may open up to "
            f"{wanted_connections}",
            flush=True,
        )
        if args.pgbouncer and SERVICE in wanted:
            if reason := missing_pgbouncer(for_tests=False):
                raise SystemExit(f"--pgbouncer: {reason}")
            pool = args.pgbouncer_pool or args.workers * args.pool
            bouncer = PgBouncerServer(
                Path(tempfile.mkdtemp(prefix="bench-pgbouncer-")), server_url, pool_size=pool
            ).start()
            print(
                f"the service goes through PgBouncer (transaction pooling, {pool} server"
                f" connections) at {bouncer.url(databases[SERVICE])}",
                flush=True,
            )
        for target in wanted:
            setup = setups[target]
            if target in SERVICES:
                env = {
                    **os.environ,
                    **secrets_env,
                    # Each service its own database (the flags-on one too), through the
                    # PgBouncer when there is one.
                    "DATABASE_URL": (
                        bouncer.url(databases[target]) if bouncer else setup.database_url
                    ),
                    "CARBON_POINTS_DB_PGBOUNCER": "true" if bouncer else "false",
                    "REDIS_URL": redis_url_with_db(args.redis_url, args.redis_db),
                    "CARBON_POINTS_LOG_LEVEL": "WARNING",
                    "CARBON_POINTS_DATA_DIR": str(workdir / "data"),
                    "CARBON_POINTS_DB_POOL_SIZE": str(args.pool),
                }
                command = service_command
            else:
                env = {
                    **os.environ,
                    "FLOOR_MODE": "minimal" if target == MINIMAL else "samewrites",
                    "FLOOR_DATABASE_URL": to_asyncpg_dsn(setup.database_url),
                    "FLOOR_KEY_ID": setup.key_id,
                    "FLOOR_SECRET": setup.secret,
                    "FLOOR_PARTNER_ID": str(setup.partner_id),
                    "FLOOR_PEPPER": pepper,
                    "FLOOR_POOL": str(args.pool),
                }
                command = partial(floor_command, "floor_app")
            log = workdir / f"{target.replace(' ', '-')}.log"
            server = Server(target, command(free_port(), args.workers), env, args.workers, log)
            targets.append(Target(target, setup, server))
        ok = asyncio.run(run(args, targets))
        summary(args, targets, ok)
    finally:
        for t in targets:
            t.server.stop()
        if bouncer is not None:
            bouncer.stop()
        for target in wanted:
            database = databases[target]
            if args.keep_database:
                print(f"kept database {database}")
            else:
                asyncio.run(admin(server_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
