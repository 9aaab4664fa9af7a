"""`make loadtest`: seed, serve, run Locust headless, check, summarise.

    .venv/bin/python -m loadtests.run [--workers 2] [--users 30] [--duration 3m] [--shape rush]

1. Servers: ``DATABASE_URL`` and ``REDIS_URL`` (or ``--database-url`` / ``--redis-url``) when
   set; otherwise the embedded PostgreSQL and Redis, started as the service starts them
   (``service.embedded.resolve_servers``) with their own data under ``.data/loadtest``.
2. Set-up (``loadtests/seed.py``): a fresh database ``carbon_points_loadtest_<pid>``, migrated,
   with partners, linked participants, app users and merchants; random secrets handed to the
   service through its environment. Redis database ``--redis-db`` (default 13).
3. ``carbon-points serve --workers W`` on a free port; once ``/readyz`` answers, every app user
   gets ``--seed-trips`` metro trips through the partner API (their first real credits).
4. Locust, headless, with the ``RushHour`` shape of ``loadtests/locustfile.py``; its CSV files
   and HTML report, the service's log and this summary go to ``loadtests/results/<time>/``.
5. After the service stops: ``carbon-points ledger verify``, and every event a partner saw
   acknowledged is compared with ``partner_events``, ``credits`` and the ledger: present, with
   the acknowledged status, and credited exactly once (a ``credits`` row and a ledger
   transaction for each credited or capped event with points, none for the others).
6. The summary: credited events/s, p50/p95/p99 per endpoint, error rate, the two checks. The
   exit status is 0 only when both checks pass and no request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Runnable as `python loadtests/run.py` from a checkout, too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import httpx

from integrations import CarbonPointsClient
from loadtests.common import CREDITED, TRANSIT, Acked, State, read_acked, write_acked
from loadtests.events import transit_trip
from loadtests.seed import create_database, drop_database, new_secrets, populate
from service.config import Settings
from service.embedded import resolve_servers, to_asyncpg_dsn

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGET_BATCHED = 16_000.0  # credited events/s, batches of 500 (PRODUCT.md)
TARGET_SINGLE = 1_000.0
TARGET_SINGLE_P99_MS = 50.0
TARGET_APP_P99_MS = 20.0


def log(message: str) -> None:
    print(message, flush=True)


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``3m``, ``1h`` or ``1m30s`` (Locust's --run-time style)."""
    text = text.strip().lower()
    if text.replace(".", "", 1).isdigit():
        return float(text)
    total, number = 0.0, ""
    for char in text:
        if char.isdigit() or char == ".":
            number += char
        elif char in "hms" and number:
            total += float(number) * {"h": 3600, "m": 60, "s": 1}[char]
            number = ""
        else:
            raise argparse.ArgumentTypeError(f"not a duration: {text!r}")
    if number:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r}")
    return total


def redis_url_with_db(url: str, db: int) -> str:
    if url.startswith("unix://"):
        return url.split("?", 1)[0] + f"?db={db}"
    scheme, rest = url.rstrip("/").split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}/{db}"


