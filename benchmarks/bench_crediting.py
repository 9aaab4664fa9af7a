"""Benchmark: the crediting path end to end, over real HTTP, against PostgreSQL.

Run (from the repository root):

    .venv/bin/python benchmarks/bench_crediting.py [--workers 2] [--duration 20] [--tasks 6]

What it does (issue 5, item 8):

1. Creates a fresh database ``carbon_points_bench_crediting_<pid>`` on the server of
   ``--database-url`` (default: $DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/test),
   migrates it to head, files the methodology library, creates one partner allowed
   ``transit.metro`` and ``transit.bus`` (rate limit 100,000/s) with one credential, and
   bulk-inserts ``--participants`` participants, each linked to one card number with the
   service's own keyed hash (``subject_hash``). The secrets are random, generated here and
   handed to the server through its environment.
2. Starts ``carbon-points serve --workers W`` on a free port as a subprocess (Redis db
   ``--redis-db`` of ``--redis-url``), and waits for ``/readyz``.
3. Batched phase: ``--tasks`` concurrent tasks send signed batches of ``--batch`` metro events
   through ``AsyncCarbonPointsClient`` for ``--duration`` seconds; about ``--resend`` of each
   batch are events already acknowledged earlier, re-sent unchanged (their outcome must be the
   original one).
4. Single events: (a) closed loop, ``--single-tasks`` tasks for ``--single-duration`` s;
   (b) open loop at ``--rate`` events/s for ``--open-duration`` s. Open-loop latency runs from
   each event's *scheduled* send time to its response (no coordinated omission).
5. Checks: every acknowledged event with status credited/capped has exactly one ``credits`` row
   and, when it earned points or grams, exactly one ledger transaction with origin
   ``crediting`` and key ``event:<event id>`` (none otherwise), the ids agree across
   ``partner_events``, ``credits`` and the ledger, the stored status is the acknowledged one,
   and ``verify_ledger`` passes.
6. Stops the server, drops the database (unless ``--keep-database``), prints a summary.

The load generator runs on the same machine as the service, PostgreSQL and Redis: the CPU
share of each is printed per phase (from /proc), so the figures can be read for what they are.
``--py-spy DIR`` records every server worker with py-spy during the batched phase and prints
the top frames.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Runnable as `python benchmarks/bench_crediting.py` from a checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from integrations import AsyncCarbonPointsClient, CarbonPointsError, Event
from service import migrations
from service.db import create_engine, create_sessionmaker
from service.embedded import to_asyncpg_dsn
from service.ledger.verify import verify_ledger
from service.methodologies.service import sync_library
from service.partners.credentials import issue_credential, subject_hash
from service.partners.service import create_partner

ROOT = Path(__file__).resolve().parents[1]
CREDITED = frozenset({"credited", "capped"})
TARGET_BATCHED = 16_000.0
TARGET_SINGLE = 1_000.0
TARGET_P99_MS = 50.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- set-up -------------------------------------------------------------------------------


@dataclass
class Setup:
    database_url: str
    partner_id: uuid.UUID
    key_id: str
    secret: str
    cards: list[str]
    env: dict[str, str]


async def admin(server_url: str, statement: str) -> None:
    parsed = make_url(to_asyncpg_dsn(server_url)).set(database="postgres")
    conn = await asyncpg.connect(parsed.render_as_string(hide_password=False))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def database_url_for(server_url: str, name: str) -> str:
    return make_url(to_asyncpg_dsn(server_url)).set(database=name).render_as_string(False)


def card_number(i: int) -> str:
    return f"6222{i:012d}"


async def populate(
    database_url: str, secrets_env: dict[str, str], participants: int
) -> tuple[uuid.UUID, str, str, list[str]]:
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
    return issued.partner_id, issued.key_id, issued.secret, cards


def redis_url_with_db(url: str, db: int) -> str:
    if url.startswith("unix://"):
        return url.split("?", 1)[0] + f"?db={db}"
    base = url.rstrip("/")
    scheme, rest = base.split("://", 1)
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}/{db}"


# --- the server ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


class Server:
    def __init__(self, env: dict[str, str], workers: int, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "carbon-points"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers = workers

    async def wait_ready(self, limit: float = 60.0) -> None:
        deadline = time.monotonic() + limit
        async with httpx.AsyncClient(base_url=self.base_url) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited; see {self.log_path}")
                try:
                    ready = (await http.get("/readyz", timeout=2.0)).status_code == 200
                    if ready and len(self.worker_pids()) >= self.workers:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"server not ready after {limit} s; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        if self.workers == 1:
            return [self.process.pid]
        # uvicorn's supervisor spawns its workers (multiprocessing also runs a resource tracker,
        # which is no worker: keep the children that listen, i.e. those running the app).
        pids = []
        for pid in children_of(self.process.pid):
            try:
                cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes()
            except OSError:
                continue
            if b"resource_tracker" not in cmdline:
                pids.append(pid)
        return pids

    def all_pids(self) -> list[int]:
        return [self.process.pid, *children_of(self.process.pid)]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


# --- CPU accounting from /proc --------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pids_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@dataclass
class CpuSample:
    at: float
    by_group: dict[str, dict[int, float]]


def sample_cpu(server: Server) -> CpuSample:
    groups = {
        "load generator": [os.getpid()],
        "service": server.all_pids(),
        "postgres": pids_named("postgres"),
        "redis": pids_named("redis-server"),
    }
    return CpuSample(
        time.monotonic(),
        {name: {pid: cpu_seconds(pid) for pid in pids} for name, pids in groups.items()},
    )


def cpu_share(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """Cores used by each group between two samples (processes alive at both ends, plus new)."""
    wall = after.at - before.at
    shares = {}
    for name, now in after.by_group.items():
        then = before.by_group.get(name, {})
        used = sum(seconds - then.get(pid, 0.0) for pid, seconds in now.items())
        shares[name] = used / wall if wall > 0 else 0.0
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
    name: str
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    acked: dict[str, Acked] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    resent: int = 0
    resent_mismatch: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    target_rate: float | None = None

    @property
    def credited(self) -> int:
        return sum(1 for a in self.acked.values() if a.status in CREDITED)

    @property
    def credited_per_second(self) -> float:
        return self.credited / self.wall if self.wall else 0.0

    @property
    def acked_per_second(self) -> float:
        return len(self.acked) / self.wall if self.wall else 0.0

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


def new_client(base_url: str, setup: Setup, connections: int) -> AsyncCarbonPointsClient:
    return AsyncCarbonPointsClient(
        base_url,
        key_id=setup.key_id,
        secret=setup.secret,
        max_retries=0,
        timeout=httpx.Timeout(120.0, connect=10.0),
        transport=httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        ),
    )


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


async def batched_phase(
    server: Server, setup: Setup, args: argparse.Namespace, profile: list[str]
) -> Phase:
    phase = Phase("batched")
    sent: list[Event] = []  # acknowledged, candidates for re-sending
    client = new_client(server.base_url, setup, args.tasks * 2)
    deadline = time.perf_counter() + args.duration

    async def task(index: int) -> None:
        make = EventMaker(setup.cards, args.seed * 1000 + index, f"b{index}")
        rng = random.Random(args.seed * 7919 + index)
        while time.perf_counter() < deadline:
            resend = [
                rng.choice(sent)
                for _ in range(int(args.batch * args.resend))
                if len(sent) > args.batch
            ]
            resend = list({e.external_id: e for e in resend}.values())
            batch = [make() for _ in range(args.batch - len(resend))] + resend
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
            sent.extend(e for e in batch if e.external_id.startswith("b"))

    spies = start_py_spy(server, args, profile, "batched", args.duration)
    before = sample_cpu(server)
    started = time.perf_counter()
    await asyncio.gather(*(task(i) for i in range(args.tasks)))
    phase.wall = time.perf_counter() - started
    phase.cpu = cpu_share(before, sample_cpu(server))
    await client.aclose()
    finish_py_spy(spies, profile)
    return phase


async def closed_loop_phase(
    server: Server, setup: Setup, args: argparse.Namespace, profile: list[str]
) -> Phase:
    phase = Phase("single, closed loop")
    client = new_client(server.base_url, setup, args.single_tasks)
    deadline = time.perf_counter() + args.single_duration

    async def task(index: int) -> None:
        make = EventMaker(setup.cards, args.seed * 2000 + index, f"s{index}")
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

    spies = start_py_spy(server, args, profile, "single closed loop", args.single_duration)
    before = sample_cpu(server)
    started = time.perf_counter()
    await asyncio.gather(*(task(i) for i in range(args.single_tasks)))
    phase.wall = time.perf_counter() - started
    phase.cpu = cpu_share(before, sample_cpu(server))
    await client.aclose()
    finish_py_spy(spies, profile)
    return phase


async def open_loop_phase(server: Server, setup: Setup, args: argparse.Namespace) -> Phase:
    phase = Phase(f"single, open loop {args.rate:g}/s", target_rate=args.rate)
    client = new_client(server.base_url, setup, args.open_connections)
    make = EventMaker(setup.cards, args.seed * 3000, "o")
    total = int(args.rate * args.open_duration)
    interval = 1.0 / args.rate
    in_flight: set[asyncio.Task[None]] = set()
    scheduled_at: dict[asyncio.Task[None], float] = {}

    # Requests wait for a connection here, not in httpcore's pool, whose queue costs
    # O(waiting x connections) per request and would saturate the load generator.
    slots = asyncio.Semaphore(args.open_connections)

    async def send(event: Event, scheduled: float) -> None:
        try:
            async with slots:
                outcome = await client.submit_event(event)
        except CarbonPointsError as exc:
            phase.errors[type(exc).__name__] += 1
            return
        finally:
            phase.requests += 1
        phase.latencies.append(time.perf_counter() - scheduled)
        record(phase, [event], [outcome])

    events = [make() for _ in range(total)]  # built before the clock: the schedule stays honest
    before = sample_cpu(server)
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
    # An overloaded service would take minutes to drain the backlog: stop waiting after
    # --drain seconds; what is cut off counts with its latency so far (a lower bound).
    _, late = await asyncio.wait(in_flight, timeout=args.drain) if in_flight else (set(), set())
    for job in late:
        job.cancel()
    cut_off = time.perf_counter()
    phase.latencies += [cut_off - scheduled_at[job] for job in late]
    phase.errors.update({"cut off at the drain deadline": len(late)} if late else {})
    await asyncio.gather(*late, return_exceptions=True)
    phase.wall = cut_off - start
    phase.cpu = cpu_share(before, sample_cpu(server))
    await client.aclose()
    return phase


# --- py-spy ---------------------------------------------------------------------------------


def start_py_spy(
    server: Server, args: argparse.Namespace, profile: list[str], phase: str, duration: float
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    if not args.py_spy:
        return []
    binary = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    out = Path(args.py_spy)
    out.mkdir(parents=True, exist_ok=True)
    spies = []
    seconds = max(2, int(duration) - 2)
    profile.append(f"\n{phase}:")
    for pid in server.worker_pids():
        path = out / f"{phase.replace(' ', '-')}-worker-{pid}.txt"
        command = [binary, "record", "-p", str(pid), "-d", str(seconds), "-r", "97"]
        command += ["-f", "raw", "-o", str(path), "--nonblocking"]
        spies.append(
            (subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), path)
        )
    profile.append(f"py-spy: {len(spies)} worker(s), {seconds} s each, raw stacks in {out}/")
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


async def check(database_url: str, partner_id: uuid.UUID, phases: Sequence[Phase]) -> list[str]:
    acked: dict[str, Acked] = {}
    for phase in phases:
        acked.update(phase.acked)
    lines: list[str] = []
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        await conn.execute(
            "CREATE TEMP TABLE bench_acked (external_id text PRIMARY KEY, status text,"
            " points bigint, grams bigint, credit_id text)"
        )
        await conn.copy_records_to_table(
            "bench_acked",
            records=[(x, a.status, a.points, a.grams, a.credit_id) for x, a in acked.items()],
        )
        await conn.execute("ANALYZE bench_acked")
        row = await conn.fetchrow(_CHECK, partner_id)
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
    lines.append(
        f"acknowledged external ids: {row['acked']:,}; credited/capped: {row['acked_credited']:,}"
        f" ({row['points']:,} points)"
    )
    lines.append(
        f"database: {glob['events']:,} events, {glob['events_credited']:,} credited/capped, "
        f"{glob['credits']:,} credits rows, {glob['ledger_credits']:,} ledger credit transactions"
        f" ({glob['credits_with_value']:,} credits with points or grams)"
    )
    lines.append(
        "exactly once: "
        + ("OK" if not any(bad.values()) else "FAILED")
        + " ("
        + ", ".join(f"{k}={v}" for k, v in bad.items())
        + ")"
    )
    return lines


async def run_verify(database_url: str) -> str:
    engine = create_engine(database_url, pool_size=2)
    try:
        started = time.perf_counter()
        report = await verify_ledger(engine)
        seconds = time.perf_counter() - started
    finally:
        await engine.dispose()
    verdict = "OK" if report.ok else f"{len(report.violations)} violation(s)"
    shown = "".join(f"\n  {v}" for v in report.violations[:10])
    return (
        f"ledger verify: {report.transactions:,} transactions, {report.postings:,} postings, "
        f"{report.accounts:,} accounts, {report.lots:,} lots: {verdict} ({seconds:.1f} s){shown}"
    )


# --- the run ------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, setup: Setup, workdir: Path) -> tuple[list[Phase], bool]:
    server = Server(setup.env, args.workers, workdir / "server.log")
    phases: list[Phase] = []
    profile: list[str] = []
    ok = True
    try:
        await server.wait_ready()
        print(f"server: {server.base_url}, workers {server.worker_pids()}", flush=True)
        # Warm-up (not timed): connections, caches, the first credentials lookup per worker.
        warm = new_client(server.base_url, setup, 8)
        make = EventMaker(setup.cards, args.seed, "w")
        await asyncio.gather(*(warm.submit_event(make()) for _ in range(32)))
        await warm.aclose()
        if args.duration > 0:
            phases.append(await batched_phase(server, setup, args, profile))
            report(phases[-1])
        if args.single_duration > 0:
            phases.append(await closed_loop_phase(server, setup, args, profile))
            report(phases[-1])
        if args.open_duration > 0:
            phases.append(await open_loop_phase(server, setup, args))
            report(phases[-1])
    finally:
        server.stop()
    for line in profile:
        print(line)
    print("\nchecks", flush=True)
    for line in await check(setup.database_url, setup.partner_id, phases):
        ok = ok and "FAILED" not in line
        print("  " + line)
    if not args.skip_verify:
        line = await run_verify(setup.database_url)
        ok = ok and ": OK" in line
        print("  " + line)
    return phases, ok


def report(phase: Phase) -> None:
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in phase.cpu.items())
    print(
        f"{phase.name}: {phase.requests:,} requests in {phase.wall:.1f} s, "
        f"{len(phase.acked):,} events acknowledged, {phase.credited:,} credited/capped "
        f"({phase.credited_per_second:,.0f}/s); latency p50 {phase.percentile(50):.1f} ms, "
        f"p95 {phase.percentile(95):.1f} ms, p99 {phase.percentile(99):.1f} ms; "
        f"statuses {dict(phase.statuses)}; errors {dict(phase.errors) or 0}; "
        f"re-sent {phase.resent:,} (outcome differs: {phase.resent_mismatch}); "
        f"CPU cores used: {cpu}",
        flush=True,
    )


def summary(args: argparse.Namespace, phases: Sequence[Phase], ok: bool) -> None:
    rows: list[tuple[str, str, str, str]] = []
    batched = next((p for p in phases if p.name == "batched"), None)
    if batched:
        rows.append(
            (
                f"batched ({args.batch}/request, {args.tasks} tasks): credited events/s",
                f"{batched.credited_per_second:,.0f}",
                f">= {TARGET_BATCHED:,.0f}",
                verdict(batched.credited_per_second >= TARGET_BATCHED),
            )
        )
        rows.append(
            (
                "  batch request latency p50 / p95 / p99",
                f"{batched.percentile(50):.0f} / {batched.percentile(95):.0f} / "
                f"{batched.percentile(99):.0f} ms",
                "",
                "",
            )
        )
    closed = next((p for p in phases if "closed" in p.name), None)
    if closed:
        rows.append(
            (
                f"single, closed loop ({args.single_tasks} tasks): events/s",
                f"{closed.acked_per_second:,.0f}",
                f">= {TARGET_SINGLE:,.0f}",
                verdict(closed.acked_per_second >= TARGET_SINGLE),
            )
        )
        rows.append(
            (
                "  latency p50 / p99",
                f"{closed.percentile(50):.1f} / {closed.percentile(99):.1f} ms",
                "",
                "",
            )
        )
    opened = next((p for p in phases if "open" in p.name), None)
    if opened:
        rows.append(
            (
                f"single, open loop at {args.rate:g}/s: achieved events/s",
                f"{opened.acked_per_second:,.0f}",
                f"{args.rate:g}",
                verdict(opened.acked_per_second >= 0.98 * args.rate and not opened.errors),
            )
        )
        rows.append(
            (
                "  latency from schedule p50 / p99",
                f"{opened.percentile(50):.1f} / {opened.percentile(99):.1f} ms",
                f"p99 <= {TARGET_P99_MS:g} ms",
                verdict(opened.percentile(99) <= TARGET_P99_MS),
            )
        )
    rows.append(("exactly once + ledger verify", "OK" if ok else "FAILED", "OK", verdict(ok)))
    width = max(len(r[0]) for r in rows)
    print(f"\nsummary (workers {args.workers}; load generator on the same {os.cpu_count()} cores)")
    print(f"{'':{width}}  {'measured':>22}  {'target':>14}")
    for name, measured, target, mark in rows:
        print(f"{name:{width}}  {measured:>22}  {target:>14}  {mark}")


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def describe_machine() -> str:
    try:
        version = subprocess.run(
            ["psql", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        version = "psql not found"
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{version}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--redis-db", type=int, default=14)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool", type=int, default=10, help="DB connections per worker")
    parser.add_argument("--participants", type=int, default=20_000)
    parser.add_argument("--duration", type=float, default=20.0, help="batched phase, seconds")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=6, help="concurrent batch senders")
    parser.add_argument("--resend", type=float, default=0.015, help="share of a batch re-sent")
    parser.add_argument("--single-duration", type=float, default=10.0)
    parser.add_argument("--single-tasks", type=int, default=32)
    parser.add_argument("--rate", type=float, default=800.0, help="open-loop events/s")
    parser.add_argument("--open-duration", type=float, default=12.0)
    parser.add_argument("--open-connections", type=int, default=64)
    parser.add_argument("--drain", type=float, default=10.0, help="open loop: wait at most")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--py-spy", metavar="DIR", help="profile the workers (batched phase)")
    parser.add_argument("--skip-verify", action="store_true")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args()

    name = f"carbon_points_bench_crediting_{os.getpid()}"
    server_url = args.database_url
    database_url = database_url_for(server_url, name)
    secrets_env = {
        "CARBON_POINTS_PARTNER_SECRET_KEY": secrets.token_urlsafe(48),
        "CARBON_POINTS_IDENTIFIER_PEPPER": secrets.token_urlsafe(48),
        "CARBON_POINTS_JWT_SIGNING_KEY": secrets.token_urlsafe(48),
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench-crediting-"))
    print(describe_machine())
    print(f"database {name}; server log and data dir under {workdir}", flush=True)
    asyncio.run(admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(admin(server_url, f'CREATE DATABASE "{name}"'))
    ok = False
    try:
        started = time.perf_counter()
        migrations.upgrade(database_url)
        partner_id, key_id, secret, cards = asyncio.run(
            populate(database_url, secrets_env, args.participants)
        )
        print(
            f"set up in {time.perf_counter() - started:.1f} s: {len(cards):,} linked participants",
            flush=True,
        )
        env = {
            **os.environ,
            **secrets_env,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url_with_db(args.redis_url, args.redis_db),
            "CARBON_POINTS_LOG_LEVEL": "WARNING",
            "CARBON_POINTS_DATA_DIR": str(workdir / "data"),
            "CARBON_POINTS_DB_POOL_SIZE": str(args.pool),
        }
        setup = Setup(database_url, partner_id, key_id, secret, cards, env)
        phases, ok = asyncio.run(run(args, setup, workdir))
        summary(args, phases, ok)
    finally:
        if args.keep_database:
            print(f"kept database {name}")
        else:
            asyncio.run(admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
