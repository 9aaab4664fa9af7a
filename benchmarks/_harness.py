"""What the HTTP benchmarks share: databases, servers, CPU accounting, a raw-socket client.

Used by ``bench_app_reads.py`` and ``bench_till.py`` (``bench_crediting.py`` keeps its own
copy). Nothing here knows the service: servers are commands, requests are bytes.

* Databases: ``admin`` runs a statement on the server's ``postgres`` database;
  ``database_url_for`` names another database on the same server.
* Servers: ``Server`` starts a command (``service_command`` or ``floor_command``) in its own
  process group on a free port, waits for ``GET /readyz``, finds its uvicorn workers, stops it.
* CPU: ``sample_cpu`` and ``cpu_share`` give the cores each process group used between two
  samples, from /proc: the load generator, the server under test, the idle servers,
  PostgreSQL's backends of the benchmark's databases and its other processes, Redis, and the
  rest of the machine (a busy "rest" means the box was shared).
* Load: ``Connection`` is one HTTP/1.1 keep-alive connection on a raw socket (pre-built
  request bytes, Content-Length framing, a few tens of microseconds of CPU a request);
  ``Pool`` hands out at most ``size`` of them, FIFO.
* py-spy: ``start_py_spy`` / ``finish_py_spy`` record a server's workers and print the top
  frames.
"""

from __future__ import annotations

import asyncio
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from service.embedded import to_asyncpg_dsn

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
NETWORK_ERRORS = (OSError, asyncio.IncompleteReadError, ValueError)
T = TypeVar("T")


# --- databases ------------------------------------------------------------------------------


async def admin(server_url: str, statement: str) -> None:
    parsed = make_url(to_asyncpg_dsn(server_url)).set(database="postgres")
    conn = await asyncpg.connect(parsed.render_as_string(hide_password=False))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def recreate(server_url: str, name: str) -> str:
    await admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin(server_url, f'CREATE DATABASE "{name}"')
    return database_url_for(server_url, name)


async def drop(server_url: str, name: str) -> None:
    await admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url_for(server_url: str, name: str) -> str:
    return make_url(to_asyncpg_dsn(server_url)).set(database=name).render_as_string(False)


async def execute(database_url: str, statement: str) -> None:
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def redis_url_with_db(url: str, db: int) -> str:
    if url.startswith("unix://"):
        return url.split("?", 1)[0] + f"?db={db}"
    scheme, rest = url.rstrip("/").split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}/{db}"


# --- servers --------------------------------------------------------------------------------


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


