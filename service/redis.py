"""The Redis client: created once at start-up, reached through `service.dependencies.RedisClient`.

Redis only ever speeds things up or coordinates (rate limits, replay caches,
leaderboards); PostgreSQL stays the source of truth.
"""

from __future__ import annotations

from redis.asyncio import Redis


def create_redis(url: str) -> Redis:
    client: Redis = Redis.from_url(
        url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=30
    )
    return client
