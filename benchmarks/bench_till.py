"""Benchmark: a merchant's tills (authorise + capture) over HTTP, against a floor in the same run.

Run (from the repository root):

    .venv/bin/python benchmarks/bench_till.py [--workers 2] [--rounds 3] [--duration 5]
    .venv/bin/python benchmarks/bench_till.py --duration 3 --rounds 1     # quick look
    .venv/bin/python benchmarks/bench_till.py --only service --py-spy /tmp/spy

Issue 12: "a till's authorise + capture >= 0.5 of the floor with 16 tills of one merchant in a
closed loop, and pair p99 <= 30 ms at an open-loop 200 redemptions/s", on this machine, load
generator included. Two servers run side by side, each with ``--workers W`` worker processes,
on the same machine as PostgreSQL, Redis and the load generator:

``service``
    ``carbon-points serve`` on a fresh database ``carbon_points_bench_till_<pid>``.
``floor``
    ``benchmarks/floor_till.py`` under uvicorn with the service's settings, on its own
    database ``<db>_floor`` with its own small schema: the merchant key checked and the
    Idempotency-Key claimed (``ON CONFLICT``) in one statement, then one statement of CTEs per
    request (authorise: consume the code, check-and-hold the balance in one ``UPDATE``, insert
    the hold; capture: resolve the hold once, move the held points, add them to a shard of the
    merchant's settlement), one transaction a request. It prints its statements per request.

Set-up, through the service's public functions: ``--customers`` participants (COPY), each
credited ``--customer-points`` by the ledger's own ``service.ledger.service.credit``; ONE
merchant (``create_merchant``) with ``--tills`` terminals (``add_terminal``), each with its own
``redeem`` key bound to it (``issue_key``). The floor gets the same customers and points, and
one key per till. Before every slice, each server gets fresh single-use redemption codes (the
service's ``create_token``; rows in the floor's table), one per pair it may run, each for a
random customer; minting is outside the measured time (codes live two minutes).

A pair, as a till does it: ``POST /v1/merchant/redemptions`` with ``{"redemption_token": code,
"points": --points}`` and an Idempotency-Key (201, the redemption's id), then ``POST
/v1/merchant/redemptions/{id}/capture`` with ``{}`` and another Idempotency-Key (200,
``captured``). Both servers get the same requests, from the same generator.

Phases, each interleaved round robin: ``--rounds`` rounds; in each round every server gets one
slice of the phase (the order rotates from round to round), ``--settle`` s of quiet between.

1. Closed loop: ``--tills`` tills (16) of the one merchant, one connection each, each starting
   its next pair as soon as the last is captured, for ``--closed-duration`` s. (Should a
   server outrun the codes minted for it, its tills stop early and the rate is over the time
   they ran; the slice says so.)
2. Open loop at ``--rate`` pairs/s (200): a schedule drawn before the clock starts, pairs
   handed to the tills in turn, each pair on one of at most ``--connections`` connections,
   kept from authorise to capture; the pair's latency runs from its *scheduled* time to the
   capture's answer (no coordinated omission: waiting for a connection counts); after the
   schedule, at most ``--drain`` s more, then what is unfinished is cancelled and counted.

Per phase, a table: the median over rounds per server (pairs/s, pair p50/p99, authorise and
capture p99), the service's ratio to the floor, the cores each process group used (from
/proc: the generator, the server under test, PostgreSQL's backends of the two databases and
its other processes, Redis, and the rest of the machine: a busy "rest" means the box was
shared). Then the floor's statements per authorise and per capture, and the targets.

Checks, after the run: every acknowledged capture is, as ``service.merchants.service.view``
reads it from the ledger, ``captured`` with the points captured once; every customer's POINTS
posted and held (``service.ledger.service.balance``) are what the acknowledged pairs leave
(requests that got no answer may or may not have landed: the check allows for them); then
``verify_ledger`` (``carbon-points ledger verify``) on the service's database. The floor's
database gets the same checks in SQL (and its settlement shards sum to the captured points).
The script exits with status 1 if a check fails. A default run takes about two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
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

# Runnable as `python benchmarks/bench_till.py` from a checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import orjson

from benchmarks import _harness as h
from benchmarks.floor_till import create_schema, token_hash
from service import migrations
from service.db import create_engine, create_sessionmaker
from service.embedded import to_asyncpg_dsn
from service.ledger import service as ledger
from service.ledger.schemas import CreditRequest
from service.ledger.verify import verify_ledger
from service.merchants import service as merchants
from service.merchants.auth import issue_key
from service.redemption import service as redemptions
from service.redemption.service import create_token

SERVICE = "service"
FLOOR = "floor"
TARGET_OF_FLOOR = 0.5
TARGET_RATE = 200.0
TARGET_P99_MS = 30.0
PROJECT_FRAMES = ("service/",)


# --- set-up -------------------------------------------------------------------------------


@dataclass
class Setup:
    """What the load generator needs to reach one server's merchant and customers."""

    database: str
    database_url: str
    keys: list[str]  # one merchant key (the full bearer token) per till
    customers: list[uuid.UUID]
    merchant_id: uuid.UUID


