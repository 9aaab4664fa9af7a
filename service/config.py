"""Settings, read once from the environment (pydantic-settings).

`DATABASE_URL` and `REDIS_URL` keep their conventional names; everything else is
prefixed `CARBON_POINTS_`. With the URLs unset, the embedded servers are used
(see `service.embedded`). Secrets come from the environment; in development they
are generated once and kept in the data directory (`service.dev_secrets`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARBON_POINTS_", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "CARBON_POINTS_DATABASE_URL")
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "CARBON_POINTS_REDIS_URL")
    )
    data_dir: Path = Path(".data")
    # DATABASE_URL is a PgBouncer in transaction pooling mode: no prepared statement or
    # session state outlives a transaction (service.db.pgbouncer_connect_args).
    db_pgbouncer: bool = False
    # REDIS_URL is a Redis Cluster node (also implied by a `redis+cluster://` URL): the
    # service uses redis-py's cluster client (service.redis).
    redis_cluster: bool = False

    # Secrets. Unset in development: generated once under data_dir.
    jwt_signing_key: SecretStr | None = None
    partner_secret_key: SecretStr | None = None
    identifier_pepper: SecretStr | None = None
    # JWT signing keys retired from jwt_signing_key, comma-separated: tokens they signed
    # stay valid until they expire (ten minutes), so a rotation logs nobody out.
    jwt_previous_signing_keys: SecretStr | None = None

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    # The app's hot reads (balance, history) go through their own small asyncpg pool.
    db_read_pool_size: int = Field(default=5, ge=1, le=200)
    # Event batches in flight per process: the rest queue for a slot, so that batches never
    # take every database connection from single events, app reads and tills.
    batch_concurrency: int = Field(default=2, ge=1, le=64)
    # Single events: groups committed at once per process (see service/crediting/group_commit.py).
    single_event_groups: int = Field(default=2, ge=1, le=64)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    # The programme's time zone (an IANA name): where people read times (the app's history
    # and explanations, reports, the settlement CSV) and where days, weeks and months of caps,
    # leaderboards and reports begin.
    program_timezone: str = "Asia/Shanghai"
    # Shenzhen's 2022 rules allow points to live at most 10 years; two is the default.
    points_validity_days: int = Field(default=730, ge=1, le=3653)
    hold_timeout_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    # The program's rate for settling with merchants: a program choice (1 point = 1 fen).
    fen_per_point: int = Field(default=1, ge=0, le=100_000)
    # `carbon-points worker`: how often each periodic job runs, in seconds.
    worker_webhooks_seconds: float = Field(default=5.0, ge=0.1, le=86_400)
    worker_holds_seconds: float = Field(default=30.0, ge=0.1, le=86_400)
    worker_pending_seconds: float = Field(default=600.0, ge=0.1, le=86_400)
    worker_lots_seconds: float = Field(default=3600.0, ge=0.1, le=86_400)
    # A methodology activation or retirement must be at least this far in the future, so
    # every process's registry cache (refreshed every 5 s) knows it before it happens.
    methodology_min_lead_seconds: int = Field(default=60, ge=10, le=30 * 24 * 3600)

    @field_validator("database_url", "redis_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("program_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r}: use an IANA name such as Asia/Shanghai"
            ) from None
        return value

    @property
    def uses_embedded_servers(self) -> bool:
        return self.database_url is None or self.redis_url is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
