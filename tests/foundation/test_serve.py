"""`carbon-points serve` really serves: the path `make run` takes, in a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from service.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve_until_ready(env: dict[str, str], port: int) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    status = 0
    while time.monotonic() < deadline and process.poll() is None:
        try:
            status = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code
            if status == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return process, status


def _stop(process: subprocess.Popen[bytes], how: signal.Signals = signal.SIGINT) -> str:
    if process.poll() is None:
        os.killpg(process.pid, how)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.stdout is not None
    return process.stdout.read().decode(errors="replace")


@pytest.mark.slow
def test_serve_with_given_urls_answers_readyz(test_settings: Settings) -> None:
    assert test_settings.database_url and test_settings.redis_url
    env = {
        **os.environ,
        "DATABASE_URL": test_settings.database_url,
        "REDIS_URL": test_settings.redis_url,
        "CARBON_POINTS_DATA_DIR": str(ROOT / ".data" / "test"),
    }
    process, status = _serve_until_ready(env, _free_port())
    output = _stop(process)
    assert status == 200, output[-3000:]


@pytest.mark.slow
def test_serve_with_urls_unset_starts_embedded_servers(tmp_path: Path) -> None:
    """The newcomer's path: no URLs, embedded PostgreSQL and Redis, migrations, then serve."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["CARBON_POINTS_DATA_DIR"] = str(tmp_path / "data")
    upgrade = subprocess.run(
        [sys.executable, "-m", "service.cli", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stdout[-3000:] + upgrade.stderr[-3000:]
    process, status = _serve_until_ready(env, _free_port())
    output = _stop(process, signal.SIGTERM)  # what a process manager sends
    assert status == 200, output[-3000:]
    assert '"postgresql": "embedded"' in output or "'postgresql': 'embedded'" in output
    # Stopping the service stops the embedded servers it started.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _running(str(tmp_path)):
        time.sleep(0.3)
    assert not _running(str(tmp_path)), "embedded servers outlived the service"


def _running(marker: str) -> bool:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, check=False)
    return bool(found.stdout.strip())
