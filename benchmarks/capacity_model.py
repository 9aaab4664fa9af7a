"""Capacity on paper, from this machine's measured per-event costs (docs/scaling.md, "Capacity").

Two steps, so that the arithmetic is reproducible from a file:

    .venv/bin/python benchmarks/capacity_model.py measure --out benchmarks/results/capacity.json
    .venv/bin/python benchmarks/capacity_model.py model benchmarks/results/capacity.json

``measure`` starts a private PostgreSQL (``initdb`` of the installed server, on a free port;
run as root, it runs as the ``postgres`` user) and a private Redis (``redis-server``, no
persistence), so that every process of both is this run's alone: their CPU, the WAL and the
Redis commands are ours even on a shared machine. It migrates a database to head, files the
methodology library, one partner and ``--participants`` linked participants (as
``bench_crediting.py`` does), starts ``carbon-points serve --workers W`` and credits every
participant once (warm-up, not measured: connections, caches, and each participant's ledger
account, which is created by its first credit and is a per-participant cost). Then two phases:

``batched``
    ``--tasks`` senders send signed batches of ``--batch`` fresh metro events (real HMAC
    signing, ``integrations.AsyncCarbonPointsClient``) until ``--events`` are answered.
``single``
    ``--single-tasks`` senders send ``--single-events`` events one request each.

Around each phase it samples, from /proc and the servers' statistics: the CPU seconds
(user + system) of the API processes, of every PostgreSQL process (backends, WAL writer,
checkpointer, autovacuum) and of Redis; the bytes each process read and wrote through system
calls (/proc/<pid>/io ``rchar``/``wchar``: the load generator's are the HTTP traffic, Redis's
the API's Redis traffic, the API's less those two its PostgreSQL traffic); each table's
``pg_total_relation_size`` (heap, indexes, TOAST; partitions summed under their parent) and
its inserted/updated rows; the WAL written (``pg_current_wal_lsn`` difference, and
``pg_stat_wal``'s records and full-page images); ``pg_stat_database``'s commits and backend
active time; Redis's commands processed. Divided by the events credited, these are the
per-event costs. CPU time per event does not depend on what else runs on the machine (it is
this code's work); the wall-clock rates printed beside them do, and are not the model's input.

Checks after the phases: every acknowledged credited event has one event row and one credit,
and ``ledger verify`` passes; a failed check fails the run (exit 1).

``model`` reads that JSON and derives, for 1,000, 10,000 and 100,000 events/s (or
``--rates``), the API cores, PostgreSQL cores, nodes (for CPU and for storage) and shards,
Redis cores and masters,
storage per year and WAL and network rates, under assumptions given as options and printed
with the table (``model --help``). It prints Markdown (``--json`` for the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import glob
import json
import math
import os
import pwd
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks._harness import Server

# Runnable as `python benchmarks/capacity_model.py` from a checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SECONDS_PER_YEAR = 365 * 24 * 3600
DEFAULT_RATES = (1_000.0, 10_000.0, 100_000.0)
PHASES = ("batched", "single")
CREDITED = frozenset({"credited", "capped"})


# --- the model: pure arithmetic on the measured JSON ------------------------------------------


@dataclass(frozen=True)
class Assumptions:
    """What the model assumes; every figure it prints follows from these and the JSON."""

    api_utilisation: float = 0.6  # share of each API core busy at the rate (headroom for peaks)
    pg_node_cores: int = 32  # cores of one PostgreSQL (Citus worker) node
    pg_utilisation: float = 0.5  # share of a node's cores busy at the rate
    pg_node_storage_tb: float = 8.0  # attached table data one node holds (its standbys: a copy)
    redis_utilisation: float = 0.5  # share of a Redis master's one core busy at the rate
    min_shards: int = 32  # Citus's default citus.shard_count
    shards_per_node: int = 4  # shards per node at the rate, room to rebalance onto new nodes
    standbys: int = 1  # streaming standbys per node: storage x (1 + standbys), WAL shipped x them
    hot_months: int = 24  # partitions kept attached: the points' default validity (730 days)
    load_factor: float = 1.0  # average rate over the year / the rate (1.0: sustained all year)


ASSUMPTION_HELP = {
    "api_utilisation": "share of each API core busy at the rate (default %(default)s)",
    "pg_node_cores": "cores of one PostgreSQL (Citus worker) node (default %(default)s)",
    "pg_utilisation": "share of a node's cores busy at the rate (default %(default)s)",
    "pg_node_storage_tb": "attached table data one node holds, TB (default %(default)s)",
    "redis_utilisation": "share of a Redis master's one core busy (default %(default)s)",
    "min_shards": "at least this many shards (Citus's citus.shard_count: %(default)s)",
    "shards_per_node": "shards per node at the rate, rounded up to a power of two"
    " (default %(default)s)",
    "standbys": "streaming standbys per node (default %(default)s)",
    "hot_months": "months of partitions kept attached (default %(default)s: the points'"
    " 730-day validity)",
    "load_factor": "the year's average rate / the rate (default %(default)s: sustained)",
}


@dataclass(frozen=True)
class PerEvent:
    """One phase's measured cost per credited event."""

    api_cpu_s: float
    pg_cpu_s: float
    redis_cpu_s: float
    wal_bytes: float
    table_bytes: dict[str, float]  # tables that grow with events
    client_bytes: float  # HTTP, both ways
    pg_network_bytes: float  # API <-> PostgreSQL, both ways
    redis_network_bytes: float  # API <-> Redis, both ways

    @property
    def storage_bytes(self) -> float:
        return sum(self.table_bytes.values())