def service_command(port: int, workers: int) -> list[str]:
    return [
        str(ROOT / ".venv" / "bin" / "carbon-points"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def floor_command(module: str, port: int, workers: int) -> list[str]:
    """A floor app (``benchmarks/<module>.py``) with the service's uvicorn settings
    (service/cli.py): uvloop, httptools, no access log."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        f"{module}:app",
        "--app-dir",
        str(ROOT / "benchmarks"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


class Server:
    """One server process group (uvicorn's supervisor and its workers) on a free port."""

    def __init__(
        self, name: str, command: list[str], env: dict[str, str], workers: int, log_path: Path
    ) -> None:
        self.name = name
        self.port = int(command[command.index("--port") + 1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command,
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
                    raise RuntimeError(f"{self.name} exited; see {self.log_path}")
                try:
                    ready = (await http.get("/readyz", timeout=2.0)).status_code == 200
                    if ready and len(self.worker_pids()) >= self.workers:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {limit} s; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        if self.workers == 1:
            return [self.process.pid]
        # multiprocessing's resource tracker is a child too, but no worker.
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


_FLOOR_STATS = re.compile(r"^floor-stats .*$", re.MULTILINE)


def floor_stats(log_path: Path) -> Counter[str]:
    """The totals of the ``floor-stats key=value ...`` lines the floor workers print on exit."""
    totals: Counter[str] = Counter()
    for line in _FLOOR_STATS.findall(log_path.read_text(errors="replace")):
        for part in line.split()[1:]:
            key, _, value = part.partition("=")
            if value.isdigit() and key != "pid":
                totals[key] += int(value)
    return totals


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


def postgres_processes(databases: Iterable[str]) -> tuple[list[int], list[int]]:
    """PostgreSQL's processes: (backends connected to one of `databases`, all the others)."""
    tags = [f" {name} ".encode() for name in databases]
    ours: list[int] = []
    rest: list[int] = []
    for pid in pids_named("postgres"):
        try:
            title = (Path("/proc") / str(pid) / "cmdline").read_bytes()
        except OSError:
            continue
        (ours if any(tag in title for tag in tags) else rest).append(pid)
    return ours, rest


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all processes, kernel included), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


CPU_GROUPS = ("generator", "server", "idle servers", "postgres", "postgres other", "redis", "rest")
CORES_SHOWN = ("generator", "server", "postgres", "postgres other", "redis", "rest")
CORES_HEADER = "cores: generator/server/postgres/pg other/redis/rest"


@dataclass
class CpuSample:
    at: float
    by_group: dict[str, dict[int, float]]
    machine: float


def sample_cpu(server: Server, idle: Sequence[Server], databases: Iterable[str]) -> CpuSample:
    ours, rest = postgres_processes(databases)
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
    """Cores used by each group between two samples; "rest" is the machine's busy time less
    all the groups."""
    wall = after.at - before.at
    if wall <= 0:
        return {}
    shares = {}
    for name, now in after.by_group.items():
        then = before.by_group.get(name, {})
        shares[name] = sum(seconds - then.get(pid, 0.0) for pid, seconds in now.items()) / wall
    shares["rest"] = max(0.0, (after.machine - before.machine) / wall - sum(shares.values()))
    return shares


def cores(cpu: dict[str, float]) -> str:
    return "/".join(f"{cpu.get(g, 0.0):.2f}" for g in CORES_SHOWN)


def median_cpu(samples: Sequence[dict[str, float]]) -> dict[str, float]:
    return {g: statistics.median(s.get(g, 0.0) for s in samples) for g in CPU_GROUPS}


# --- a minimal HTTP/1.1 keep-alive client ---------------------------------------------------


class HttpError(ValueError):
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

    async def acquire(self) -> Connection:
        if self.idle.empty() and self.opened < self.size:
            self.opened += 1
            try:
                return await Connection.open(self.port)
            except BaseException:
                self.opened -= 1
                raise
        return await self.idle.get()

    def release(self, conn: Connection, reusable: bool) -> None:
        if reusable:
            self.idle.put_nowait(conn)
        else:
            conn.close()
            self.opened -= 1

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        conn = await self.acquire()
        try:
            status, body, reusable = await conn.request(raw)
        except BaseException:
            self.release(conn, False)
            raise
        self.release(conn, reusable)
        return status, body

    def close(self) -> None:
        while not self.idle.empty():
            self.idle.get_nowait().close()
        self.opened = 0


def http_request(
    method: str, path: str, port: int, headers: dict[str, str], body: bytes = b""
) -> bytes:
    """The request bytes, with Host and (for a body) Content-Length."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# --- figures --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of seconds, in ms."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1] * 1000


def ratio(value: float, floor: float | None) -> str:
    if floor is None or not floor or math.isnan(value) or math.isnan(floor):
        return "-"
    return f"{value / floor:.2f}"


def rotated(items: Sequence[T], round_: int) -> list[T]:
    """The round's order: rotated by one each round, so no server always goes first."""
    k = round_ % len(items) if items else 0
    return [*items[k:], *items[:k]]


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


# --- py-spy -----------------------------------------------------------------------------------


Spies = list[tuple[subprocess.Popen[bytes], Path]]


def start_py_spy(directory: str | None, server: Server, label: str, duration: float) -> Spies:
    """Record every worker of `server` for about `duration` s (raw stacks in `directory`)."""
    if not directory:
        return []
    binary = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    seconds = max(1, int(duration) - 1)
    spies: Spies = []
    slug = re.sub(r"[^a-z0-9.]+", "-", label.lower()).strip("-")
    for pid in server.worker_pids():
        path = out / f"{slug}-worker-{pid}.txt"
        command = [binary, "record", "-p", str(pid), "-d", str(seconds), "-r", "97"]
        command += ["-f", "raw", "-o", str(path), "--nonblocking"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        spies.append((process, path))
    return spies


def finish_py_spy(spies: Spies, label: str, profile: list[str], ours: Sequence[str]) -> None:
    """Wait for the recorders; append the top frames (own time, and `ours` inclusive)."""
    if not spies:
        return
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
    profile.append(f"\n{label}: py-spy, {len(spies)} worker(s), raw stacks in {spies[0][1].parent}")
    if not total:
        profile.append("  py-spy recorded nothing (ptrace not permitted?)")
        return
    profile.append(f"  {total} samples; top frames by own time:")
    profile += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(20)]
    profile.append("  project frames by inclusive time:")
    mine = [(f, n) for f, n in inclusive.most_common() if any(part in f for part in ours)]
    profile += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in mine[:25]]
