"""When to try a failed webhook again: exponential backoff with full jitter, then give up."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempt n (1-based) that fails waits a uniformly random time in
    [0, min(cap, base * 2 ** (n - 1))] before attempt n + 1; after `max_attempts` the message is
    dead. Full jitter spreads the retries of a receiver's whole backlog instead of hammering it
    in waves when it comes back.

    Defaults: 5 s doubling to a 1 h cap, 30 attempts. The ceilings add up to about 20.4 h
    (5 s + 10 s + ... + 2560 s, then 19 × 1 h), so a message is retried for about 10 h on
    average and at most about 20 h; once capped, a recovered receiver gets it within the hour.
    """

    base: timedelta = timedelta(seconds=5)
    cap: timedelta = timedelta(hours=1)
    max_attempts: int = 30

    def __post_init__(self) -> None:
        if self.base <= timedelta(0) or self.cap < self.base or self.max_attempts < 1:
            raise ValueError("need 0 < base <= cap and max_attempts >= 1")

    def ceiling(self, attempt: int) -> timedelta:
        """The longest wait after failed attempt `attempt` (1-based)."""
        if attempt < 1:
            raise ValueError("attempts are numbered from 1")
        # Past ~40 doublings any base exceeds any sane cap; stop before the float overflows.
        factor = 1 << min(attempt - 1, 40)
        return min(self.cap, self.base * factor)

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """A full-jitter wait after failed attempt `attempt`: uniform in [0, ceiling]."""
        ceiling = self.ceiling(attempt).total_seconds()
        return timedelta(seconds=(rng or _RANDOM).uniform(0, ceiling))

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


# Jitter is not a secret; an unseeded PRNG is the right tool (and `S311` agrees when told so).
_RANDOM = random.Random()  # noqa: S311


DEFAULT_RETRY = RetryPolicy()