def per_event(measured: dict[str, Any], phase: str) -> PerEvent:
    """The per-event figures of one phase of a `measure` JSON."""
    p = measured["phases"][phase]["per_event"]
    return PerEvent(
        api_cpu_s=float(p["api_cpu_s"]),
        pg_cpu_s=float(p["pg_cpu_s"]),
        redis_cpu_s=float(p["redis_cpu_s"]),
        wal_bytes=float(p["wal_bytes"]),
        table_bytes={k: float(v) for k, v in p["table_bytes"].items()},
        client_bytes=float(p["client_bytes"]),
        pg_network_bytes=float(p["pg_network_bytes"]),
        redis_network_bytes=float(p["redis_network_bytes"]),
    )


@dataclass(frozen=True)
class Need:
    """What one rate needs, for one phase's per-event costs."""

    rate: float
    api_cores: float  # cores busy
    api_cores_provisioned: int  # at the utilisation target
    pg_cores: float
    pg_nodes_for_cpu: int
    pg_nodes_for_storage: int
    pg_nodes: int  # the larger of the two
    shards: int
    redis_cores: float
    redis_masters: int
    storage_per_year_bytes: float  # one copy, the tables that grow with events
    storage_hot_bytes: float  # attached partitions, all copies (primary + standbys)
    wal_bytes_per_s: float
    wal_per_day_bytes: float
    client_bits_per_s: float
    pg_network_bits_per_s: float  # API <-> PostgreSQL, plus WAL to the standbys
    redis_network_bits_per_s: float


def need(rate: float, cost: PerEvent, a: Assumptions) -> Need:
    api_cores = rate * cost.api_cpu_s
    pg_cores = rate * cost.pg_cpu_s
    per_year = rate * a.load_factor * SECONDS_PER_YEAR * cost.storage_bytes
    attached = per_year * a.hot_months / 12  # one copy
    for_cpu = max(1, math.ceil(pg_cores / (a.pg_node_cores * a.pg_utilisation)))
    for_storage = max(1, math.ceil(attached / (a.pg_node_storage_tb * 1e12)))
    pg_nodes = max(for_cpu, for_storage)
    shards = max(a.min_shards, 2 ** math.ceil(math.log2(pg_nodes * a.shards_per_node)))
    redis_cores = rate * cost.redis_cpu_s
    wal = rate * cost.wal_bytes
    return Need(
        rate=rate,
        api_cores=api_cores,
        api_cores_provisioned=max(1, math.ceil(api_cores / a.api_utilisation)),
        pg_cores=pg_cores,
        pg_nodes_for_cpu=for_cpu,
        pg_nodes_for_storage=for_storage,
        pg_nodes=pg_nodes,
        shards=shards,
        redis_cores=redis_cores,
        redis_masters=max(1, math.ceil(redis_cores / a.redis_utilisation)),
        storage_per_year_bytes=per_year,
        storage_hot_bytes=attached * (1 + a.standbys),
        wal_bytes_per_s=wal,
        wal_per_day_bytes=wal * a.load_factor * 86_400,
        client_bits_per_s=8 * rate * cost.client_bytes,
        pg_network_bits_per_s=8 * (rate * cost.pg_network_bytes + wal * a.standbys),
        redis_network_bits_per_s=8 * rate * cost.redis_network_bytes,
    )