async def setup_service(
    server_url: str, name: str, customers: int, points: int, tills: int
) -> Setup:
    database_url = await h.recreate(server_url, name)
    await asyncio.to_thread(migrations.upgrade, database_url)
    people = [uuid.uuid4() for _ in range(customers)]
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        await conn.copy_records_to_table(
            "participants",
            records=[(p, "citizen", "Bench customer", "CN-JX") for p in people],
            columns=["id", "kind", "display_name", "region"],
        )
    finally:
        await conn.close()
    engine = create_engine(database_url, pool_size=2)
    sessionmaker = create_sessionmaker(engine)
    now = datetime.now(UTC)
    try:
        for start in range(0, customers, 500):
            batch = [
                CreditRequest(
                    origin="bench-till",
                    key=f"grant-{p}",
                    participant_id=p,
                    points=points,
                    grams=points,
                    expires_at=now + timedelta(days=365),
                    credit_id=str(start + i),
                    methodology_id="transit.metro",
                    methodology_version=1,
                )
                for i, p in enumerate(people[start : start + 500])
            ]
            async with sessionmaker() as session, session.begin():
                results = await ledger.credit(session, batch, now=now)
            if any(r.status != "created" for r in results):
                raise RuntimeError("a benchmark credit was not created")
        keys = []
        async with sessionmaker() as session, session.begin():
            merchant = await merchants.create_merchant(
                session, code="bench-till", name="Bench café", region="CN-JX"
            )
            for i in range(tills):
                terminal = await merchants.add_terminal(
                    session, merchant.id, f"till-{i + 1}", f"Till {i + 1}"
                )
                issued = await issue_key(session, merchant.id, ["redeem"], terminal.id)
                keys.append(issued.token)
            merchant_id = merchant.id
    finally:
        await engine.dispose()
    await h.execute(database_url, "VACUUM (ANALYZE)")
    return Setup(name, database_url, keys, people, merchant_id)


async def setup_floor(
    server_url: str, name: str, people: list[uuid.UUID], points: int, tills: int
) -> Setup:
    database_url = await h.recreate(server_url, name)
    dsn = to_asyncpg_dsn(database_url)
    await create_schema(dsn)
    merchant_id = uuid.uuid4()
    keys = []
    conn = await asyncpg.connect(dsn)
    try:
        rows = []
        for _ in range(tills):
            key_id, secret = "mk_" + secrets.token_hex(10), secrets.token_urlsafe(32)
            rows.append((key_id, merchant_id, hashlib.sha256(secret.encode()).digest()))
            keys.append(f"cpmk_{key_id}_{secret}")
        await conn.copy_records_to_table(
            "till_keys", records=rows, columns=["key_id", "merchant_id", "secret_hash"]
        )
        await conn.copy_records_to_table(
            "till_customers", records=[(p, points) for p in people], columns=["id", "posted"]
        )
        await conn.execute("VACUUM (ANALYZE)")
    finally:
        await conn.close()
    return Setup(name, database_url, keys, people, merchant_id)


