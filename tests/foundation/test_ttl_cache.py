"""The few-seconds cache in front of partner and merchant keys."""

from __future__ import annotations

from service.cache import TtlCache


async def test_a_value_is_loaded_once_within_its_ttl_and_again_after() -> None:
    loads: list[str] = []

    async def load(key: str) -> int | None:
        loads.append(key)
        return None if key == "missing" else len(loads)

    cache: TtlCache[str, int] = TtlCache(ttl=60.0)
    assert await cache.get_or_load("a", load) == 1
    assert await cache.get_or_load("a", load) == 1
    assert await cache.get_or_load("missing", load) is None
    assert await cache.get_or_load("missing", load) is None  # "no such key" is cached too
    assert loads == ["a", "missing"]

    cache.ttl = 0.0  # every entry is now stale
    assert await cache.get_or_load("a", load) == 3
    cache.ttl = 60.0
    cache.clear()
    assert await cache.get_or_load("a", load) == 4


async def test_the_cache_is_bounded() -> None:
    async def load(key: int) -> int | None:
        return key

    cache: TtlCache[int, int] = TtlCache(ttl=60.0, size=3)
    for key in range(10):
        assert await cache.get_or_load(key, load) == key
    assert len(cache._entries) <= 3