# --- the service ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`carbon-points serve` in its own process group, logging to a file."""

    def __init__(self, env: dict[str, str], workers: int, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                str(BIN / "carbon-points"),
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

    def wait_ready(self, limit: float = 120.0) -> None:
        deadline = time.monotonic() + limit
        with httpx.Client(base_url=self.base_url) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the service exited; see {self.log_path}")
                try:
                    if http.get("/readyz", timeout=2.0).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
        raise RuntimeError(f"the service was not ready after {limit:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def seed_credits(state: State, trips: int) -> int:
    """Every app user's first credits, through the partner API like any other trip."""
    if trips <= 0 or not state.app_users:
        return 0
    rng = random.Random(7)
    key = state.partners[TRANSIT]
    events = [
        transit_trip(rng, f"{state.run_id}-seed-{u.index}-{n}", u.index)
        for u in state.app_users
        for n in range(trips)
    ]
    with CarbonPointsClient(
        state.base_url, key_id=key.key_id, secret=key.secret, timeout=120.0
    ) as sdk:
        outcomes = sdk.submit_events(events, batch_size=500)
    write_acked(
        Path(state.acked_dir),
        "setup",
        (
            (e.external_id, TRANSIT, o.status, o.points, o.grams, o.credit_id)
            for e, o in zip(events, outcomes, strict=True)
        ),
    )
    return len(events)


# --- checks --------------------------------------------------------------------------------

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
FROM loadtest_acked a
LEFT JOIN partner_events e ON e.partner_id = a.partner_id AND e.external_id = a.external_id
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


async def exactly_once(state: State, acked: list[Acked]) -> tuple[bool, list[str], dict[str, Any]]:
    """Every acknowledged event against partner_events, credits and the ledger."""
    by_key: dict[tuple[str, str], set[tuple[str, int, int, str | None]]] = defaultdict(set)
    for a in acked:
        by_key[(a.partner, a.external_id)].add((a.status, a.points, a.grams, a.credit_id))
    resend_disagree = sum(1 for seen in by_key.values() if len(seen) > 1)
    partner_ids = {code: uuid.UUID(k.partner_id) for code, k in state.partners.items()}
    records = [(x, partner_ids[p], *sorted(seen, key=str)[0]) for (p, x), seen in by_key.items()]
    conn = await asyncpg.connect(to_asyncpg_dsn(state.database_url))
    try:
        await conn.execute(
            "CREATE TEMP TABLE loadtest_acked (external_id text, partner_id uuid, status text,"
            " points bigint, grams bigint, credit_id text, PRIMARY KEY (partner_id, external_id))"
        )
        await conn.copy_records_to_table("loadtest_acked", records=records)
        await conn.execute("ANALYZE loadtest_acked")
        row = await conn.fetchrow(_CHECK)
        glob = await conn.fetchrow(_GLOBAL)
    finally:
        await conn.close()
    assert row is not None
    assert glob is not None
    bad = {
        k: int(row[k])
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
    bad["resends_with_another_outcome"] = resend_disagree
    bad["duplicate_credits"] = int(glob["duplicate_credits"])
    bad["duplicate_ledger_keys"] = int(glob["duplicate_ledger_keys"])
    bad["credits_vs_credited_events"] = int(glob["credits"] - glob["events_credited"])
    bad["ledger_vs_credits_with_value"] = int(glob["ledger_credits"] - glob["credits_with_value"])
    ok = row["acked"] > 0 and not any(bad.values())
    lines = [
        f"acknowledged: {len(acked):,} acknowledgements of {row['acked']:,} distinct events, "
        f"{row['acked_credited']:,} credited or capped ({row['points']:,} points)",
        f"database: {glob['events']:,} events, {glob['events_credited']:,} credited or capped, "
        f"{glob['credits']:,} credits, {glob['ledger_credits']:,} ledger credit transactions",
        "exactly once: "
        + ("PASS" if ok else "FAIL")
        + " ("
        + ", ".join(f"{k}={v}" for k, v in bad.items())
        + ")",
    ]
    return ok, lines, {"distinct_acked": int(row["acked"]), **bad}


async def analyze(database_url: str) -> None:
    conn = await asyncpg.connect(to_asyncpg_dsn(database_url))
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def ledger_verify(env: dict[str, str]) -> tuple[bool, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [str(BIN / "carbon-points"), "ledger", "verify"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    output = (result.stdout + result.stderr).strip().splitlines()
    tail = " | ".join(line for line in output if line.strip())[-400:]
    verdict = "PASS" if result.returncode == 0 else f"FAIL (exit {result.returncode})"
    return result.returncode == 0, (
        f"ledger verify: {verdict} in {time.perf_counter() - started:.1f} s: {tail}"
    )


# --- the summary -----------------------------------------------------------------------------


def read_stats(prefix: Path) -> list[dict[str, str]]:
    path = Path(f"{prefix}_stats.csv")
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "", "N/A") else math.nan
    except ValueError:
        return math.nan


def credited_rates(acked: list[Acked], window: float = 10.0) -> tuple[int, float, float]:
    """Distinct events credited during the run, and the peak rate over `window` seconds."""
    first: dict[tuple[str, str], float] = {}
    for a in acked:
        if a.status in CREDITED:
            key = (a.partner, a.external_id)
            first[key] = min(first.get(key, a.at), a.at)
    if not first:
        return 0, 0.0, 0.0
    buckets = Counter(int(at // window) for at in first.values())
    return len(first), min(first.values()), max(buckets.values()) / window


def summarise(
    args: argparse.Namespace,
    stats: list[dict[str, str]],
    acked: list[Acked],
    load_seconds: float,
    checks: list[tuple[bool, str]],
) -> tuple[list[str], dict[str, Any]]:
    credited, _, peak = credited_rates(acked)
    acknowledged = len({(a.partner, a.external_id) for a in acked})
    rows = [r for r in stats if r["Name"] != "Aggregated"]
    total = next((r for r in stats if r["Name"] == "Aggregated"), None)
    requests = int(number(total["Request Count"])) if total else 0
    failures = int(number(total["Failure Count"])) if total else 0
    error_rate = failures / requests if requests else math.nan
    lines = [
        f"load: {args.shape} shape, {args.users} users at the peak, {load_seconds:.0f} s, "
        f"service workers {args.workers}, {os.cpu_count()} cores shared with PostgreSQL, Redis "
        f"and Locust ({platform.machine()}, Python {platform.python_version()})",
        f"credited events/s: {credited / load_seconds if load_seconds else 0:,.0f} on average "
        f"({credited:,} distinct events credited or capped), peak {peak:,.0f}/s over 10 s; "
        f"events acknowledged: {acknowledged:,}",
        f"requests: {requests:,}, failures: {failures:,}, error rate: {100 * error_rate:.2f}%",
        "",
        f"{'endpoint':<58} {'requests':>9} {'fail':>5} {'req/s':>7} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}",
    ]
    endpoints = []
    for r in sorted(rows, key=lambda r: (r["Name"], r["Type"])):
        name = f"{r['Type']} {r['Name']}"
        endpoint = {
            "name": name,
            "requests": int(number(r["Request Count"])),
            "failures": int(number(r["Failure Count"])),
            "rps": number(r["Requests/s"]),
            "p50": number(r["50%"]),
            "p95": number(r["95%"]),
            "p99": number(r["99%"]),
        }
        endpoints.append(endpoint)
        lines.append(
            f"{name[:58]:<58} {endpoint['requests']:>9,} {endpoint['failures']:>5,} "
            f"{endpoint['rps']:>7.1f} {endpoint['p50']:>7.0f} {endpoint['p95']:>7.0f} "
            f"{endpoint['p99']:>7.0f}"
        )
    lines.append("")
    lines.append(
        f"targets (PRODUCT.md, 2-core box): batched crediting >= {TARGET_BATCHED:,.0f} "
        f"credited events/s; single events >= {TARGET_SINGLE:,.0f}/s with p99 <= "
        f"{TARGET_SINGLE_P99_MS:.0f} ms at 800/s; app reads p99 <= {TARGET_APP_P99_MS:.0f} ms "
        "at 1,000/s. This mixed run offers far less than those rates: read it as latency "
        "under a realistic mix, the benchmarks (benchmarks/) as capacity."
    )
    lines.append("checks:")
    lines += [f"  {text}" for _, text in checks]
    passed = all(ok for ok, _ in checks) and requests > 0 and failures == 0
    lines.append(f"result: {'PASS' if passed else 'FAIL'}")
    data = {
        "passed": passed,
        "checks_passed": all(ok for ok, _ in checks),
        "requests": requests,
        "failures": failures,
        "error_rate": error_rate,
        "credited_events": credited,
        "credited_per_second": credited / load_seconds if load_seconds else 0.0,
        "peak_credited_per_second": peak,
        "acknowledged_events": acknowledged,
        "load_seconds": load_seconds,
        "endpoints": endpoints,
        "checks": [{"ok": ok, "text": text} for ok, text in checks],
    }
    return lines, data


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="service worker processes")
    parser.add_argument("--users", type=int, default=30, help="Locust users at the peak")
    parser.add_argument(
        "--duration", type=parse_duration, default=180.0, help="e.g. 180, 3m, 1m30s"
    )
    parser.add_argument("--shape", choices=("rush", "flat"), default="rush")
    parser.add_argument("--participants", type=int, default=20_000)
    parser.add_argument("--app-users", type=int, default=1_000)
    parser.add_argument("--merchants", type=int, default=5)
    parser.add_argument("--seed-trips", type=int, default=2, help="first credits per app user")
    parser.add_argument("--locust-processes", type=int, default=1)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or None)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or None)
    parser.add_argument("--redis-db", type=int, default=13)
    parser.add_argument("--pool", type=int, default=10, help="DB connections per worker")
    parser.add_argument("--results", type=Path, default=ROOT / "loadtests" / "results")
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".data" / "loadtest")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args(argv)

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = (args.results / stamp).resolve()
    out.mkdir(parents=True, exist_ok=True)
    latest = args.results / "latest"
    if latest.is_symlink() or not latest.exists():
        latest.unlink(missing_ok=True)
        latest.symlink_to(stamp)
    workdir = Path(tempfile.mkdtemp(prefix="carbon-points-loadtest-"))

    base = Settings(data_dir=args.data_dir)
    base = base.model_copy(update={"database_url": args.database_url, "redis_url": args.redis_url})
    servers = resolve_servers(base, database_name="postgres")
    log(
        f"servers: postgresql {servers.describe()['postgresql']}, "
        f"redis {servers.describe()['redis']}; results in {out}"
    )
    name = f"carbon_points_loadtest_{os.getpid()}"
    started = time.perf_counter()
    database_url = create_database(servers.database_url, name)
    secrets_env = new_secrets()
    state = State(
        run_id=f"lt{stamp.replace('-', '')}",
        database_url=database_url,
        base_url="",
        participants=args.participants,
        password=f"load test {uuid.uuid4().hex}",
        jwt_signing_key=secrets_env["CARBON_POINTS_JWT_SIGNING_KEY"],
        acked_dir=str(out / "acked"),
    )
    asyncio.run(populate(state, secrets_env, app_users=args.app_users, merchants=args.merchants))
    log(
        f"set-up: database {name}, {args.participants:,} participants with 3 linked identities, "
        f"{len(state.app_users):,} app users, {len(state.merchants)} merchants "
        f"({time.perf_counter() - started:.1f} s)"
    )
    env = {
        **os.environ,
        **secrets_env,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url_with_db(servers.redis_url, args.redis_db),
        "CARBON_POINTS_LOG_LEVEL": "WARNING",
        "CARBON_POINTS_DATA_DIR": str(workdir / "data"),
        "CARBON_POINTS_DB_POOL_SIZE": str(args.pool),
        "CARBON_POINTS_ENVIRONMENT": "development",
    }
    server = Server(env, args.workers, out / "server.log")
    checks: list[tuple[bool, str]] = []
    load_seconds = 0.0
    try:
        server.wait_ready()
        state.base_url = server.base_url
        seeded = seed_credits(state, args.seed_trips)
        log(f"service: {server.base_url}, {args.workers} workers; {seeded:,} seed trips credited")
        state_path = workdir / "state.json"
        state.save(state_path)
        locust_env = {
            **os.environ,
            "LOADTEST_STATE": str(state_path),
            "LOADTEST_USERS": str(args.users),
            "LOADTEST_DURATION": str(args.duration),
            "LOADTEST_SHAPE": args.shape,
        }
        command = [
            str(BIN / "locust"),
            "-f",
            str(ROOT / "loadtests" / "locustfile.py"),
            "--headless",
            "--host",
            server.base_url,
            "--csv",
            str(out / "locust"),
            "--html",
            str(out / "report.html"),
            "--only-summary",
            "--stop-timeout",
            "15",
            "--exit-code-on-error",
            "0",
            "--loglevel",
            "WARNING",
        ]
        if args.locust_processes > 1:
            command += ["--processes", str(args.locust_processes)]
        log(
            f"locust: {args.users} users at the peak, {args.shape} shape, {args.duration:.0f} s "
            f"(log: {out / 'locust.log'})"
        )
        load_started = time.perf_counter()
        with (out / "locust.log").open("wb") as locust_log:
            result = subprocess.run(
                command,
                env=locust_env,
                cwd=ROOT,
                stdout=locust_log,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=args.duration + 300,
            )
        load_seconds = min(time.perf_counter() - load_started, args.duration)
        if result.returncode != 0:
            checks.append((False, f"locust exited with {result.returncode}; see locust.log"))
    finally:
        server.stop()
    try:
        acked = read_acked(Path(state.acked_dir))
        ok, lines, _ = asyncio.run(exactly_once(state, acked))
        log("\n".join(lines[:2]))
        checks.append((ok, lines[2]))
        # Fresh statistics first: the tables grew from nothing during the run, and the verify
        # queries would otherwise be planned for empty tables.
        asyncio.run(analyze(state.database_url))
        log("ledger verify: running")
        checks.insert(0, ledger_verify(env))
        run_acked = [a for a in acked if a.external_id.split("-")[1] != "seed"]
        stats = read_stats(out / "locust")
        lines, data = summarise(args, stats, run_acked, load_seconds, checks)
        text = "\n".join(["", "summary", *lines])
        log(text)
        (out / "summary.txt").write_text(text + "\n")
        (out / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
        return 0 if data["passed"] else 1
    finally:
        if args.keep_database:
            log(f"kept database {name}: {database_url}")
        else:
            drop_database(servers.database_url, name)


if __name__ == "__main__":
    sys.exit(main())
