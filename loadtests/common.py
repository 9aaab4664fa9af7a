"""What the set-up step, the Locust users and the post-run checks share.

The set-up step (``loadtests/seed.py``) writes a :class:`State` as JSON (mode 0600, outside the
repository: it holds the run's throw-away partner secrets and JWT key); the Locust processes
read it from ``$LOADTEST_STATE``. Every event a partner acknowledged is appended, one line per
acknowledgement, to ``<acked_dir>/<user kind>-<pid>.tsv``; the checks read them all back.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CREDITED = frozenset({"credited", "capped"})
ACKED_COLUMNS = ("external_id", "partner", "status", "points", "grams", "credit_id", "at")

TRANSIT = "loadtest-transit"
BIKESHARE = "loadtest-bikeshare"
UTILITY = "loadtest-utility"
PARTNERS = (TRANSIT, BIKESHARE, UTILITY)


def card_ref(partner: str, i: int) -> str:
    """The partner's own number for participant `i`: a transit card, a bike account, a meter."""
    if partner == TRANSIT:
        return f"6222{i:012d}"
    if partner == BIKESHARE:
        return f"bike-{i:09d}"
    return f"meter-{i:010d}"


def login_name(i: int) -> str:
    """A mainland mobile number for app user `i` (normalised to +86... by the service)."""
    return f"139{i:08d}"


@dataclass
class PartnerKey:
    code: str
    partner_id: str
    key_id: str
    secret: str


@dataclass
class AppUser:
    index: int
    user_id: str
    participant_id: str


@dataclass
class MerchantKey:
    code: str
    merchant_id: str
    token: str
    offer_id: str
    offer_price: int


@dataclass
class State:
    run_id: str
    database_url: str
    base_url: str
    participants: int
    password: str
    jwt_signing_key: str
    acked_dir: str
    partners: dict[str, PartnerKey] = field(default_factory=dict)
    app_users: list[AppUser] = field(default_factory=list)
    merchants: list[MerchantKey] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(self), out)

    @classmethod
    def load(cls, path: Path) -> State:
        raw = json.loads(path.read_text())
        raw["partners"] = {k: PartnerKey(**v) for k, v in raw["partners"].items()}
        raw["app_users"] = [AppUser(**u) for u in raw["app_users"]]
        raw["merchants"] = [MerchantKey(**m) for m in raw["merchants"]]
        return cls(**raw)


@dataclass
class Acked:
    external_id: str
    partner: str
    status: str
    points: int
    grams: int
    credit_id: str | None
    at: float


_FILES: dict[str, Any] = {}


def write_acked(
    directory: Path, name: str, rows: Iterable[tuple[str, str, str, int, int, str | None]]
) -> None:
    """Append acknowledgements (external id, partner, status, points, grams, credit id) to
    ``<directory>/<name>-<pid>.tsv`` in one write, so a line is never interleaved or cut."""
    key = f"{name}-{os.getpid()}"
    out = _FILES.get(key)
    if out is None:
        directory.mkdir(parents=True, exist_ok=True)
        out = _FILES[key] = (directory / f"{key}.tsv").open("a", encoding="utf-8")
    at = f"{time.time():.3f}"
    text = "".join(
        f"{x}\t{partner}\t{status}\t{points}\t{grams}\t{credit or ''}\t{at}\n"
        for x, partner, status, points, grams, credit in rows
    )
    if text:
        out.write(text)
        out.flush()


def read_acked(directory: Path) -> list[Acked]:
    """Every acknowledgement recorded by every Locust process (and the set-up step)."""
    found: list[Acked] = []
    for path in sorted(directory.glob("*.tsv")):
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) != len(ACKED_COLUMNS):
                continue  # a line cut short by a killed process: never acknowledged in full
            external_id, partner, status, points, grams, credit_id, at = parts
            found.append(
                Acked(
                    external_id,
                    partner,
                    status,
                    int(points),
                    int(grams),
                    credit_id or None,
                    float(at),
                )
            )
    return found