async def mint_codes(target: Target, count: int, rng: random.Random) -> list[tuple[str, int]]:
    """`count` fresh single-use codes, each (code, customer index), for a random customer."""
    picks = [rng.randrange(len(target.setup.customers)) for _ in range(count)]
    people = target.setup.customers
    if target.name == FLOOR:
        codes = ["rt_" + secrets.token_urlsafe(24) for _ in picks]
        expires = datetime.now(UTC) + timedelta(minutes=2)
        conn = await asyncpg.connect(to_asyncpg_dsn(target.setup.database_url))
        try:
            await conn.copy_records_to_table(
                "till_tokens",
                records=[
                    (token_hash(c), people[i], expires) for c, i in zip(codes, picks, strict=True)
                ],
                columns=["token_hash", "customer_id", "expires_at"],
            )
        finally:
            await conn.close()
        return list(zip(codes, picks, strict=True))
    # The service's own function, a few sessions at a time.
    engine = create_engine(target.setup.database_url, pool_size=4)
    sessionmaker = create_sessionmaker(engine)
    out: list[tuple[str, int]] = []

    async def minter(part: list[int]) -> None:
        async with sessionmaker() as session, session.begin():
            now = datetime.now(UTC)
            for i in part:
                out.append(((await create_token(session, people[i], now=now)).token, i))

    try:
        await asyncio.gather(*(minter(picks[k::4]) for k in range(4)))
    finally:
        await engine.dispose()
    rng.shuffle(out)
    return out


# --- pairs ----------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    setup: Setup
    server: h.Server
    slices: dict[str, list[Phase]] = field(default_factory=dict)
    estimate: float = 0.0  # pairs/s, to mint enough codes for a closed-loop slice
    authorised: dict[str, tuple[int, int]] = field(default_factory=dict)  # id: customer, points
    captured: dict[str, int] = field(default_factory=dict)  # id: points
    unknown: Counter[int] = field(default_factory=Counter)  # customer: unanswered requests


@dataclass
class Phase:
    """One slice: one phase, one round, one server."""

    name: str
    wall: float = 0.0
    pairs: list[float] = field(default_factory=list)
    authorise: list[float] = field(default_factory=list)
    capture: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)
    cut_off: int = 0
    ran_out: bool = False

    @property
    def rate(self) -> float:
        return len(self.pairs) / self.wall if self.wall else 0.0


@dataclass
class Slice:
    target: Target
    idle: list[h.Server]
    args: argparse.Namespace
    databases: list[str]
    label: str


def post(port: int, path: str, key: str, idempotency_key: str, body: bytes) -> bytes:
    headers = {
        "Authorization": f"Bearer {key}",
        "Idempotency-Key": idempotency_key,
        "Content-Type": "application/json",
    }
    return h.http_request("POST", path, port, headers, body)


async def pair(
    s: Slice,
    phase: Phase,
    conn: h.Connection,
    till: int,
    code: tuple[str, int],
    n: int,
    scheduled: float,
) -> bool:
    """Authorise then capture on one connection, as a till does; the pair's latency runs from
    `scheduled`. Whether the connection may be used again."""
    target, port = s.target, s.target.server.port
    key = target.setup.keys[till]
    token, customer = code
    idempotency = f"{s.label}-{till}-{n}"
    body = orjson.dumps({"redemption_token": token, "points": s.args.points})
    stage = "authorise"
    try:
        started = time.perf_counter()
        raw = post(port, "/v1/merchant/redemptions", key, idempotency, body)
        status, answer, reusable = await conn.request(raw)
        if status != 201:
            phase.errors[f"authorise HTTP {status}"] += 1
            return reusable
        redemption = orjson.loads(answer)["id"]
        target.authorised[redemption] = (customer, s.args.points)
        middle = time.perf_counter()
        phase.authorise.append(middle - started)
        if not reusable:
            conn.close()
            conn = await h.Connection.open(port)
        stage = "capture"
        raw = post(
            port, f"/v1/merchant/redemptions/{redemption}/capture", key, idempotency + "-c", b"{}"
        )
        status, answer, reusable = await conn.request(raw)
        done = time.perf_counter()
        if status != 200 or orjson.loads(answer).get("points_captured") != s.args.points:
            phase.errors[f"capture HTTP {status}"] += 1
            return reusable
        target.captured[redemption] = s.args.points
        phase.capture.append(done - middle)
        phase.pairs.append(done - scheduled)
        return reusable
    except asyncio.CancelledError:
        target.unknown[customer] += 1
        raise
    except h.NETWORK_ERRORS as exc:
        target.unknown[customer] += 1
        phase.errors[f"{stage} {type(exc).__name__}"] += 1
        return False


