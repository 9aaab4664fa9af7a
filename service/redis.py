"""The Redis client: created once at start-up, reached through `service.dependencies.RedisClient`.

Redis only ever speeds things up or coordinates (rate limits, replay caches,
leaderboards); PostgreSQL stays the source of truth.

One Redis or a Redis Cluster. `REDIS_URL=redis+cluster://host:port` (seed nodes, comma
separated: `redis+cluster://h1:6379,h2:6379`), or a `redis://` URL with
`CARBON_POINTS_REDIS_CLUSTER=true`, gives redis-py's asyncio `RedisCluster`, which finds
the other nodes and follows slot moves and failovers itself.

Every key is made by `key()`: `cp:{tag}:rest`, the `{tag}` being the Redis Cluster hash
tag, so all keys that one command, script or MULTI touches together hash to one slot. The
keys (tests/foundation/test_redis_cluster.py checks them on a real cluster):

| key | tag | used by |
| --- | --- | --- |
| `cp:{partner:<id>}:replay:<key id>:<webhook id>` | the partner | replay cache (partners.auth) |
| `cp:{partner:<id>}:rate:<second>` | the partner | partner rate limit (partners.auth) |
| `cp:{login-account:<hash>}` | the account | login throttle (accounts.throttle) |
| `cp:{login-address:<address>}` | the address | login throttle (accounts.throttle) |
| `cp:{leaderboard:<scope>:<key>:<period>}`, `...:names` | the board | leaderboards |

A partner's replay and rate keys share a slot (one pipeline, one node); a board and its
names share one (one MULTI). The two login keys are counted by separate one-key commands
(a non-transactional pipeline, which the cluster client splits by node), so they need not.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

CLUSTER_SCHEME = "redis+cluster"

RedisClient = Redis | RedisCluster
"""What the service holds: one Redis or a cluster (the same commands on both)."""

_OPTIONS: dict[str, Any] = {
    "socket_timeout": 2.0,
    "socket_connect_timeout": 2.0,
    "health_check_interval": 30,
}


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() == CLUSTER_SCHEME


def create_redis(url: str, *, cluster: bool = False) -> RedisClient:
    """A client for `url`: a `RedisCluster` when `cluster` or the URL says so."""
    if not (cluster or is_cluster_url(url)):
        client: Redis = Redis.from_url(url, **_OPTIONS)
        return client
    parts = urlsplit(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    seeds = hosts.split(",")
    # The first seed through from_url (credentials, options in the query; a cluster has
    # only database 0, so a path is dropped); the others as further startup nodes, so a
    # seed that is down at start-up is not fatal.
    first = urlunsplit(("redis", (auth + "@" if auth else "") + seeds[0], "", parts.query, ""))
    others = [ClusterNode(*_host_port(seed)) for seed in seeds[1:]]
    return RedisCluster.from_url(first, startup_nodes=others or None, **_OPTIONS)


def _host_port(seed: str) -> tuple[str, int]:
    host, _, port = seed.rpartition(":")
    if not host:
        return seed, 6379
    return host.strip("[]"), int(port)


def key(tag: str, *parts: object) -> str:
    """`cp:{tag}:part:...`: a key in the hash slot of `tag` (keys with one tag, one slot)."""
    return ":".join([f"cp:{{{tag}}}", *(str(part) for part in parts)])
