"""Development secrets: generated once, kept in the data directory, never in code.

In production every secret must come from the environment; starting without one
is an error rather than a silently generated key that would change on restart.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from service.config import Settings

_SECRET_NAMES = ("jwt_signing_key", "partner_secret_key", "identifier_pepper")


@dataclass(frozen=True, slots=True)
class Secrets:
    jwt_signing_key: str
    partner_secret_key: str
    identifier_pepper: str


class MissingSecretError(RuntimeError):
    pass


def load_secrets(settings: Settings) -> Secrets:
    """Secrets from the environment, falling back (outside production) to the data dir."""
    from_env = {
        name: value.get_secret_value()
        for name in _SECRET_NAMES
        if (value := getattr(settings, name)) is not None
    }
    missing = [name for name in _SECRET_NAMES if name not in from_env]
    if not missing:
        return Secrets(**from_env)
    if settings.environment == "production":
        names = ", ".join(f"CARBON_POINTS_{name.upper()}" for name in missing)
        raise MissingSecretError(f"set {names} in the environment")
    stored = _load_or_create(settings.data_dir / "dev-secrets.json")
    return Secrets(**{name: from_env.get(name, stored[name]) for name in _SECRET_NAMES})


def _load_or_create(path: Path) -> dict[str, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        if all(name in stored for name in _SECRET_NAMES):
            return stored
    else:
        stored = {}
    for name in _SECRET_NAMES:
        stored.setdefault(name, secrets.token_urlsafe(48))
    # Written with 0600 from the start, never world-readable even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(stored, handle)
    return stored