async def closed_loop(s: Slice, codes: list[tuple[str, int]], duration: float) -> Phase:
    phase = Phase(f"closed loop x {s.args.tills} tills")
    server = s.target.server
    deadline = 0.0
    last = 0.0

    async def till(index: int, conn: h.Connection) -> None:
        nonlocal last
        n = 0
        try:
            while time.perf_counter() < deadline:
                if not codes:
                    phase.ran_out = True
                    break
                started = time.perf_counter()
                if not await pair(s, phase, conn, index, codes.pop(), n, started):
                    conn.close()
                    conn = await h.Connection.open(server.port)
                last = max(last, time.perf_counter())
                n += 1
        finally:
            conn.close()

    connections = [await h.Connection.open(server.port) for _ in range(s.args.tills)]
    before = h.sample_cpu(server, s.idle, s.databases)
    start = time.perf_counter()
    deadline = start + duration
    await asyncio.gather(*(till(i, c) for i, c in enumerate(connections)))
    phase.wall = (last if phase.ran_out else time.perf_counter()) - start
    phase.cpu = h.cpu_share(before, h.sample_cpu(server, s.idle, s.databases))
    return phase


async def open_loop(s: Slice, codes: list[tuple[str, int]], rate: float, duration: float) -> Phase:
    phase = Phase(f"open loop {rate:g} pairs/s")
    server = s.target.server
    total = min(int(rate * duration), len(codes))
    pool = h.Pool(server.port, s.args.connections)
    await pool.fill()
    in_flight: set[asyncio.Task[None]] = set()

    async def till_pair(till: int, code: tuple[str, int], n: int, scheduled: float) -> None:
        # The till keeps one connection for its pair (waiting for one counts in the latency).
        conn = await pool.acquire()
        reusable = False
        try:
            reusable = await pair(s, phase, conn, till, code, n, scheduled)
        finally:
            pool.release(conn, reusable)

    before = h.sample_cpu(server, s.idle, s.databases)
    start = time.perf_counter()
    for i in range(total):
        scheduled = start + i / rate
        now = time.perf_counter()
        if scheduled > now:
            await asyncio.sleep(scheduled - now)
        till = i % s.args.tills
        job = asyncio.create_task(till_pair(till, codes[i], i, scheduled))
        in_flight.add(job)
        job.add_done_callback(in_flight.discard)
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
    phase.wall = max(cut_off - start, duration)
    phase.cpu = h.cpu_share(before, h.sample_cpu(server, s.idle, s.databases))
    pool.close()
    return phase


# --- checks ---------------------------------------------------------------------------------


def expected_balances(target: Target, initial: int) -> dict[int, tuple[int, int, int]]:
    """Per customer index: (posted, held, slack): what the acknowledged pairs leave, and how
    many points unanswered requests could have moved besides."""
    posted: Counter[int] = Counter()
    held: Counter[int] = Counter()
    for redemption, (customer, points) in target.authorised.items():
        if redemption in target.captured:
            posted[customer] += target.captured[redemption]
        else:
            held[customer] += points
    return {
        i: (initial - posted[i], held[i], target.unknown[i])
        for i in range(len(target.setup.customers))
    }


def balance_problems(
    target: Target, actual: dict[int, tuple[int, int]], initial: int, points: int
) -> list[str]:
    problems = []
    for i, (posted, held, slack) in expected_balances(target, initial).items():
        got_posted, got_held = actual.get(i, (initial, 0))
        # An unanswered authorise may have held; an unanswered capture may have posted.
        ok = posted - slack * points <= got_posted <= posted and (
            held - slack * points <= got_held <= held + slack * points
        )
        if not ok:
            problems.append(
                f"customer {i}: posted {got_posted} held {got_held}, expected posted {posted}"
                f" held {held} (+/- {slack} unanswered)"
            )
    return problems


