"""`carbon-points worker`: each job runs, a job another worker holds is skipped, and SIGTERM
stops the process cleanly."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from service.db import create_sessionmaker, try_advisory_lock
from service.ledger import service as ledger
from service.ledger.schemas import CreditRequest
from service.merchants.service import create_merchant
from service.worker import Job, run_worker

ROOT = Path(__file__).resolve().parents[2]
KEY = "test-partner-key-" + "k" * 32


async def _overdue_hold(engine: AsyncEngine) -> int:
    """A participant with points and a hold that timed out an hour ago; returns the hold id."""
    sessionmaker = create_sessionmaker(engine)
    participant = uuid.uuid4()
    past = datetime.now(UTC) - timedelta(hours=2)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO participants (id, kind, display_name, region)"
                " VALUES (:id, 'citizen', 'worker test', 'CN-JX')"
            ),
            {"id": participant},
        )
        await ledger.credit(
            session,
            [
                CreditRequest(
                    origin="worker-test",
                    key=f"c-{participant}",
                    participant_id=participant,
                    points=100,
                    grams=100,
                    expires_at=past + timedelta(days=365),
                    methodology_id="transit.metro",
                    methodology_version=1,
                )
            ],
            now=past,
        )
        merchant = await create_merchant(
            session, code=f"cafe-{uuid.uuid4().hex[:6]}", name="Worker cafe"
        )
        hold = await ledger.place_hold(
            session,
            origin=f"merchant:{merchant.id}",
            key=f"redemption:{uuid.uuid4()}",
            participant_id=participant,
            merchant_id=merchant.id,
            amount=40,
            now=past,
            hold_for=timedelta(hours=1),
        )
    return hold.hold_id


async def test_each_job_runs_once_and_a_held_job_is_skipped(
    test_settings: Settings, committed: AsyncEngine
) -> None:
    assert test_settings.database_url is not None
    hold_id = await _overdue_hold(committed)
    done = await run_worker(test_settings, test_settings.database_url, KEY, once=True)
    assert set(done) == {"webhooks", "holds", "pending", "lots"}
    assert done["holds"] == 1  # the overdue hold, voided as expired
    async with committed.connect() as connection:
        outcome = await connection.scalar(
            text("SELECT outcome FROM ledger_hold_resolutions WHERE hold_id = :h"), {"h": hold_id}
        )
    assert outcome == "expired"
    # Another worker running `holds` now: this one skips it rather than run it twice.
    job = Job("holds", 1.0, lambda: None)  # type: ignore[arg-type,return-value]
    async with try_advisory_lock(committed, job.lock_key) as got:
        assert got
        skipped = await run_worker(
            test_settings, test_settings.database_url, KEY, only=("holds",), once=True
        )
    assert skipped == {"holds": None}
    again = await run_worker(
        test_settings, test_settings.database_url, KEY, only=("holds",), once=True
    )
    assert again == {"holds": 0}  # nothing left, and the lock was released


def test_sigterm_stops_the_worker_cleanly(test_settings: Settings) -> None:
    assert test_settings.database_url is not None
    env = {
        **os.environ,
        "DATABASE_URL": test_settings.database_url,
        "REDIS_URL": test_settings.redis_url or "",
        "CARBON_POINTS_DATA_DIR": str(test_settings.data_dir),
        "CARBON_POINTS_ENVIRONMENT": "test",
        "CARBON_POINTS_WORKER_WEBHOOKS_SECONDS": "0.2",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None
    seen: list[bytes] = []
    try:
        # SIGTERM once it says it started (its handler is in place by then), however long a
        # loaded machine takes to import it; then a moment of running jobs.
        deadline = time.monotonic() + 60
        while not any(b"worker started" in line for line in seen):
            assert time.monotonic() < deadline, b"".join(seen).decode(errors="replace")
            ready, _, _ = select.select([process.stdout], [], [], 0.5)
            if ready:
                line = process.stdout.readline()
                assert line, "the worker exited on its own: " + b"".join(seen).decode()
                seen.append(line)
        time.sleep(1)
        assert process.poll() is None, "the worker exited on its own"
        os.killpg(process.pid, signal.SIGTERM)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = (b"".join(seen) + process.stdout.read()).decode(errors="replace")
    assert code == 0, output
    assert "worker started" in output and "worker stopping" in output, output
    assert "Traceback" not in output, output


def test_job_lock_keys_are_distinct_and_fit_a_bigint() -> None:
    names = ("webhooks", "holds", "pending", "lots")
    keys = [Job(n, 1.0, lambda: None).lock_key for n in names]  # type: ignore[arg-type,return-value]
    assert len(set(keys)) == len(names)
    assert all(0 < key < 2**63 for key in keys)