def _si(value: float, unit: str) -> str:
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:,.1f} {prefix}{unit}"
    return f"{value:,.0f} {unit}"


def render(measured: dict[str, Any], a: Assumptions, rates: Sequence[float]) -> str:
    """The Markdown the docs quote: per-event costs, then one table per phase."""
    lines = [
        f"Measured {measured['measured_at']} on {measured['machine']}",
        f"by `{measured['command']}`.",
        "",
        "| per credited event | batched | single |",
        "|---|---:|---:|",
    ]
    costs = {phase: per_event(measured, phase) for phase in PHASES}
    rows = [
        ("API CPU", lambda c: f"{c.api_cpu_s * 1e3:.3f} ms"),
        ("PostgreSQL CPU (every process)", lambda c: f"{c.pg_cpu_s * 1e3:.3f} ms"),
        ("Redis CPU", lambda c: f"{c.redis_cpu_s * 1e6:.1f} µs"),
        ("WAL", lambda c: f"{c.wal_bytes:,.0f} B"),
        ("table growth (heap + indexes + TOAST)", lambda c: f"{c.storage_bytes:,.0f} B"),
        ("table growth per 10⁹ events", lambda c: _si(c.storage_bytes * 1e9, "B")),
        ("HTTP, both ways", lambda c: f"{c.client_bytes:,.0f} B"),
        ("API <-> PostgreSQL, both ways", lambda c: f"{c.pg_network_bytes:,.0f} B"),
        ("API <-> Redis, both ways", lambda c: f"{c.redis_network_bytes:,.1f} B"),
    ]
    for label, show in rows:
        lines.append(f"| {label} | {show(costs['batched'])} | {show(costs['single'])} |")
    tables = sorted(
        set(costs["batched"].table_bytes) | set(costs["single"].table_bytes),
        key=lambda t: -costs["batched"].table_bytes.get(t, 0.0),
    )
    lines += ["", "| table (bytes per event) | batched | single |", "|---|---:|---:|"]
    for t in tables:
        b = costs["batched"].table_bytes.get(t, 0.0)
        s = costs["single"].table_bytes.get(t, 0.0)
        lines.append(f"| `{t}` | {b:,.0f} | {s:,.0f} |")
    for phase in PHASES:
        cost = costs[phase]
        needs = [need(rate, cost, a) for rate in rates]
        lines += [
            "",
            f"**{phase}** ({'signed batches' if phase == 'batched' else 'one event a request'})",
            "",
            "| | " + " | ".join(f"{n.rate:,.0f}/s" for n in needs) + " |",
            "|---|" + "---:|" * len(needs),
        ]
        table = [
            ("API cores busy", lambda n: f"{n.api_cores:,.1f}"),
            (
                f"API cores at {a.api_utilisation:.0%} busy",
                lambda n: f"{n.api_cores_provisioned:,}",
            ),
            ("PostgreSQL cores busy", lambda n: f"{n.pg_cores:,.1f}"),
            (
                f"nodes for CPU ({a.pg_node_cores} cores, {a.pg_utilisation:.0%} busy)",
                lambda n: f"{n.pg_nodes_for_cpu:,}",
            ),
            (
                f"nodes for storage ({a.pg_node_storage_tb:g} TB attached each)",
                lambda n: f"{n.pg_nodes_for_storage:,}",
            ),
            ("PostgreSQL nodes (the larger)", lambda n: f"{n.pg_nodes:,}"),
            ("shards (distributed tables)", lambda n: f"{n.shards:,}"),
            ("Redis cores busy", lambda n: f"{n.redis_cores:,.2f}"),
            (f"Redis masters ({a.redis_utilisation:.0%} busy)", lambda n: f"{n.redis_masters:,}"),
            ("storage per year, one copy", lambda n: _si(n.storage_per_year_bytes, "B")),
            (
                f"attached ({a.hot_months} months) x {1 + a.standbys} copies",
                lambda n: _si(n.storage_hot_bytes, "B"),
            ),
            ("WAL per second", lambda n: _si(n.wal_bytes_per_s, "B/s")),
            ("WAL per day", lambda n: _si(n.wal_per_day_bytes, "B")),
            ("network, partners -> API", lambda n: _si(n.client_bits_per_s, "bit/s")),
            ("network, API <-> PostgreSQL + WAL", lambda n: _si(n.pg_network_bits_per_s, "bit/s")),
            ("network, API <-> Redis", lambda n: _si(n.redis_network_bits_per_s, "bit/s")),
        ]
        for label, show in table:
            lines.append(f"| {label} | " + " | ".join(show(n) for n in needs) + " |")
    lines += ["", "Assumptions: " + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(a).items())]
    return "\n".join(lines)


