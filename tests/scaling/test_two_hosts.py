"""Two hosts' worth of API (docs/scaling.md, "Several API processes behind a load balancer"):
two real `carbon-points serve` processes on their own ports and two `carbon-points worker`
processes, all on one database and one Redis, as two hosts behind a load balancer would be.

Signed partner batches go to both processes at once, and the same batches and the same single
events go to both at the same moment, so every duplicate races itself across processes (no
stickiness: a balancer may send a partner's retry anywhere). Then: every event is acknowledged
with one answer wherever it went, each is one row and at most one credit, each participant's
balance is the sum of their credits, and the ledger verifies. The two workers run their jobs
meanwhile (each job under its advisory lock, so one of them at a time) and stop cleanly.

Then the shipped HAProxy configuration (deploy/haproxy/haproxy.cfg, unchanged, its addresses
from the environment) in front of the two: batches from several senders, duplicates among
them, are spread over both processes and credited exactly once; and a process whose /readyz
answers 503 (a stand-in that accepts connections and fails everything) is taken out by the
health check before any partner request reaches it. Skipped, saying so, without `haproxy`.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import ClassVar

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from integrations import AsyncCarbonPointsClient, Event, Outcome
from service.config import Settings
from service.db import create_sessionmaker
from service.dev_secrets import load_secrets
from service.ledger import service as ledger
from service.ledger.verify import verify_ledger
from service.methodologies.service import sync_library
from service.models import Participant
from service.partners.credentials import IssuedCredential, issue_credential, subject_hash
from service.partners.service import create_partner
from tests.crediting.conftest import TRIP_AT, metro

ROOT = Path(__file__).resolve().parents[2]
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
HAPROXY_CONFIG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
RIDERS = 12
CREDITED = {"credited", "capped"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM the process group; its exit status (killed after 30 s)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


def _environment(settings: Settings) -> dict[str, str]:
    secrets = load_secrets(settings)
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "CARBON_POINTS_REDIS_CLUSTER": str(settings.redis_cluster).lower(),
        "CARBON_POINTS_DB_PGBOUNCER": str(settings.db_pgbouncer).lower(),
        "CARBON_POINTS_DATA_DIR": str(settings.data_dir),
        "CARBON_POINTS_ENVIRONMENT": "test",
        "CARBON_POINTS_PARTNER_SECRET_KEY": secrets.partner_secret_key,
        "CARBON_POINTS_IDENTIFIER_PEPPER": secrets.identifier_pepper,
        "CARBON_POINTS_JWT_SIGNING_KEY": secrets.jwt_signing_key,
        "CARBON_POINTS_LOG_LEVEL": "WARNING",
        "CARBON_POINTS_DB_POOL_SIZE": "4",
        # The workers' jobs come round often, so both run them while the batches go in.
        "CARBON_POINTS_WORKER_WEBHOOKS_SECONDS": "0.3",
        "CARBON_POINTS_WORKER_HOLDS_SECONDS": "0.5",
        "CARBON_POINTS_WORKER_PENDING_SECONDS": "0.7",
        "CARBON_POINTS_WORKER_LOTS_SECONDS": "0.9",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }


def _start(name: str, arguments: list[str], env: dict[str, str], directory: Path) -> Process:
    log = directory / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", *arguments],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(name, process, log)


@pytest.fixture
async def partner(
    committed: AsyncEngine, test_settings: Settings
) -> tuple[IssuedCredential, list[str]]:
    """The data are there before the processes start (they cache the methodologies)."""
    return await _setup(committed, test_settings)


@pytest.fixture
def hosts(
    partner: tuple[IssuedCredential, list[str]], test_settings: Settings
) -> Iterator[tuple[list[Process], list[Process]]]:
    """Two `serve` processes (one uvicorn worker each, as two hosts) and two `worker`s."""
    env = _environment(test_settings)
    directory = Path(tempfile.mkdtemp(prefix="cp-two-hosts-"))
    servers: list[Process] = []
    workers: list[Process] = []
    try:
        for n in range(2):
            port = _free_port()
            arguments = ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
            server = _start(f"serve-{n}", arguments, env, directory)
            server.port = port
            servers.append(server)
        workers = [_start(f"worker-{n}", ["worker"], env, directory) for n in range(2)]
        deadline = time.monotonic() + 90  # imports alone take seconds on a loaded machine
        for server in servers:
            while True:
                assert server.process.poll() is None, server.output()
                try:
                    if httpx.get(server.base_url + "/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{server.name} not ready: {server.output()}"
                time.sleep(0.2)
        yield servers, workers
    finally:
        for process in [*servers, *workers]:
            process.stop()


async def _setup(engine: AsyncEngine, settings: Settings) -> tuple[IssuedCredential, list[str]]:
    """A partner with a credential and `RIDERS` participants linked to cards."""
    secrets = load_secrets(settings)
    sessionmaker = create_sessionmaker(engine)
    cards = [f"62220300000001{n:02d}" for n in range(RIDERS)]
    async with sessionmaker() as session, session.begin():
        await sync_library(session)
        partner = await create_partner(
            session,
            code=f"two-hosts-{uuid.uuid4().hex[:6]}",
            name="Two Hosts Metro",
            kind="transit",
            action_types=["transit.metro", "transit.bus"],
        )
        credential = await issue_credential(session, secrets.partner_secret_key, partner.id)
        for card in cards:
            participant = uuid.uuid4()
            session.add(Participant(id=participant, kind="citizen", display_name="Rider"))
            await session.flush()
            await session.execute(
                text(
                    "INSERT INTO identity_links (participant_id, partner_id, subject_hash)"
                    " VALUES (:participant, :partner, :hash)"
                ),
                {
                    "participant": participant,
                    "partner": partner.id,
                    "hash": subject_hash(secrets.identifier_pepper, partner.id, card),
                },
            )
    return credential, cards


def _client(server: Process, credential: IssuedCredential) -> AsyncCarbonPointsClient:
    return AsyncCarbonPointsClient(
        server.base_url,
        key_id=credential.key_id,
        secret=credential.secret,
        max_retries=0,
        timeout=httpx.Timeout(120.0, connect=10.0),
    )


async def test_two_serve_processes_credit_each_event_exactly_once(
    hosts: tuple[list[Process], list[Process]],
    partner: tuple[IssuedCredential, list[str]],
    committed: AsyncEngine,
) -> None:
    servers, workers = hosts
    credential, cards = partner
    events = [
        metro(
            f"two-hosts-{r}-{i}",
            card=cards[r],
            occurred_at=TRIP_AT + timedelta(minutes=2 * i),
            quantities={"distance_m": 3000 + 700 * i + 13 * r, "duration_s": 900 + 30 * i},
        )
        for r in range(RIDERS)
        for i in range(25)
    ]
    # Thirds: the first to the first process only, the second to the second only, the last
    # to both at the same moment; and every batch is later sent again to the other process.
    third = len(events) // 3
    only_a, only_b, both = events[:third], events[third : 2 * third], events[2 * third :]

    def batches(chunk: list[Event], size: int = 25) -> list[list[Event]]:
        return [chunk[i : i + size] for i in range(0, len(chunk), size)]

    answers: list[tuple[str, Outcome]] = []

    async def send(server: Process, chunks: list[list[Event]]) -> None:
        async with _client(server, credential) as client:
            for chunk in chunks:
                for outcome in await client.submit_events(chunk, batch_size=len(chunk)):
                    answers.append((server.name, outcome))

    async def send_singles(server: Process, chunk: list[Event]) -> None:
        async with _client(server, credential) as client:
            for event in chunk:
                answers.append((server.name, await client.submit_event(event)))

    a, b = servers
    started = time.monotonic()
    await asyncio.gather(
        send(a, batches(only_a)),
        send(b, batches(only_b)),
        # The same batches to both processes at once, in the same and in reverse order.
        send(a, batches(both)),
        send(b, batches(both)),
        send(a, batches(both[::-1], 40)),
        send(b, batches(both[::-1], 40)),
        # Single events racing batches that hold them, across processes.
        send_singles(b, only_a[:20]),
        send_singles(a, only_b[:20]),
    )
    # Every batch again, to the other process: duplicates of settled events.
    await asyncio.gather(send(b, batches(only_a, 50)), send(a, batches(only_b, 50)))
    elapsed = time.monotonic() - started

    by_event: dict[str, Outcome] = {}
    served_by: dict[str, set[str]] = {}
    for name, outcome in answers:
        served_by.setdefault(name, set()).add(outcome.external_id)
        first = by_event.setdefault(outcome.external_id, outcome)
        # One answer per event, whichever process gave it and however often it was asked.
        assert (outcome.status, outcome.credit_id, outcome.points, outcome.grams) == (
            first.status,
            first.credit_id,
            first.points,
            first.grams,
        ), outcome.external_id
    assert set(by_event) == {e.external_id for e in events}
    assert set(served_by) == {"serve-0", "serve-1"}
    credited = {x: o for x, o in by_event.items() if o.status in CREDITED}
    assert credited, {o.status for o in by_event.values()}
    assert all(o.credit_id for o in credited.values())
    assert len({o.credit_id for o in credited.values()}) == len(credited)

    async with committed.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT pe.external_id, count(DISTINCT pe.id) AS events,"
                    " count(c.event_id) AS credits, coalesce(sum(c.points), 0) AS points,"
                    " min(c.event_id::text) AS credit_id"
                    " FROM partner_events pe LEFT JOIN credits c ON c.event_id = pe.id"
                    " WHERE pe.partner_id = :partner GROUP BY pe.external_id"
                ),
                {"partner": credential.partner_id},
            )
        ).all()
        per_participant = (
            await connection.execute(
                text(
                    "SELECT participant_id, sum(points) FROM credits"
                    " WHERE partner_id = :partner GROUP BY participant_id"
                ),
                {"partner": credential.partner_id},
            )
        ).all()
    stored = {row.external_id: row for row in rows}
    assert set(stored) == set(by_event)
    for external_id, outcome in by_event.items():
        row = stored[external_id]
        assert row.events == 1, external_id
        assert row.credits == (1 if external_id in credited else 0), external_id
        if external_id in credited:
            assert row.credit_id == outcome.credit_id
            assert row.points == outcome.points
    assert sum(points for _, points in per_participant) == sum(o.points for o in credited.values())
    sessionmaker = create_sessionmaker(committed)
    async with sessionmaker() as session:
        for participant, points in per_participant:
            assert (await ledger.balance(session, participant)).posted == points
    assert (await verify_ledger(committed)).ok

    # The workers ran their jobs beside the two servers all along, and stop cleanly.
    for worker in workers:
        assert worker.process.poll() is None, worker.output()
    # `serve` leaves on SIGTERM through SystemExit(128 + 15) (service/platform_commands.py).
    for process, clean in [*((w, 0) for w in workers), *((s, 128 + 15) for s in servers)]:
        code = process.stop()
        assert code == clean, f"{process.name} exited {code}: {process.output()}"
        assert "Traceback" not in process.output(), process.output()
    assert elapsed < 120


async def _check_exactly_once(
    committed: AsyncEngine, credential: IssuedCredential, answers: list[Outcome]
) -> dict[str, Outcome]:
    """One answer per event; one event row each and one credit per credited one; balances
    are the sums of the credits; the ledger verifies. The answers by external id."""
    by_event: dict[str, Outcome] = {}
    for outcome in answers:
        first = by_event.setdefault(outcome.external_id, outcome)
        assert (outcome.status, outcome.credit_id, outcome.points) == (
            first.status,
            first.credit_id,
            first.points,
        ), outcome.external_id
    async with committed.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT pe.external_id, count(DISTINCT pe.id) AS events,"
                    " count(c.event_id) AS credits, min(c.event_id::text) AS credit_id"
                    " FROM partner_events pe LEFT JOIN credits c ON c.event_id = pe.id"
                    " WHERE pe.partner_id = :partner GROUP BY pe.external_id"
                ),
                {"partner": credential.partner_id},
            )
        ).all()
        sums = (
            await connection.execute(
                text(
                    "SELECT participant_id, sum(points) FROM credits WHERE partner_id = :partner"
                    " GROUP BY participant_id"
                ),
                {"partner": credential.partner_id},
            )
        ).all()
    assert {row.external_id for row in rows} == set(by_event)
    for row in rows:
        credited = by_event[row.external_id].status in CREDITED
        assert (row.events, row.credits) == (1, 1 if credited else 0), row.external_id
        if credited:
            assert row.credit_id == by_event[row.external_id].credit_id
    async with create_sessionmaker(committed)() as session:
        for participant, points in sums:
            assert (await ledger.balance(session, participant)).posted == points
    assert (await verify_ledger(committed)).ok
    return by_event


class _Unready(BaseHTTPRequestHandler):
    """A process that accepts connections but is not ready: /readyz 503, everything else
    500. Counts what is not a health check."""

    others: ClassVar[list[str]] = []

    def _answer(self) -> None:
        if self.path != "/readyz":
            _Unready.others.append(f"{self.command} {self.path}")
        body = b'{"status": "unready"}'
        self.send_response(503 if self.path == "/readyz" else 500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def _haproxy(backends: list[str], directory: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """deploy/haproxy/haproxy.cfg as shipped, its addresses set in the environment."""
    listen, stats = _free_port(), _free_port()
    env = {
        **os.environ,
        "CP_LISTEN": f"127.0.0.1:{listen}",
        "CP_STATS": f"127.0.0.1:{stats}",
        "CP_API_1": backends[0],
        "CP_API_2": backends[1],
    }
    log = (directory / f"haproxy-{listen}.log").open("wb")
    process = subprocess.Popen(
        [HAPROXY, "-db", "-f", str(HAPROXY_CONFIG)], env=env, stdout=log, stderr=log
    )
    return process, f"http://127.0.0.1:{listen}", f"http://127.0.0.1:{stats}/stats;csv"


def _servers_status(stats_url: str) -> dict[str, dict[str, str]]:
    text_csv = httpx.get(stats_url, timeout=2).text.lstrip("# ")
    return {
        row["svname"]: row
        for row in csv.DictReader(io.StringIO(text_csv))
        if row["pxname"] == "serve" and row["svname"] not in ("FRONTEND", "BACKEND")
    }


def _wait_for(stats_url: str, wanted: dict[str, str], process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, "haproxy exited"
        try:
            status = {name: row["status"] for name, row in _servers_status(stats_url).items()}
            if all(status.get(name, "").startswith(want) for name, want in wanted.items()):
                return
        except httpx.HTTPError:
            status = {}
        assert time.monotonic() < deadline, f"haproxy: {status}, wanted {wanted}"
        time.sleep(0.2)


async def test_haproxy_spreads_batches_and_takes_an_unready_process_out(
    hosts: tuple[list[Process], list[Process]],
    partner: tuple[IssuedCredential, list[str]],
    committed: AsyncEngine,
) -> None:
    if not os.access(HAPROXY, os.X_OK):
        pytest.skip(f"{HAPROXY} is not installed (apt-get install haproxy)")
    servers, _ = hosts
    credential, cards = partner
    directory = Path(tempfile.mkdtemp(prefix="cp-haproxy-"))
    events = [
        metro(
            f"via-lb-{r}-{i}",
            card=cards[r],
            occurred_at=TRIP_AT + timedelta(minutes=2 * i),
            quantities={"distance_m": 2500 + 500 * i + 11 * r, "duration_s": 800 + 20 * i},
        )
        for r in range(RIDERS)
        for i in range(10)
    ]
    answers: list[Outcome] = []

    async def sender(base_url: str, chunks: list[list[Event]]) -> None:
        client = AsyncCarbonPointsClient(
            base_url, key_id=credential.key_id, secret=credential.secret, max_retries=0
        )
        async with client:
            for chunk in chunks:
                answers.extend(await client.submit_events(chunk, batch_size=len(chunk)))

    # Both real processes behind the shipped configuration.
    both, lb_url, stats_url = _haproxy([f"127.0.0.1:{s.port}" for s in servers], directory)
    try:
        _wait_for(stats_url, {"api-1": "UP", "api-2": "UP"}, both)
        chunks = [events[i : i + 10] for i in range(0, len(events), 10)]
        # Four senders; the last two send the others' batches again, racing them.
        await asyncio.gather(
            sender(lb_url, chunks[0::2]),
            sender(lb_url, chunks[1::2]),
            sender(lb_url, chunks[1::2][::-1]),
            sender(lb_url, chunks[0::2][::-1]),
        )
        spread = {name: int(row["stot"]) for name, row in _servers_status(stats_url).items()}
    finally:
        both.terminate()
        both.wait(timeout=10)
    # Every batch went to a server, and least-connections used both.
    assert sum(spread.values()) == 2 * len(chunks), spread
    assert all(n > 0 for n in spread.values()), spread
    by_event = await _check_exactly_once(committed, credential, answers)
    assert set(by_event) == {e.external_id for e in events}
    assert any(o.status in CREDITED for o in by_event.values())

    # One real process and one that is not ready: only the ready one gets partner requests.
    unready = ThreadingHTTPServer(("127.0.0.1", 0), _Unready)
    Thread(target=unready.serve_forever, daemon=True).start()
    _Unready.others.clear()
    backends = [f"127.0.0.1:{servers[0].port}", f"127.0.0.1:{unready.server_address[1]}"]
    mixed, lb_url, stats_url = _haproxy(backends, directory)
    try:
        _wait_for(stats_url, {"api-1": "UP", "api-2": "DOWN"}, mixed)
        answers.clear()
        await asyncio.gather(*(sender(lb_url, [events[i::4]]) for i in range(4)))
    finally:
        mixed.terminate()
        mixed.wait(timeout=10)
        unready.shutdown()
    assert _Unready.others == []
    again = {o.external_id: o for o in answers}
    assert set(again) == set(by_event)
    for external_id, outcome in again.items():  # the original answers, nothing new
        assert (outcome.status, outcome.credit_id) == (
            by_event[external_id].status,
            by_event[external_id].credit_id,
        )
    await _check_exactly_once(committed, credential, list(by_event.values()))
