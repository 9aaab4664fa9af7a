"""Group commit for single events: many small requests, one transaction, one fsync.

A partner's single-event request costs almost nothing to decide and a whole commit to make
durable. So the requests in flight in one process are coalesced: each request prepares its
event (validation, hashing, evaluation: CPU it would spend anyway) and hands it to the
committer, which gathers what arrived and credits it all in one database transaction with
the set-based shell (`ingest_prepared`), whose number of statements does not grow with the
group. Every request waits for that commit before it answers, so a 2xx still means
committed.

How a group forms: while fewer than `concurrency` groups are in flight, a new one starts at
once, so an idle service adds no latency. Under load the requests that arrive while groups
are in flight form the next group, up to `max_items`, after at most `window` seconds more.
The size adapts to the load without a timer on the quiet path.

A bad event is an outcome, not an error, so it never fails its neighbours. If the group's
transaction fails as a whole (a deadlock, a lost connection), each of its events is retried
alone, so one request's trouble is never another's. A group waits at most 50 ms for a lock
(`lock_timeout`): a batch in flight holds its participants' accounts until it commits, and
one ride of the same participant would otherwise hold up every ride of its group; past that,
the group's events are retried one by one, and only the colliding one waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.crediting import repository
from service.crediting.schemas import OutcomeOut
from service.crediting.service import CreditingSettings, Prepared, ingest_prepared
from service.observability import get_logger

_log = get_logger("carbon_points.crediting.group_commit")
# Deadlock detected, serialization failure: the transaction did nothing; try again.
_RETRYABLE = frozenset({"40P01", "40001"})


@dataclass(slots=True)
class _Waiting:
    item: Prepared
    future: asyncio.Future[OutcomeOut]


class GroupCommitter:
    """Coalesces one process's concurrent single events into shared transactions."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Callable[[], CreditingSettings],
        *,
        window: float = 0.002,
        max_items: int = 256,
        concurrency: int = 2,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._window = window
        self._max_items = max_items
        self._concurrency = concurrency
        self._waiting: list[_Waiting] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._alone: set[asyncio.Task[None]] = set()
        self._scheduled = False
        self.groups = 0
        self.events = 0

    async def submit(self, item: Prepared) -> OutcomeOut:
        """Credit one prepared event; returns its outcome once it is committed."""
        future: asyncio.Future[OutcomeOut] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(item, future))
        self._maybe_start()
        return await future

    def _maybe_start(self) -> None:
        if not self._waiting or self._in_flight >= self._concurrency or self._scheduled:
            return
        if self._in_flight == 0 or len(self._waiting) >= self._max_items:
            self._start()
            return
        # Busy: let the group fill for a moment rather than commit a handful.
        self._scheduled = True
        asyncio.get_running_loop().call_later(self._window, self._start_scheduled)

    def _start_scheduled(self) -> None:
        self._scheduled = False
        if self._waiting and self._in_flight < self._concurrency:
            self._start()

    def _start(self) -> None:
        group = self._waiting[: self._max_items]
        del self._waiting[: self._max_items]
        self._in_flight += 1
        task = asyncio.create_task(self._run(group))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._in_flight -= 1
        self._maybe_start()

    async def _run(self, group: list[_Waiting]) -> None:
        self.groups += 1
        self.events += len(group)
        try:
            outcomes = await self._credit([w.item for w in group], patient=False)
        except Exception as exc:
            _log.info(
                "group commit failed; retrying its events one by one",
                events=len(group),
                error=type(exc).__name__,
            )
            # Outside the group slots: an event that waits for a lock holds up no other.
            for waiting in group:
                task = asyncio.create_task(self._run_alone(waiting))
                self._alone.add(task)
                task.add_done_callback(self._alone.discard)
            return
        for waiting, outcome in zip(group, outcomes, strict=True):
            if not waiting.future.done():
                waiting.future.set_result(outcome)

    async def _run_alone(self, waiting: _Waiting) -> None:
        try:
            (outcome,) = await self._credit([waiting.item], patient=True)
        except Exception as exc:
            _settle_error(waiting, exc)
        else:
            if not waiting.future.done():
                waiting.future.set_result(outcome)

    async def _credit(self, items: list[Prepared], *, patient: bool) -> list[OutcomeOut]:
        for attempt in range(3):
            try:
                async with self._sessionmaker() as session, session.begin():
                    if not patient:
                        # A group must not queue behind a batch that holds one of its
                        # participants: it gives up quickly and its events go one by one,
                        # so only the event that collides waits (see the module docstring).
                        await repository.give_up_lock_waits_quickly(session)
                    return await ingest_prepared(session, self._settings(), items)
            except DBAPIError as exc:
                code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
                if code not in _RETRYABLE or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def drain(self) -> None:
        """Wait for every group in flight (at shutdown)."""
        while self._tasks or self._waiting or self._alone:
            if self._tasks or self._alone:
                await asyncio.gather(*self._tasks, *self._alone, return_exceptions=True)
            else:
                self._maybe_start()
                await asyncio.sleep(self._window)


def _settle_error(waiting: _Waiting, exc: Exception) -> None:
    if not waiting.future.done():
        waiting.future.set_exception(exc)