async def check_service(target: Target, args: argparse.Namespace) -> list[str]:
    setup = target.setup
    await h.execute(setup.database_url, "ANALYZE")
    engine = create_engine(setup.database_url, pool_size=4)
    sessionmaker = create_sessionmaker(engine)
    lines = []
    wrong: list[str] = []
    try:
        ids = list(target.captured)

        async def viewer(part: list[str]) -> None:
            async with sessionmaker() as session:
                for rid in part:
                    state = await redemptions.view(session, setup.merchant_id, uuid.UUID(rid))
                    if (state.status, state.points_captured) != ("captured", target.captured[rid]):
                        wrong.append(f"{rid}: {state.status} {state.points_captured}")

        await asyncio.gather(*(viewer(ids[k::4]) for k in range(4)))
        lines.append(
            f"{len(ids):,} acknowledged captures: "
            + ("each captured once (redemptions.view)" if not wrong else f"FAILED {wrong[:3]}")
        )
        actual: dict[int, tuple[int, int]] = {}
        async with sessionmaker() as session:
            for i, person in enumerate(setup.customers):
                now = await ledger.balance(session, person)
                actual[i] = (now.posted, now.held)
        problems = balance_problems(target, actual, args.customer_points, args.points)
        lines.append(
            f"{len(actual):,} customers' posted/held as the acknowledged pairs leave them: "
            + ("OK" if not problems else f"FAILED ({len(problems)}) {problems[:3]}")
        )
        if not args.skip_verify:
            started = time.perf_counter()
            report = await verify_ledger(engine)
            verdict = "OK" if report.ok else f"FAILED {len(report.violations)} violation(s)"
            shown = "".join(f"\n      {v}" for v in report.violations[:10])
            lines.append(
                f"ledger verify: {report.transactions:,} transactions, {report.postings:,} "
                f"postings: {verdict} ({time.perf_counter() - started:.1f} s){shown}"
            )
    finally:
        await engine.dispose()
    return lines


async def check_floor(target: Target, args: argparse.Namespace) -> list[str]:
    setup = target.setup
    conn = await asyncpg.connect(to_asyncpg_dsn(setup.database_url))
    lines = []
    try:
        ids = [uuid.UUID(r) for r in target.captured]
        rows = await conn.fetch(
            "SELECT id::text, captured FROM till_redemptions WHERE id = ANY($1::uuid[])"
            " AND captured_at IS NOT NULL",
            ids,
        )
        wrong = [r["id"] for r in rows if r["captured"] != target.captured[r["id"]]]
        missing = len(ids) - len(rows)
        lines.append(
            f"{len(ids):,} acknowledged captures: "
            + ("each captured once" if not (wrong or missing) else f"FAILED {missing} missing")
        )
        index = {p: i for i, p in enumerate(setup.customers)}
        actual = {
            index[r["id"]]: (r["posted"], r["held"])
            for r in await conn.fetch("SELECT id, posted, held FROM till_customers")
        }
        problems = balance_problems(target, actual, args.customer_points, args.points)
        lines.append(
            f"{len(actual):,} customers' posted/held as the acknowledged pairs leave them: "
            + ("OK" if not problems else f"FAILED ({len(problems)}) {problems[:3]}")
        )
        settled = await conn.fetchval("SELECT coalesce(sum(points), 0) FROM till_settlement")
        captured = await conn.fetchval(
            "SELECT coalesce(sum(captured), 0) FROM till_redemptions WHERE captured_at IS NOT NULL"
        )
        moved = len(setup.customers) * args.customer_points - sum(p for p, _ in actual.values())
        ok = settled == captured == moved
        lines.append(
            f"settlement shards {settled:,} = captured {captured:,} = customers' points moved "
            f"{moved:,}: {'OK' if ok else 'FAILED'}"
        )
    finally:
        await conn.close()
    return lines


