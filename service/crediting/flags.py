"""The flag rules as the crediting path reads them: a per-process snapshot.

`FlagRulesCache.current` is what `CreditingSettings.flags` carries (no I/O on the hot path).
`refresh` reads the rules (`service.review.service.rules_in_force`) and, when the partner
volume rule is on, each partner's last hour against its usual level (one statement over
`partner_events`, this domain's table); the app's lifespan runs it every `interval` seconds in
the background, and the admin API refreshes its own process's snapshot at once after a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.crediting import repository as repo
from service.review import service as review
from service.review.rules import OFF, FlagRules, PartnerSurge, flag_rules

log = structlog.get_logger("carbon_points.flags")


class FlagRulesCache:
    def __init__(self, interval: float = 5.0, volume_interval: float = 60.0) -> None:
        self.interval = interval
        self.volume_interval = volume_interval
        self.current: FlagRules = OFF
        self._surges: dict[uuid.UUID, PartnerSurge] = {}
        self._volumes_at: float | None = None

    async def refresh(self, session: AsyncSession, *, now: datetime | None = None) -> FlagRules:
        """Read the rules (and, when due, the partners' volumes); returns the new snapshot."""
        rows = await review.rules_in_force(session)
        rules = flag_rules(rows, {})
        loop_now = asyncio.get_running_loop().time()
        if rules.partner_volume is not None:
            due = self._volumes_at is None or loop_now - self._volumes_at >= self.volume_interval
            if due or now is not None:
                self._surges = await surges(session, rules, now or datetime.now(UTC))
                self._volumes_at = loop_now
        else:
            self._surges = {}
            self._volumes_at = None
        self.current = flag_rules(rows, self._surges)
        return self.current

    async def run(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        """Refresh forever (the lifespan's background task); a failure is logged and retried."""
        while True:
            try:
                async with sessionmaker() as session:
                    await self.refresh(session)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("flag rules refresh failed", exc_info=True)
            await asyncio.sleep(self.interval)


async def surges(
    session: AsyncSession, rules: FlagRules, now: datetime
) -> dict[uuid.UUID, PartnerSurge]:
    """Partners whose last hour is above `multiplier_percent` % of their usual hourly volume
    (the mean of the baseline hours) and above `min_events_per_hour`."""
    params = rules.partner_volume
    if params is None:
        return {}
    found: dict[uuid.UUID, PartnerSurge] = {}
    for partner, (last_hour, before) in (
        await repo.partner_volumes(session, now, params.baseline_hours)
    ).items():
        usual = before // params.baseline_hours
        if (
            last_hour >= params.min_events_per_hour
            and last_hour * 100 > usual * params.multiplier_percent
        ):
            found[partner] = PartnerSurge(last_hour, usual)
    return found


def start(
    cache: FlagRulesCache, sessionmaker: async_sessionmaker[AsyncSession]
) -> asyncio.Task[None]:
    return asyncio.create_task(cache.run(sessionmaker), name="flag-rules-refresh")


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
