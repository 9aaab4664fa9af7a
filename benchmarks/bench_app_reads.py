"""Benchmark: the app's read path (balance and history) over real HTTP, against PostgreSQL.

Run (from the repository root):

    .venv/bin/python benchmarks/bench_app_reads.py [--workers 2] [--rate 1000] [--duration 20]

What it does (issue 6, item 8: "balance and history reads p99 <= 20 ms at 1,000 requests/s"):

1. Creates a fresh database ``carbon_points_bench_app_reads_<pid>`` on the server of
   ``--database-url`` (default: $DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/test),
   migrates it to head and bulk-inserts (COPY) ``--users`` citizens: a participant and a user
   each. Every user then gets ``--credits`` credits through the ledger's own
   ``service.ledger.service.credit`` (batches of distinct participants), so balances have
   lots that expire and history pages are full. Then ``VACUUM (ANALYZE)`` (the tables are filled).
2. Starts ``carbon-points serve --workers W`` on a free port as a subprocess, with random
   secrets in its environment, and waits for ``/readyz``.
3. Mints one access token per user with the service's own ``mint_access_token`` and the JWT key
   handed to the server (tokens are re-minted before every phase: they last ten minutes), and
   checks a sample of responses against the database (balance = sum of credits, history = a
   full page of ``--limit`` items).
4. Open loop, for every rate in ``--rate`` (comma-separated, requests/s): ``--duration``
   seconds on a fixed schedule, half ``GET /v1/app/balance`` and half
   ``GET /v1/app/history?limit=20``, each for a random user with their own bearer token.
   Latency runs from each request's *scheduled* send time to the end of its response (no
   coordinated omission); the generator's own lag behind the schedule is reported too.
5. Closed loop: ``--closed-connections`` connections, each sending its next request as soon
   as the last one is answered, for ``--closed-duration`` s: the maximum throughput.
6. Stops the server, drops the database (unless ``--keep-database``), prints a summary.

The load generator is one asyncio process with a minimal HTTP/1.1 keep-alive client on raw
sockets (pre-built request bytes, Content-Length framing): a few tens of microseconds of CPU
per request, against several hundred for httpx. It runs on the same machine as the service,
PostgreSQL and Redis: the cores each group used are printed per phase (from /proc).
``--py-spy DIR`` records every server worker with py-spy during each phase and prints the top
frames.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Runnable as `python benchmarks/bench_app_reads.py` from a checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import httpx
import orjson
from sqlalchemy.engine import make_url

from service import migrations
from service.accounts.tokens import Keyring, mint_access_token
from service.db import create_engine, create_sessionmaker
from service.embedded import to_asyncpg_dsn
from service.ledger.schemas import CreditRequest
from service.ledger.service import credit

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATE = 1_000.0
TARGET_P99_MS = 20.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
ENDPOINTS = ("balance", "history")


# --- set-up -------------------------------------------------------------------------------


@dataclass
class Citizen:
    user_id: uuid.UUID
    participant_id: uuid.UUID
    points: int = 0


async def admin(server_url: str, statement: str) -> None:
    parsed = make_url(to_asyncpg_dsn(server_url)).set(database="postgres")
    conn = await asyncpg.connect(parsed.render_as_string(hide_password=False))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def database_url_for(server_url: str, name: str) -> str:
    return make_url(to_asyncpg_dsn(server_url)).set(database=name).render_as_string(False)


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


def redis_url_with_db(url: str, db: int) -> str:
    if url.startswith("unix://"):
        return url.split("?", 1)[0] + f"?db={db}"
    base = url.rstrip("/")
    scheme, rest = base.split("://", 1)
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}/{db}"


# --- the server (as in bench_crediting.py) --------------------------------------------------


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

    def connections_per_worker(self) -> dict[int, int]:
        """Established client connections each worker accepted (from /proc/net/tcp)."""
        inodes = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            parts = line.split()
            if int(parts[1].split(":")[1], 16) == self.port and parts[3] == "01":
                inodes.add(f"socket:[{parts[9]}]")
        counts = {}
        for pid in self.worker_pids():
            try:
                fds = list((Path("/proc") / str(pid) / "fd").iterdir())
            except OSError:
                continue
            n = 0
            for fd in fds:
                try:
                    n += os.readlink(fd) in inodes
                except OSError:
                    continue
            counts[pid] = n
        return counts

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
        "py-spy": pids_named("py-spy"),
    }
    return CpuSample(
        time.monotonic(),
        {name: {pid: cpu_seconds(pid) for pid in pids} for name, pids in groups.items()},
    )


def cpu_share(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """Cores used by each group between two samples."""
    wall = after.at - before.at
    shares = {}
    for name, now in after.by_group.items():
        then = before.by_group.get(name, {})
        used = sum(seconds - then.get(pid, 0.0) for pid, seconds in now.items())
        shares[name] = used / wall if wall > 0 else 0.0
    return shares


# --- a minimal HTTP/1.1 keep-alive client ---------------------------------------------------


class HttpError(Exception):
    pass


class Connection:
    """One keep-alive connection; one request at a time; Content-Length framing only."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes, bool]:
        """Status, body, and whether the connection may be reused."""
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"\ncontent-length:")
        if at < 0:
            raise HttpError("no content-length in the response")
        end = lower.index(b"\r\n", at + 1)
        body = await self.reader.readexactly(int(lower[at + 16 : end]))
        return status, body, b"\nconnection: close" not in lower

    def close(self) -> None:
        self.writer.close()