def floor_statements(target: Target) -> str:
    totals = h.floor_stats(target.server.log_path)
    parts = []
    for op in ("authorise", "capture"):
        requests = totals[f"{op}_requests"]
        if requests:
            parts.append(
                f"{op} {totals[f'{op}_statements'] / requests:.2f} statements"
                f" + {totals[f'{op}_begin_commit'] / requests:.0f} BEGIN/COMMIT"
                f" ({requests:,} requests)"
            )
    return "; ".join(parts) or f"no floor-stats line in {target.server.log_path}"


# --- the run ------------------------------------------------------------------------------------


def report_slice(target: Target, phase: Phase) -> None:
    errors = sum(phase.errors.values())
    print(
        f"  {target.name:<8} {phase.rate:7,.1f} pairs/s  pair p50 "
        f"{h.percentile(phase.pairs, 50):6.1f}  p99 {h.percentile(phase.pairs, 99):7.1f} ms "
        f"(authorise p99 {h.percentile(phase.authorise, 99):.1f}, capture "
        f"{h.percentile(phase.capture, 99):.1f})  errors {errors:,}"
        f"{' ' + str(dict(phase.errors)) if errors else ''}"
        f"{'; ran out of codes' if phase.ran_out else ''}; "
        f"{h.CORES_HEADER} {h.cores(phase.cpu)}",
        flush=True,
    )


async def run(args: argparse.Namespace, targets: list[Target]) -> list[str]:
    profile: list[str] = []
    databases = [t.setup.database for t in targets]
    rng = random.Random(args.seed)
    phases: list[tuple[str, float]] = []
    if args.closed_duration > 0:
        phases.append(("closed", args.closed_duration))
    if args.duration > 0:
        phases.append(("open", args.duration))
    try:
        await asyncio.gather(*(t.server.wait_ready() for t in targets))
        for t in targets:
            print(f"{t.name}: {t.server.base_url}, workers {t.server.worker_pids()}", flush=True)
            # Warm-up (not timed, not checked): pools, prepared statements, caches; and a first
            # estimate of the rate, to mint enough codes.
            idle = [o.server for o in targets if o is not t]
            codes = await mint_codes(t, 40 * args.tills, rng)
            warm = await closed_loop(Slice(t, idle, args, databases, "warm"), codes, 2.0)
            t.estimate = warm.rate
            print(f"  warm-up: {warm.rate:,.1f} pairs/s, errors {dict(warm.errors)}", flush=True)
        for name, duration in phases:
            title = (
                f"closed loop x {args.tills} tills"
                if name == "closed"
                else (f"open loop {args.rate:g} pairs/s")
            )
            print(f"\n{title}:", flush=True)
            for round_ in range(args.rounds):
                for t in h.rotated(targets, round_):
                    if name == "closed":
                        count = int(max(t.estimate, 20.0) * duration * 2) + 2 * args.tills
                    else:
                        count = int(args.rate * duration) + 1
                    codes = await mint_codes(t, count, rng)
                    await asyncio.sleep(args.settle)
                    idle = [o.server for o in targets if o is not t]
                    label = f"{name}-{round_ + 1}"
                    s = Slice(t, idle, args, databases, f"{label}-{uuid.uuid4().hex[:6]}")
                    profiled = args.py_spy if t.name == SERVICE and round_ == 0 else None
                    spy_label = f"{t.name} {name} round {round_ + 1}"
                    spies = h.start_py_spy(profiled, t.server, spy_label, duration)
                    if name == "closed":
                        phase = await closed_loop(s, codes, duration)
                        t.estimate = max(t.estimate, phase.rate)
                    else:
                        phase = await open_loop(s, codes, args.rate, duration)
                    h.finish_py_spy(spies, spy_label, profile, PROJECT_FRAMES)
                    t.slices.setdefault(name, []).append(phase)
                    report_slice(t, phase)
    finally:
        for t in targets:
            t.server.stop()
    for line in profile:
        print(line)
    lines = ["\nchecks"]
    for t in targets:
        lines.append(f"  {t.name}:")
        found = await (check_service(t, args) if t.name == SERVICE else check_floor(t, args))
        lines += [f"    {line}" for line in found]
    for line in lines:
        print(line)
    return [line for line in lines if "FAILED" in line]


