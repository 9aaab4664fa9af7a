"""`carbon-points worker`: the periodic jobs in one supervised process.

- `webhooks` (every 5 s): outbox messages due (`service.webhooks.delivery.deliver_due`);
- `holds` (30 s): holds past their timeout voided, `redemption.expired` announced
  (`service.redemption.jobs.expire_overdue_holds`);
- `pending` (10 min): pending events whose claim window passed unlinked
  (`service.crediting.commands.expire_all_pending`);
- `lots` (1 h): lots past expiry (`service.ledger.jobs.run_expiry`).

The intervals are settings (`CARBON_POINTS_WORKER_WEBHOOKS_SECONDS`, `..._HOLDS_...`,
`..._PENDING_...`, `..._LOTS_...`).

Each job runs on its own schedule, a run at a time. Several workers may run at once (one per
host, or a spare): a run first takes the job's PostgreSQL advisory lock
(`pg_try_advisory_xact_lock` in a transaction of its own, held open for the run:
`service.db.try_advisory_lock`, which works behind PgBouncer's transaction pooling too) and
a worker that does not get it skips that tick, so no job ever runs twice at once. The jobs
are safe to interrupt anyway: each commits batch by batch and picks up where the last
commit ended.

SIGTERM or SIGINT stops the schedule: a run in progress finishes its current batch loop (up to
`--grace` seconds), then the process exits 0. A run that fails is logged (to stderr) and
retried at its next tick; the worker itself keeps going.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.config import Settings
from service.db import create_engine, create_sessionmaker, try_advisory_lock
from service.observability import get_logger

_log = get_logger("carbon_points.worker")

JobRun = Callable[[], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    interval: float
    run: JobRun

    @property
    def lock_key(self) -> int:
        """A stable advisory-lock key per job name (63-bit, positive)."""
        return 0x63_70_00_00_0000_0000 | zlib.crc32(f"carbon-points.worker.{self.name}".encode())


def jobs(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    partner_key: str,
) -> list[Job]:
    """The periodic jobs with their configured intervals."""
    from service.crediting.commands import expire_all_pending
    from service.ledger.jobs import run_expiry
    from service.redemption.jobs import expire_overdue_holds
    from service.webhooks.delivery import deliver_due

    async def webhooks() -> int:
        return await deliver_due(sessionmaker, http, now=datetime.now(UTC), partner_key=partner_key)

    async def holds() -> int:
        return await expire_overdue_holds(sessionmaker)

    async def pending() -> int:
        return await expire_all_pending(sessionmaker, now=datetime.now(UTC))

    async def lots() -> int:
        return await run_expiry(sessionmaker)

    return [
        Job("webhooks", settings.worker_webhooks_seconds, webhooks),
        Job("holds", settings.worker_holds_seconds, holds),
        Job("pending", settings.worker_pending_seconds, pending),
        Job("lots", settings.worker_lots_seconds, lots),
    ]


async def run_once(engine: AsyncEngine, job: Job) -> int | None:
    """One run of `job` if no other worker is running it; None when skipped."""
    async with try_advisory_lock(engine, job.lock_key) as got:
        if not got:
            return None
        started = time.perf_counter()
        done = await job.run()
        # A run that found nothing to do is the common case: logged at debug, not every tick.
        (_log.info if done else _log.debug)(
            "job run",
            job=job.name,
            items=done,
            duration_ms=round(1000 * (time.perf_counter() - started), 1),
        )
        return done


async def _schedule(engine: AsyncEngine, job: Job, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await run_once(engine, job)
        except Exception as exc:  # a failed run is retried at the next tick
            _log.error("job failed", job=job.name, error=type(exc).__name__, detail=str(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=job.interval)


async def run_worker(
    settings: Settings,
    database_url: str,
    partner_key: str,
    *,
    only: Sequence[str] = (),
    once: bool = False,
    grace: float = 30.0,
    stop: asyncio.Event | None = None,
) -> dict[str, int | None]:
    """Run the jobs (`only` some of them) until `stop` is set, SIGTERM or SIGINT; with
    `once`, run each once and return what each did (None: another worker held it)."""
    # A connection per job for its advisory lock, and one per job for its work.
    engine = create_engine(database_url, pool_size=8, pgbouncer=settings.db_pgbouncer)
    sessionmaker = create_sessionmaker(engine)
    stop = stop or asyncio.Event()
    try:
        async with httpx.AsyncClient() as http:
            selected = [
                job
                for job in jobs(settings, sessionmaker, http, partner_key)
                if not only or job.name in only
            ]
            if once:
                return {job.name: await run_once(engine, job) for job in selected}
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            _log.info("worker started", jobs=[f"{j.name}/{j.interval:g}s" for j in selected])
            tasks = [asyncio.create_task(_schedule(engine, job, stop)) for job in selected]
            await stop.wait()
            _log.info("worker stopping", grace_seconds=grace)
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            return {}
    finally:
        await engine.dispose()