class Pool:
    """At most `size` connections; requests wait for an idle one (FIFO)."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.size = size
        self.opened = 0
        self.idle: asyncio.Queue[Connection] = asyncio.Queue()

    async def fill(self) -> None:
        while self.opened < self.size:
            self.opened += 1
            self.idle.put_nowait(await Connection.open(self.port))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.idle.empty() and self.opened < self.size:
            self.opened += 1
            try:
                conn = await Connection.open(self.port)
            except BaseException:
                self.opened -= 1
                raise
        else:
            conn = await self.idle.get()
        try:
            status, body, reusable = await conn.request(raw)
        except BaseException:
            conn.close()
            self.opened -= 1
            raise
        if reusable:
            self.idle.put_nowait(conn)
        else:
            conn.close()
            self.opened -= 1
        return status, body

    def close(self) -> None:
        while not self.idle.empty():
            self.idle.get_nowait().close()
        self.opened = 0


def build_requests(port: int, citizens: list[Citizen], keyring: Keyring, limit: int) -> list[bytes]:
    """For user i: [2i] balance, [2i + 1] history, each with a freshly minted token."""
    out = []
    host = f"127.0.0.1:{port}"
    for c in citizens:
        token = mint_access_token(
            keyring, user_id=c.user_id, participant_id=c.participant_id, generation=0
        )
        for path in ("/v1/app/balance", f"/v1/app/history?limit={limit}"):
            out.append(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                "Accept: application/json\r\n\r\n".encode()
            )
    return out


# --- phases ---------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    wall: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: {e: [] for e in ENDPOINTS})
    errors: Counter[str] = field(default_factory=Counter)
    lag: list[float] = field(default_factory=list)
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (scheduled, latency)
    cpu: dict[str, float] = field(default_factory=dict)
    per_worker: dict[int, int] = field(default_factory=dict)
    offered: float | None = None
    scheduled: int = 0
    cut_off_worst: float = 0.0

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
        return percentile(values, q)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1] * 1000


async def send(pool: Pool, phase: Phase, raw: bytes, endpoint: str, started: float) -> None:
    try:
        status, _ = await pool.request(raw)
    except (OSError, asyncio.IncompleteReadError, HttpError, ValueError) as exc:
        phase.errors[type(exc).__name__] += 1
        return
    if status != 200:
        phase.errors[f"HTTP {status}"] += 1
        return
    latency = time.perf_counter() - started
    phase.latencies[endpoint].append(latency)
    phase.timeline.append((started, latency))


async def open_loop(
    server: Server, requests: list[bytes], args: argparse.Namespace, rate: float, seed: int
) -> Phase:
    phase = Phase(f"open loop {rate:g}/s", offered=rate)
    rng = random.Random(seed)
    total = int(rate * args.duration)
    users = len(requests) // 2
    # The whole schedule is drawn before the clock starts.
    plan = []
    for _ in range(total):
        kind = rng.randrange(2)
        plan.append((requests[2 * rng.randrange(users) + kind], ENDPOINTS[kind]))
    pool = Pool(server.port, args.connections)
    await pool.fill()
    await asyncio.sleep(0.1)
    phase.per_worker = server.connections_per_worker()
    in_flight: set[asyncio.Task[None]] = set()
    scheduled_at: dict[asyncio.Task[None], float] = {}
    interval = 1.0 / rate
    phase.scheduled = total
    before = sample_cpu(server)
    start = time.perf_counter()
    for i, (raw, endpoint) in enumerate(plan):
        scheduled = start + i * interval
        now = time.perf_counter()
        if scheduled > now:
            await asyncio.sleep(scheduled - now)
            now = time.perf_counter()
        phase.lag.append(now - scheduled)
        job = asyncio.create_task(send(pool, phase, raw, endpoint, scheduled))
        scheduled_at[job] = scheduled
        in_flight.add(job)
        job.add_done_callback(in_flight.discard)
    # An overloaded service would take long to drain its backlog: wait at most --drain s; what
    # is cut off then counts as an error (and its latency so far is noted as a lower bound).
    _, late = await asyncio.wait(in_flight, timeout=args.drain) if in_flight else (set(), set())
    cut_off = time.perf_counter()
    for job in late:
        job.cancel()
    if late:
        phase.errors["cut off at the drain deadline"] += len(late)
        phase.cut_off_worst = max(cut_off - scheduled_at[job] for job in late)
    await asyncio.gather(*late, return_exceptions=True)
    phase.wall = cut_off - start
    phase.cpu = cpu_share(before, sample_cpu(server))
    pool.close()
    return phase


async def closed_loop(
    server: Server, requests: list[bytes], args: argparse.Namespace, seed: int
) -> Phase:
    phase = Phase(f"closed loop, {args.closed_connections} connections")
    users = len(requests) // 2
    deadline = 0.0

    async def task(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        conn = await Connection.open(server.port)
        try:
            while time.perf_counter() < deadline:
                kind = rng.randrange(2)
                started = time.perf_counter()
                try:
                    status, _, reusable = await conn.request(
                        requests[2 * rng.randrange(users) + kind]
                    )
                except (OSError, asyncio.IncompleteReadError, HttpError, ValueError) as exc:
                    phase.errors[type(exc).__name__] += 1
                    conn.close()
                    conn = await Connection.open(server.port)
                    continue
                if status == 200:
                    phase.latencies[ENDPOINTS[kind]].append(time.perf_counter() - started)
                else:
                    phase.errors[f"HTTP {status}"] += 1
                if not reusable:
                    conn.close()
                    conn = await Connection.open(server.port)
        finally:
            conn.close()

    before = sample_cpu(server)
    start = time.perf_counter()
    deadline = start + args.closed_duration
    asyncio.get_running_loop().call_later(
        1.0, lambda: phase.per_worker.update(server.connections_per_worker())
    )
    await asyncio.gather(*(task(i) for i in range(args.closed_connections)))
    phase.wall = time.perf_counter() - start
    phase.cpu = cpu_share(before, sample_cpu(server))
    return phase


async def check_responses(
    server: Server, requests: list[bytes], citizens: list[Citizen], limit: int, credits: int
) -> list[str]:
    """A sample of users: 200s, the balance is the sum credited, the history page is full."""
    pool = Pool(server.port, 4)
    problems = []
    try:
        for i in random.Random(1).sample(range(len(citizens)), min(50, len(citizens))):
            status, body = await pool.request(requests[2 * i])
            balance = orjson.loads(body)
            if status != 200 or balance.get("available") != citizens[i].points:
                problems.append(f"balance of user {i}: {status} {body[:200]!r}")
            status, body = await pool.request(requests[2 * i + 1])
            items = orjson.loads(body).get("items", []) if status == 200 else []
            if len(items) != min(limit, credits):
                problems.append(f"history of user {i}: {status} {len(items)} items")
    finally:
        pool.close()
    return problems


# --- py-spy (as in bench_crediting.py) ------------------------------------------------------


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
        path = out / f"{phase.replace(' ', '-').replace('/', '')}-worker-{pid}.txt"
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
    ours = [(f, n) for f, n in inclusive.most_common() if "service/" in f]
    profile += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in ours[:25]]


# --- the run ------------------------------------------------------------------------------------


def report(phase: Phase) -> None:
    per = "; ".join(
        f"{e} n={len(phase.latencies[e]):,} p50 {phase.percentile(50, e):.1f} / "
        f"p95 {phase.percentile(95, e):.1f} / p99 {phase.percentile(99, e):.1f} / "
        f"max {phase.percentile(100, e):.1f} ms"
        for e in ENDPOINTS
    )
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in phase.cpu.items())
    lag = (
        f"; generator lag behind schedule p99 {percentile(phase.lag, 99):.1f} ms, "
        f"max {percentile(phase.lag, 100):.1f} ms"
        if phase.lag
        else ""
    )
    cut = (
        f" (the cut-off requests had waited up to {phase.cut_off_worst * 1000:,.0f} ms)"
        if phase.cut_off_worst
        else ""
    )
    windows = ""
    if phase.timeline:
        first = min(at for at, _ in phase.timeline)
        by_window: dict[int, list[float]] = {}
        for at, latency in phase.timeline:
            by_window.setdefault(int((at - first) // 5), []).append(latency)
        windows = "; p99 per 5 s of schedule: " + " / ".join(
            f"{percentile(v, 99):.0f}" for _, v in sorted(by_window.items())
        )
    print(
        f"{phase.name}: {phase.ok:,} OK in {phase.wall:.1f} s = {phase.rate:,.0f}/s; "
        f"all p50 {phase.percentile(50):.1f} / p95 {phase.percentile(95):.1f} / "
        f"p99 {phase.percentile(99):.1f} / max {phase.percentile(100):.1f} ms; {per}; "
        f"errors {sum(phase.errors.values()):,} {dict(phase.errors) or ''}{cut}{lag}{windows} ms; "
        f"CPU cores used: {cpu}; connections per worker {phase.per_worker}",
        flush=True,
    )


async def run(
    args: argparse.Namespace, env: dict[str, str], citizens: list[Citizen], workdir: Path
) -> tuple[list[Phase], list[str]]:
    keyring = Keyring.from_secrets(env["CARBON_POINTS_JWT_SIGNING_KEY"])
    server = Server(env, args.workers, workdir / "server.log")
    phases: list[Phase] = []
    profile: list[str] = []
    problems: list[str] = []
    try:
        await server.wait_ready()
        print(f"server: {server.base_url}, workers {server.worker_pids()}", flush=True)
        requests = build_requests(server.port, citizens, keyring, args.limit)
        problems = await check_responses(server, requests, citizens, args.limit, args.credits)
        print(f"response check on 50 users: {'OK' if not problems else problems[:3]}", flush=True)
        # Warm-up (not timed): every worker's pool, prepared statements, and the caches.
        warm = argparse.Namespace(**{**vars(args), "duration": 3.0})
        await open_loop(server, requests, warm, 200.0, args.seed)
        for n, rate in enumerate(float(r) for r in args.rate.split(",")):
            requests = build_requests(server.port, citizens, keyring, args.limit)
            spies = start_py_spy(server, args, profile, f"open loop {rate:g}/s", args.duration)
            phases.append(await open_loop(server, requests, args, rate, args.seed + n))
            finish_py_spy(spies, profile)
            report(phases[-1])
            await asyncio.sleep(1.0)
        if args.closed_duration > 0:
            requests = build_requests(server.port, citizens, keyring, args.limit)
            spies = start_py_spy(server, args, profile, "closed loop", args.closed_duration)
            phases.append(await closed_loop(server, requests, args, args.seed))
            finish_py_spy(spies, profile)
            report(phases[-1])
    finally:
        server.stop()
    for line in profile:
        print(line)
    return phases, problems


def summary(args: argparse.Namespace, phases: list[Phase], problems: list[str]) -> None:
    print(
        f"\nsummary: workers {args.workers}, pool {args.pool}/worker, {args.users:,} users x "
        f"{args.credits} credits, history limit {args.limit}; the load generator shares the "
        f"{os.cpu_count()} cores"
    )
    print(f"target: p99 <= {TARGET_P99_MS:g} ms for balance and history at {TARGET_RATE:,.0f}/s")
    for phase in phases:
        p99 = {e: phase.percentile(99, e) for e in ENDPOINTS}
        errors = sum(phase.errors.values())
        line = (
            f"  {phase.name:<32} achieved {phase.rate:7,.0f}/s  p99 balance {p99['balance']:7.1f}"
            f" ms, history {p99['history']:7.1f} ms  errors {errors:,}  generator CPU "
            f"{phase.cpu.get('load generator', 0):.2f} cores"
        )
        if phase.offered is not None:
            kept_up = phase.rate >= 0.98 * phase.offered and not errors
            met = kept_up and max(p99.values()) <= TARGET_P99_MS
            verdict = "met" if met else "MISSED"
            if phase.offered < TARGET_RATE:
                verdict += f" (below the target rate of {TARGET_RATE:,.0f}/s)"
            line += f"  -> {verdict}"
        print(line)
    print(f"  response check: {'OK' if not problems else 'FAILED: ' + '; '.join(problems[:3])}")


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
    parser.add_argument("--redis-db", type=int, default=13)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool", type=int, default=10, help="DB connections per worker")
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--credits", type=int, default=20, help="credits per user")
    parser.add_argument("--limit", type=int, default=20, help="history page size")
    parser.add_argument(
        "--rate", default="1000", help="open-loop requests/s, comma-separated for several phases"
    )
    parser.add_argument("--duration", type=float, default=20.0, help="each open-loop phase, s")
    parser.add_argument("--connections", type=int, default=64, help="open loop: at most")
    parser.add_argument("--drain", type=float, default=10.0, help="open loop: wait at most, s")
    parser.add_argument("--closed-duration", type=float, default=10.0, help="0 to skip")
    parser.add_argument("--closed-connections", type=int, default=16)
    parser.add_argument("--log-level", default="WARNING", help="the service's log level")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--py-spy", metavar="DIR", help="profile the workers in every phase")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args()

    name = f"carbon_points_bench_app_reads_{os.getpid()}"
    server_url = args.database_url
    database_url = database_url_for(server_url, name)
    secrets_env = {
        "CARBON_POINTS_PARTNER_SECRET_KEY": secrets.token_urlsafe(48),
        "CARBON_POINTS_IDENTIFIER_PEPPER": secrets.token_urlsafe(48),
        "CARBON_POINTS_JWT_SIGNING_KEY": secrets.token_urlsafe(48),
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench-app-reads-"))
    print(describe_machine())
    print(f"database {name}; server log and data dir under {workdir}", flush=True)
    asyncio.run(admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(admin(server_url, f'CREATE DATABASE "{name}"'))
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
        env = {
            **os.environ,
            **secrets_env,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url_with_db(args.redis_url, args.redis_db),
            "CARBON_POINTS_LOG_LEVEL": args.log_level,
            "CARBON_POINTS_DATA_DIR": str(workdir / "data"),
            "CARBON_POINTS_DB_POOL_SIZE": str(args.pool),
        }
        phases, problems = asyncio.run(run(args, env, citizens, workdir))
        summary(args, phases, problems)
    finally:
        if args.keep_database:
            print(f"kept database {name}")
        else:
            asyncio.run(admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    sys.exit(0 if not problems else 1)


if __name__ == "__main__":
    main()
