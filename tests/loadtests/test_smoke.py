"""The load test, short: `make loadtest` end to end for a few seconds, so it cannot rot.

It runs `python -m loadtests.run` as `make loadtest` does (a fresh database on the test
suite's PostgreSQL server, the service with two workers, Locust headless with every user
class, the checks) and asserts what must hold at any speed: every request succeeded, every
user class was served, `ledger verify` passed and every acknowledged event was credited
exactly once. No timing is asserted: speed is what `make loadtest` and `benchmarks/` report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
LOCUST = Path(sys.executable).parent / "locust"

EVERY_USER_CLASS = (
    "POST /v1/partner/event-batches (transit)",
    "POST /v1/partner/events (bike-share)",
    "POST /v1/partner/event-batches (utility)",
    "POST /v1/app/login",
    "POST /v1/app/redemption-tokens",
    "POST /v1/merchant/redemptions",
    "POST /v1/merchant/redemptions/{id}/capture",
)


def _locust_starts() -> str | None:
    """Why Locust cannot start here, or None."""
    if not LOCUST.exists():
        return f"no locust executable at {LOCUST} (install the dev extra)"
    probe = subprocess.run(
        [str(LOCUST), "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    if probe.returncode != 0:
        return f"locust --version failed: {(probe.stdout + probe.stderr).strip()[-300:]}"
    return None


def test_load_test_smoke(server_url: str, test_settings: Settings, tmp_path: Path) -> None:
    reason = _locust_starts()
    if reason is not None:
        pytest.skip(reason)
    assert test_settings.redis_url is not None
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    command = [
        sys.executable,
        "-m",
        "loadtests.run",
        "--database-url",
        server_url,
        "--redis-url",
        test_settings.redis_url,
        "--redis-db",
        "12",
        "--workers",
        "2",
        "--users",
        "10",
        "--duration",
        "8",
        "--shape",
        "flat",
        "--participants",
        "300",
        "--app-users",
        "20",
        "--merchants",
        "2",
        "--results",
        str(tmp_path),
    ]
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=240
    )
    output = result.stdout + result.stderr
    summary_path = tmp_path / "latest" / "summary.json"
    assert summary_path.exists(), output[-4000:]
    summary = json.loads(summary_path.read_text())
    served = {e["name"]: e["requests"] for e in summary["endpoints"]}
    failures = {e["name"]: e["failures"] for e in summary["endpoints"] if e["failures"]}

    assert summary["checks_passed"], output[-4000:]
    assert "ledger verify: PASS" in output, output[-4000:]
    assert "exactly once: PASS" in output, output[-4000:]
    assert summary["failures"] == 0, failures
    assert summary["requests"] > 0
    assert summary["credited_events"] > 0
    for name in EVERY_USER_CLASS:
        assert served.get(name, 0) > 0, (name, served)
    assert served.get("GET /v1/app/balance", 0) + served.get("GET /v1/app/history", 0) > 0
    assert result.returncode == 0, output[-4000:]
    assert summary["passed"]