@dataclass
class Figures:
    rate: float
    rounds: list[float]
    p50: float
    p99: float
    authorise_p99: float
    capture_p99: float
    errors: int
    cpu: dict[str, float]


def figures(slices: Sequence[Phase]) -> Figures:
    return Figures(
        rate=statistics.median(p.rate for p in slices),
        rounds=[p.rate for p in slices],
        p50=statistics.median(h.percentile(p.pairs, 50) for p in slices),
        p99=statistics.median(h.percentile(p.pairs, 99) for p in slices),
        authorise_p99=statistics.median(h.percentile(p.authorise, 99) for p in slices),
        capture_p99=statistics.median(h.percentile(p.capture, 99) for p in slices),
        errors=sum(sum(p.errors.values()) for p in slices),
        cpu=h.median_cpu([p.cpu for p in slices]),
    )


def summary(args: argparse.Namespace, targets: Sequence[Target], problems: list[str]) -> None:
    print(
        f"\nsummary: median of {args.rounds} round(s) per server; workers {args.workers}, "
        f"service pool {args.pool}/worker; one merchant, {args.tills} tills, "
        f"{args.customers:,} customers, {args.points} points a pair; load generator on the "
        f"same {os.cpu_count()} cores"
    )
    verdicts = []
    for name in ("closed", "open"):
        per_server = {t.name: figures(t.slices[name]) for t in targets if t.slices.get(name)}
        if not per_server:
            continue
        floor = per_server.get(FLOOR)
        if name == "closed":
            print(f"\nclosed loop x {args.tills} tills, {args.closed_duration:g} s")
        else:
            print(f"\nopen loop {args.rate:g} pairs/s, {args.duration:g} s (+ {args.drain:g} s)")
        print(
            f"  {'server':<8} {'pairs/s':>8} {'/floor':>6} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'auth p99':>8} {'capt p99':>8} {'errors':>6}  {'rounds':<20} {h.CORES_HEADER}"
        )
        for server, f in per_server.items():
            rounds = " ".join(f"{r:,.0f}" for r in f.rounds)
            of_floor = h.ratio(f.rate, floor.rate if floor else None)
            print(
                f"  {server:<8} {f.rate:>8,.1f} {of_floor:>6} {f.p50:>8,.1f} {f.p99:>8,.1f} "
                f"{f.authorise_p99:>8,.1f} {f.capture_p99:>8,.1f} {f.errors:>6,}  "
                f"{rounds:<20} {h.cores(f.cpu)}"
            )
        service = per_server.get(SERVICE)
        if service is None:
            continue
        if name == "closed" and floor is not None:
            met = service.rate >= TARGET_OF_FLOOR * floor.rate
            verdicts.append(
                f"  closed loop x {args.tills} tills: service {service.rate:,.1f} pairs/s = "
                f"{h.ratio(service.rate, floor.rate)} of the floor's {floor.rate:,.1f} "
                f"(target >= {TARGET_OF_FLOOR:g}) -> {'met' if met else 'MISSED'}"
            )
        elif name == "open":
            kept_up = service.rate >= 0.98 * args.rate and not service.errors
            met = kept_up and service.p99 <= TARGET_P99_MS and args.rate >= TARGET_RATE
            verdicts.append(
                f"  open loop {args.rate:g} pairs/s: service achieved {service.rate:,.1f}/s, pair "
                f"p99 {service.p99:,.1f} ms, {service.errors:,} errors (target p99 <= "
                f"{TARGET_P99_MS:g} ms at {TARGET_RATE:g}/s, keeping up) -> "
                f"{'met' if met else 'MISSED'}"
                + (f"; floor p99 {floor.p99:,.1f} ms" if floor else "")
            )
    for t in targets:
        if t.name == FLOOR:
            print(f"\nfloor statements per request: {floor_statements(t)}")
    print("\ntargets (issue 12), the service's medians")
    for line in verdicts or ["  (no service phase)"]:
        print(line)
    print(f"  checks: {'OK' if not problems else 'FAILED: ' + '; '.join(problems[:3])}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="See the module docstring for what is measured and checked.",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL server; the benchmark makes (and drops) its own databases there",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--redis-db", type=int, default=13, help="the Redis db the service uses")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per server")
    parser.add_argument("--pool", type=int, default=10, help="DB connections per worker")
    parser.add_argument("--tills", type=int, default=16, help="tills (terminals) of the merchant")
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--customer-points", type=int, default=1_000_000, help="each, at start")
    parser.add_argument("--points", type=int, default=10, help="points a pair redeems")
    parser.add_argument("--rounds", type=int, default=3, help="slices per server and phase")
    parser.add_argument("--settle", type=float, default=1.0, help="quiet before each slice, s")
    parser.add_argument(
        "--closed-duration", type=float, default=5.0, help="each closed-loop slice, s; 0 skips"
    )
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="open loop, pairs/s")
    parser.add_argument("--duration", type=float, default=5.0, help="each open-loop slice, s")
    parser.add_argument("--connections", type=int, default=64, help="open loop: at most")
    parser.add_argument("--drain", type=float, default=5.0, help="open loop: wait at most, s")
    parser.add_argument("--only", choices=(SERVICE, FLOOR), help="run one server only")
    parser.add_argument("--log-level", default="WARNING", help="the service's log level")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--py-spy", metavar="DIR", help="profile the service's first slices")
    parser.add_argument("--skip-verify", action="store_true", help="no ledger verify")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    name = f"carbon_points_bench_till_{os.getpid()}"
    server_url = args.database_url
    workdir = Path(tempfile.mkdtemp(prefix="bench-till-"))
    print(h.describe_machine())
    print(f"databases {name}, {name}_floor; server logs under {workdir}", flush=True)
    problems = ["not run"]
    made: list[str] = []
    try:
        started = time.perf_counter()
        targets = []
        made.append(name)
        service = asyncio.run(
            setup_service(server_url, name, args.customers, args.customer_points, args.tills)
        )
        if args.only in (None, SERVICE):
            env = {
                **os.environ,
                "CARBON_POINTS_PARTNER_SECRET_KEY": secrets.token_urlsafe(48),
                "CARBON_POINTS_IDENTIFIER_PEPPER": secrets.token_urlsafe(48),
                "CARBON_POINTS_JWT_SIGNING_KEY": secrets.token_urlsafe(48),
                "DATABASE_URL": service.database_url,
                "REDIS_URL": h.redis_url_with_db(args.redis_url, args.redis_db),
                "CARBON_POINTS_LOG_LEVEL": args.log_level,
                "CARBON_POINTS_DATA_DIR": str(workdir / "data"),
                "CARBON_POINTS_DB_POOL_SIZE": str(args.pool),
            }
            command = h.service_command(h.free_port(), args.workers)
            server = h.Server(SERVICE, command, env, args.workers, workdir / "service.log")
            targets.append(Target(SERVICE, service, server))
        if args.only in (None, FLOOR):
            made.append(f"{name}_floor")
            floor = asyncio.run(
                setup_floor(
                    server_url, made[-1], service.customers, args.customer_points, args.tills
                )
            )
            env = {
                **os.environ,
                "FLOOR_DATABASE_URL": to_asyncpg_dsn(floor.database_url),
                "FLOOR_POOL": str(args.pool),
            }
            command = h.floor_command("floor_till", h.free_port(), args.workers)
            server = h.Server(FLOOR, command, env, args.workers, workdir / "floor.log")
            targets.append(Target(FLOOR, floor, server))
        print(
            f"set up in {time.perf_counter() - started:.1f} s: one merchant, {args.tills} tills,"
            f" {args.customers:,} customers with {args.customer_points:,} points each",
            flush=True,
        )
        problems = asyncio.run(run(args, targets))
        summary(args, targets, problems)
    finally:
        for database in made:
            if args.keep_database:
                print(f"kept database {database}")
            else:
                asyncio.run(h.drop(server_url, database))
    sys.exit(0 if not problems else 1)


if __name__ == "__main__":
    main()
