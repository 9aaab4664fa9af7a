"""Real servers for the scaling tests: a Redis Cluster from Debian's `redis-server`, and
PgBouncer (transaction pooling) from Debian's `pgbouncer`, each on free local ports.

Both are started as child processes under a directory of the caller's and stopped by
`stop()`; neither is ever a mock. `missing_*()` gives the reason to skip when a binary is not
installed (`.ci/run` installs both).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def missing_redis_cluster() -> str | None:
    for binary in (REDIS_SERVER, REDIS_CLI):
        if not os.access(binary, os.X_OK):
            return f"{binary} is not installed (apt-get install redis-server): no Redis Cluster"
    return None


def missing_pgbouncer(*, for_tests: bool = True) -> str | None:
    """Why PgBouncer cannot run here; `for_tests`: in front of the test suite's server."""
    if not os.access(PGBOUNCER, os.X_OK):
        return f"{PGBOUNCER} is not installed (apt-get install pgbouncer): no PgBouncer"
    if for_tests and not os.environ.get("DATABASE_URL"):
        return (
            "DATABASE_URL is unset: the embedded PostgreSQL listens on a private socket, and"
            " PgBouncer goes in front of a server (set DATABASE_URL)"
        )
    return None


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (held open together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _wait(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout} s (last error: {last!r})")


@dataclass
class RedisNode:
    port: int
    process: subprocess.Popen[bytes]

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)


@dataclass
class RedisClusterServer:
    """`masters` masters with `replicas` replicas each, on 127.0.0.1."""

    directory: Path
    masters: int = 3
    replicas: int = 1
    node_timeout_ms: int = 1500
    nodes: list[RedisNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The service's REDIS_URL for it: every node a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> RedisClusterServer:
        count = self.masters * (1 + self.replicas)
        ports = free_ports(2 * count)
        self.directory.mkdir(parents=True, exist_ok=True)
        for port, bus in zip(ports[:count], ports[count:], strict=True):
            self.nodes.append(RedisNode(port, self._spawn(port, bus)))
        for node in self.nodes:
            _wait(node.client().ping, f"redis-server on {node.port}")
        subprocess.run(
            [
                REDIS_CLI,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        _wait(self.healthy, "the Redis Cluster", timeout=60)
        return self

    def _spawn(self, port: int, bus: int) -> subprocess.Popen[bytes]:
        log = open(self.directory / f"redis-{port}.log", "wb")  # noqa: SIM115 - kept by Popen
        return subprocess.Popen(
            [
                REDIS_SERVER,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                str(bus),
                "--cluster-config-file",
                str(self.directory / f"nodes-{port}.conf"),
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def live_nodes(self) -> list[RedisNode]:
        return [n for n in self.nodes if n.process.poll() is None]

    def healthy(self) -> bool:
        """Every live node sees the cluster ok, with `masters` masters serving all slots and
        every live replica's link to its master up."""
        for node in self.live_nodes():
            client = node.client()
            info = client.cluster("info")
            if info["cluster_state"] != "ok" or int(info["cluster_slots_ok"]) != 16384:
                return False
            role = client.info("replication")
            if role["role"] == "slave" and role.get("master_link_status") != "up":
                return False
        return len(self.masters_now()) == self.masters

    def masters_now(self) -> list[RedisNode]:
        return [n for n in self.live_nodes() if n.client().info("replication")["role"] == "master"]

    def master_of(self, key: str) -> RedisNode:
        slot = self.live_nodes()[0].client().cluster("keyslot", key)
        for node in self.masters_now():
            for entry in node.client().cluster("slots"):
                if entry[0] <= slot <= entry[1] and entry[2][1] == node.port:
                    return node
        raise LookupError(f"no master serves slot {slot}")

    def kill(self, node: RedisNode) -> None:
        """SIGKILL: no goodbye to the cluster; its replica takes over after the node timeout."""
        node.process.kill()
        node.process.wait(timeout=10)

    def stop(self) -> None:
        for node in self.nodes:
            if node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            try:
                node.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()


@dataclass
class PgBouncerServer:
    """PgBouncer in transaction pooling mode in front of the PostgreSQL of `server_url`,
    every database name passed through; trust authentication, as the servers behind it.
    Run as root, it drops to the `postgres` user (or `nobody`), so `directory` must be
    reachable by that user (`tempfile.mkdtemp()`, not pytest's 0700 tmp_path)."""

    directory: Path
    server_url: str
    pool_size: int = 20
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        user = urlsplit(self.server_url).username or "postgres"
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PgBouncerServer:
        parts = urlsplit(self.server_url.replace("postgresql+asyncpg://", "postgresql://"))
        query = parse_qs(parts.query)
        host = unquote(query.get("host", [parts.hostname or "127.0.0.1"])[0])
        port = int(query.get("port", [parts.port or 5432])[0])
        user = parts.username or "postgres"
        self.port = free_ports(1)[0]
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "userlist.txt").write_text(f'"{user}" ""\n')
        ini = self.directory / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host={host} port={port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.directory / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            "max_client_conn = 1000\n"
            f"default_pool_size = {self.pool_size}\n"
            "server_lifetime = 3600\n"
            # What a test measures: none of PgBouncer's own startup-parameter leniency.
            "ignore_startup_parameters =\n"
        )
        command = [PGBOUNCER, str(ini)]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            user_name = "postgres" if _user_exists("postgres") else "nobody"
            command = [PGBOUNCER, "-u", user_name, str(ini)]
            # Its files readable by that user: the directory is the caller's own (a
            # `tempfile.mkdtemp()` under /tmp, whose parents every user may traverse).
            for path in (self.directory, *self.directory.iterdir()):
                path.chmod(0o755 if path.is_dir() else 0o644)
        log = open(self.directory / "pgbouncer.log", "wb")  # noqa: SIM115 - kept by Popen
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

        def listening() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    "pgbouncer exited: " + (self.directory / "pgbouncer.log").read_text()
                )
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True

        _wait(listening, f"pgbouncer on {self.port}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


async def redis_keys(client: object, pattern: str) -> list[str]:
    """KEYS `pattern` on one Redis, or on every master of a cluster (the cluster client
    sends KEYS to one random node unless told otherwise)."""
    from redis.asyncio.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        found = await client.keys(pattern, target_nodes=RedisCluster.PRIMARIES)
    else:
        found = await client.keys(pattern)  # type: ignore[attr-defined]
    return sorted(k.decode() for k in found)