def model_main(args: argparse.Namespace) -> None:
    measured = json.loads(Path(args.measured).read_text())
    a = Assumptions(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(Assumptions)},
    )
    if args.json:
        out = {
            phase: [dataclasses.asdict(need(r, per_event(measured, phase), a)) for r in args.rates]
            for phase in PHASES
        }
        print(json.dumps({"assumptions": dataclasses.asdict(a), "needs": out}, indent=2))
    else:
        print(render(measured, a, args.rates))


# --- the measurement ---------------------------------------------------------------------------


def _postgres_bin() -> Path:
    found = shutil.which("initdb") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)), None
    )
    if not found:
        raise SystemExit("initdb not found: install PostgreSQL's server (postgresql-15)")
    return Path(os.path.realpath(found)).parent


@dataclass
class PrivatePostgres:
    """A PostgreSQL of our own, its processes (and WAL) this run's alone."""

    directory: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def _as_owner(self, command: list[str]) -> list[str]:
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            return ["runuser", "-u", "postgres", "--", *command]
        return command

    def start(self) -> PrivatePostgres:
        from benchmarks._harness import free_port

        binaries = _postgres_bin()
        data = self.directory / "data"
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
        subprocess.run(
            self._as_owner(
                [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
            ),
            check=True,
            capture_output=True,
        )
        self.port = free_port()
        log = (self.directory / "postgres.log").open("wb")
        # The server's defaults (shared_buffers 128 MB, checkpoint_timeout 5 min, fsync and
        # synchronous_commit on, full_page_writes on), as the shared test server here.
        command = [str(binaries / "postgres"), "-D", str(data), "-p", str(self.port)]
        command += ["-k", str(self.directory), "-c", "listen_addresses=127.0.0.1"]
        command += ["-c", "max_connections=200"]
        self.process = subprocess.Popen(
            self._as_owner(command), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(binaries / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
                check=False,
            )
            if ready.returncode == 0:
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise SystemExit(f"private PostgreSQL did not start; see {self.directory}/postgres.log")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pids(self) -> list[int]:
        from benchmarks._harness import children_of

        try:
            postmaster = int((self.directory / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return [postmaster, *children_of(postmaster)]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 2)  # SIGINT: fast shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()


@dataclass
class PrivateRedis:
    directory: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        import redis

        from benchmarks._harness import free_port

        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = free_port()
        log = (self.directory / "redis.log").open("wb")
        self.process = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.1)
        raise SystemExit("private Redis did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def info(self, section: str) -> dict[str, Any]:
        import redis

        return dict(redis.Redis(port=self.port).info(section))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def tcp_bytes(port: int) -> dict[str, int]:
    """Payload bytes sent plus received on each established TCP connection to local `port`
    (the kernel's tcp_info, by `ss -tin`), by peer address."""
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: dict[str, int] = {}
    peer = ""
    for line in out.splitlines():
        if not line.startswith(("\t", " ")):
            peer = line.split()[-1]
            continue
        counters = dict(part.split(":", 1) for part in line.split() if part.startswith("bytes_"))
        found[peer] = int(counters.get("bytes_sent", 0)) + int(counters.get("bytes_received", 0))
    return found


_TABLES = """
SELECT coalesce(pg_partition_root(c.oid), c.oid)::regclass::text AS name,
       sum(pg_total_relation_size(c.oid))::bigint AS bytes,
       sum(s.n_tup_ins)::bigint AS inserted, sum(s.n_tup_upd)::bigint AS updated
FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.relkind = 'r' GROUP BY 1
"""


@dataclass
class Snapshot:
    at: float
    cpu: dict[str, dict[int, float]]
    network: dict[str, dict[str, int]]
    tables: dict[str, tuple[int, int, int]]
    wal_lsn: str
    wal: dict[str, int]
    database: dict[str, float]
    redis_commands: int
    machine_busy_s: float  # the whole machine's busy CPU time (/proc/stat)


async def snapshot(
    database_url: str, api: Server, pg: PrivatePostgres, redis: PrivateRedis
) -> Snapshot:
    import asyncpg

    from benchmarks._harness import cpu_seconds, machine_busy_seconds
    from service.embedded import to_asyncpg_dsn

    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await asyncio.sleep(0.6)  # other backends' statistics reach shared memory
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        tables = {
            r["name"]: (r["bytes"], r["inserted"], r["updated"]) for r in await conn.fetch(_TABLES)
        }
        lsn = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
        wal = dict(await conn.fetchrow("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal"))
        db = dict(
            await conn.fetchrow(
                "SELECT xact_commit, xact_rollback, active_time, tup_inserted, tup_updated"
                " FROM pg_stat_database WHERE datname = current_database()"
            )
        )
    finally:
        await conn.close()
    groups = {"api": api.all_pids(), "postgres": pg.pids(), "generator": [os.getpid()]}
    cpu = {g: {p: cpu_seconds(p) for p in pids} for g, pids in groups.items()}
    # Redis's own account, in microseconds (/proc's is in 10 ms ticks).
    redis_cpu = redis.info("cpu")
    cpu["redis"] = {0: float(redis_cpu["used_cpu_user"]) + float(redis_cpu["used_cpu_sys"])}
    return Snapshot(
        time.monotonic(),
        cpu,
        {
            "http": tcp_bytes(api.port),
            "postgres": tcp_bytes(pg.port),
            "redis": tcp_bytes(redis.port),
        },
        tables,
        str(lsn),
        {k: int(v) for k, v in wal.items()},
        {k: float(v) for k, v in db.items()},
        int(redis.info("stats")["total_commands_processed"]),
        machine_busy_seconds(),
    )


async def wal_bytes_between(database_url: str, before: str, after: str) -> int:
    import asyncpg

    from service.embedded import to_asyncpg_dsn

    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        return int(
            await conn.fetchval(
                "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)", after, before
            )
        )
    finally:
        await conn.close()


def _delta(after: dict[Any, float], before: dict[Any, float]) -> float:
    # A process (an autovacuum worker) or a connection that began in between counts from zero.
    return sum(v - before.get(pid, 0) for pid, v in after.items())


@dataclass
class PhaseResult:
    wall: float = 0.0
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    acked: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)


def spread(event: Any, rng: random.Random) -> Any:
    """The trip moved back by 0-47 hours (inside every claim window), so that a participant's
    trips fall on two or three programme days and the daily caps rarely cut them."""
    return dataclasses.replace(
        event, occurred_at=event.occurred_at - timedelta(hours=rng.uniform(0, 47))
    )


async def drive(
    clients: Sequence[Any], setup: Any, phase: str, total: int, batch: int, seed: int
) -> PhaseResult:
    """`total` fresh events from one sender per client; the clients stay open (their
    connections' bytes are read after)."""
    from benchmarks.bench_crediting import EventMaker
    from integrations import CarbonPointsError

    result = PhaseResult()
    remaining = [total]

    async def task(index: int) -> None:
        make = EventMaker(setup.cards, seed * 1000 + index, f"{phase}{seed}-{index}")
        rng = random.Random(seed * 7919 + index)
        client = clients[index]
        while remaining[0] > 0:
            size = min(batch, remaining[0]) if phase == "batched" else 1
            remaining[0] -= size
            events = [spread(make(), rng) for _ in range(size)]
            try:
                if phase == "batched":
                    outcomes = await client.submit_events(events, batch_size=size)
                else:
                    outcomes = [await client.submit_event(events[0])]
            except CarbonPointsError as exc:
                result.errors[type(exc).__name__] += 1
                continue
            finally:
                result.requests += 1
            for outcome in outcomes:
                result.statuses[outcome.status] += 1
                result.acked[outcome.external_id] = (outcome.status, outcome.credit_id)

    started = time.perf_counter()
    await asyncio.gather(*(task(i) for i in range(len(clients))))
    result.wall = time.perf_counter() - started
    return result


async def warm_up(base_url: str, setup: Any, batch: int) -> Counter[str]:
    """One credit for every participant (their ledger accounts), not measured."""
    from benchmarks.bench_crediting import EventMaker, new_client

    make = EventMaker(setup.cards, 1, "warm")
    events = []
    for card in setup.cards:
        events.append(dataclasses.replace(make(), subject_ref=card))
    statuses: Counter[str] = Counter()
    clients = [new_client(base_url, setup) for _ in range(4)]
    chunks = [events[i : i + batch] for i in range(0, len(events), batch)]

    async def task(index: int) -> None:
        for chunk in chunks[index::4]:
            for outcome in await clients[index].submit_events(chunk, batch_size=len(chunk)):
                statuses[outcome.status] += 1

    await asyncio.gather(*(task(i) for i in range(4)))
    await asyncio.gather(*(c.aclose() for c in clients))
    return statuses


def figures(
    before: Snapshot, after: Snapshot, wal_lsn_bytes: int, result: PhaseResult
) -> dict[str, Any]:
    credited = sum(n for s, n in result.statuses.items() if s in CREDITED)
    cpu = {g: _delta(after.cpu[g], before.cpu[g]) for g in after.cpu}
    network = {g: int(_delta(after.network[g], before.network[g])) for g in after.network}
    tables = {}
    for name, (size, inserted, updated) in after.tables.items():
        b = before.tables.get(name, (0, 0, 0))
        tables[name] = {
            "bytes": size - b[0],
            "inserted": inserted - b[1],
            "updated": updated - b[2],
        }
    # Tables whose rows grow with events (at least one insert per 100 events); the others
    # grew by updates alone (balances, cap usage: per participant, reclaimed by vacuum).
    growing = {n: t for n, t in tables.items() if t["inserted"] * 100 >= credited}
    wall = after.at - before.at
    n = max(credited, 1)
    return {
        "events_credited": credited,
        "statuses": dict(result.statuses),
        "requests": result.requests,
        "errors": dict(result.errors),
        "wall_s": round(wall, 3),
        "credited_per_wall_second": round(credited / wall, 1),
        "cpu_s": {g: round(v, 3) for g, v in cpu.items()},
        # The rest of the machine's busy cores meanwhile: other people's work on a shared box.
        "cores_busy": {
            **{g: round(v / wall, 2) for g, v in cpu.items()},
            "rest": round(
                max(0.0, after.machine_busy_s - before.machine_busy_s - sum(cpu.values())) / wall, 2
            ),
            "machine": os.cpu_count(),
        },
        "network_bytes": network,
        "tables": tables,
        "wal": {
            "lsn_diff_bytes": wal_lsn_bytes,
            **{k: after.wal[k] - before.wal[k] for k in after.wal},
        },
        "database": {k: after.database[k] - before.database[k] for k in after.database},
        "redis_commands": after.redis_commands - before.redis_commands,
        "per_event": {
            "api_cpu_s": cpu["api"] / n,
            "pg_cpu_s": cpu["postgres"] / n,
            "redis_cpu_s": cpu["redis"] / n,
            "generator_cpu_s": cpu["generator"] / n,
            "pg_active_s": (after.database["active_time"] - before.database["active_time"])
            / 1000
            / n,
            "commits": (after.database["xact_commit"] - before.database["xact_commit"]) / n,
            "wal_bytes": wal_lsn_bytes / n,
            "wal_fpi": (after.wal["wal_fpi"] - before.wal["wal_fpi"]) / n,
            "table_bytes": {k: t["bytes"] / n for k, t in sorted(growing.items())},
            "other_table_bytes": {
                k: t["bytes"] / n for k, t in sorted(tables.items()) if k not in growing
            },
            "client_bytes": network["http"] / n,
            "redis_network_bytes": network["redis"] / n,
            "pg_network_bytes": network["postgres"] / n,
            "redis_commands": (after.redis_commands - before.redis_commands) / n,
            "requests": result.requests / n,
        },
    }


async def check(database_url: str, acked: dict[str, tuple[str, str | None]]) -> list[str]:
    """Each acknowledged credited event: one event row, one credit; and `ledger verify`."""
    import asyncpg

    from benchmarks.bench_crediting import analyze, run_verify
    from service.embedded import to_asyncpg_dsn

    await analyze(database_url)
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        rows = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM partner_events) AS events,"
            " (SELECT count(*) FROM credits) AS credits,"
            " (SELECT count(*) FROM (SELECT external_id FROM partner_events"
            "   GROUP BY partner_id, external_id HAVING count(*) > 1) d) AS duplicated"
        )
    finally:
        await conn.close()
    credited = sum(1 for status, _ in acked.values() if status in CREDITED)
    ok = rows["duplicated"] == 0 and rows["credits"] >= credited
    lines = [
        f"exactly once: {'OK' if ok else 'FAILED'} ({rows['events']:,} event rows,"
        f" {rows['credits']:,} credits, {credited:,} acknowledged credited in the phases,"
        f" {rows['duplicated']} duplicated external ids)",
        await run_verify(database_url),
    ]
    return lines


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from benchmarks._harness import (
        Server,
        admin,
        database_url_for,
        describe_machine,
        free_port,
        service_command,
    )
    from benchmarks.bench_crediting import new_client, populate
    from service import migrations

    pg = PrivatePostgres(workdir / "pg")
    rd = PrivateRedis(workdir / "redis")
    server: Server | None = None
    warm: Counter[str] = Counter()
    phases: dict[str, Any] = {}
    checks: list[str] = []
    pg_settings: dict[str, str] = {}
    try:
        pg.start()
        rd.start()
        await admin(pg.url, 'CREATE DATABASE "capacity"')
        url = database_url_for(pg.url, "capacity")
        secrets_env = {
            "CARBON_POINTS_PARTNER_SECRET_KEY": secrets.token_urlsafe(48),
            "CARBON_POINTS_IDENTIFIER_PEPPER": secrets.token_urlsafe(48),
            "CARBON_POINTS_JWT_SIGNING_KEY": secrets.token_urlsafe(48),
        }
        await asyncio.to_thread(migrations.upgrade, url)
        setup = await populate(url, secrets_env, args.participants)
        env = {
            **os.environ,
            **secrets_env,
            "DATABASE_URL": url,
            "REDIS_URL": rd.url,
            "CARBON_POINTS_LOG_LEVEL": "WARNING",
            "CARBON_POINTS_DATA_DIR": str(workdir / "data"),
        }
        command = service_command(free_port(), args.workers)
        server = Server("service", command, env, args.workers, workdir / "serve.log")
        await server.wait_ready()
        print(f"private PostgreSQL :{pg.port}, Redis :{rd.port}, serve {server.base_url}")
        warm = await warm_up(server.base_url, setup, args.batch)
        print(f"warm-up: {dict(warm)}", flush=True)
        acked: dict[str, tuple[str, str | None]] = {}
        plan = {
            "batched": (args.events, args.tasks, args.batch),
            "single": (args.single_events, args.single_tasks, 1),
        }
        for seed, phase in enumerate(PHASES, start=args.seed):
            total, tasks, batch = plan[phase]
            await asyncio.sleep(1.0)
            clients = [new_client(server.base_url, setup) for _ in range(tasks)]
            # One request each first: the connections exist before the first sample.
            await asyncio.gather(*(c.list_outcomes(limit=1) for c in clients))
            before = await snapshot(url, server, pg, rd)
            result = await drive(clients, setup, phase, total, batch, seed)
            after = await snapshot(url, server, pg, rd)
            await asyncio.gather(*(c.aclose() for c in clients))
            wal = await wal_bytes_between(url, before.wal_lsn, after.wal_lsn)
            phases[phase] = figures(before, after, wal, result)
            acked.update(result.acked)
            f = phases[phase]
            print(
                f"{phase}: {f['events_credited']:,} credited in {f['wall_s']} s"
                f" ({f['credited_per_wall_second']}/s wall clock); statuses {f['statuses']};"
                f" errors {f['errors']}; per event: API {f['per_event']['api_cpu_s'] * 1e3:.3f}"
                f" ms CPU, PostgreSQL {f['per_event']['pg_cpu_s'] * 1e3:.3f} ms CPU,"
                f" WAL {f['per_event']['wal_bytes']:,.0f} B",
                flush=True,
            )
        server.stop()
        server = None
        checks = await check(url, acked)
        for line in checks:
            print(line)
        pg_settings = await server_settings(url)
    finally:
        if server is not None:
            server.stop()
        rd.stop()
        pg.stop()
    return {
        "command": "benchmarks/capacity_model.py measure " + " ".join(sys.argv[2:]),
        "machine": describe_machine(),
        "parameters": {
            k: getattr(args, k)
            for k in (
                *("workers", "participants", "events", "batch", "tasks"),
                *("single_events", "single_tasks", "seed"),
            )
        },
        "postgresql_settings": pg_settings,
        "warm_up": dict(warm),
        "phases": phases,
        "checks": checks,
        "ok": all("FAILED" not in c and "violation" not in c for c in checks),
    }


