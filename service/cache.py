"""A small in-process cache whose entries live a few seconds: for rows every request of a
kind reads (a partner's signing key, a merchant's API key) and that may be a few seconds
stale (a revocation then takes effect within `ttl`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Key -> value (None included: "no such key" is cached too) for `ttl` seconds, at most
    `size` entries (then it starts afresh: a bound, not an eviction policy)."""

    def __init__(self, ttl: float, size: int = 10_000) -> None:
        self.ttl = ttl
        self._size = size
        self._entries: dict[K, tuple[float, V | None]] = {}

    def clear(self) -> None:
        self._entries.clear()

    async def get_or_load(self, key: K, load: Callable[[K], Awaitable[V | None]]) -> V | None:
        """The cached value of `key`, or `load(key)`'s, cached from now."""
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        value = await load(key)
        if len(self._entries) >= self._size:
            self._entries.clear()
        self._entries[key] = (now, value)
        return value