async def server_settings(database_url: str) -> dict[str, str]:
    import asyncpg

    from service.embedded import to_asyncpg_dsn

    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT name, setting, coalesce(unit, '') AS unit FROM pg_settings WHERE name IN"
            " ('server_version', 'shared_buffers', 'checkpoint_timeout', 'max_wal_size',"
            " 'synchronous_commit', 'fsync', 'full_page_writes', 'wal_compression',"
            " 'wal_level', 'autovacuum')"
        )
    finally:
        await conn.close()
    return {r["name"]: f"{r['setting']}{' ' + r['unit'] if r['unit'] else ''}" for r in rows}


def measure_main(args: argparse.Namespace) -> None:
    for tool in ("ss", "redis-server"):
        if shutil.which(tool) is None and not Path(f"/usr/bin/{tool}").exists():
            raise SystemExit(f"{tool} not found (apt-get install iproute2 redis-server)")
    started = datetime.now(UTC)
    workdir = Path(tempfile.mkdtemp(prefix="capacity-"))
    workdir.chmod(0o755)  # the private PostgreSQL runs as `postgres` when we are root
    (workdir / "pg").mkdir()
    (workdir / "redis").mkdir()
    print(f"logs under {workdir}", flush=True)
    measured = asyncio.run(measure(args, workdir))
    measured["measured_at"] = started.strftime("%Y-%m-%d %H:%M UTC")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(measured, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}")
    if not measured["ok"]:
        sys.exit(1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    m = commands.add_parser("measure", help="measure the per-event costs into a JSON file")
    m.add_argument("--out", default="benchmarks/results/capacity.json")
    m.add_argument("--workers", type=int, default=2, help="uvicorn workers of the API")
    m.add_argument("--participants", type=int, default=5_000)
    m.add_argument("--events", type=int, default=20_000, help="batched phase: events")
    m.add_argument("--batch", type=int, default=500)
    m.add_argument("--tasks", type=int, default=4, help="batched phase: concurrent senders")
    m.add_argument("--single-events", type=int, default=2_000)
    m.add_argument("--single-tasks", type=int, default=16)
    m.add_argument("--seed", type=int, default=11)
    d = commands.add_parser("model", help="derive the needs at each rate from a measured JSON")
    d.add_argument("measured", help="the JSON written by `measure`")
    d.add_argument(
        "--rates",
        type=float,
        nargs="+",
        default=list(DEFAULT_RATES),
        help="events/s (default 1,000, 10,000 and 100,000)",
    )
    defaults = Assumptions()
    for f in dataclasses.fields(Assumptions):
        d.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=type(getattr(defaults, f.name)),
            default=getattr(defaults, f.name),
            help=ASSUMPTION_HELP[f.name],
        )
    d.add_argument("--json", action="store_true", help="the needs as JSON")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.command == "measure":
        measure_main(args)
    else:
        model_main(args)


if __name__ == "__main__":
    main()
