"""The service's own metrics, beside the HTTP ones in `service.observability`.

Counted where they happen (each process; Prometheus' multiprocess mode adds the uvicorn
workers up): the outcomes answered to partners, the crediting batches' sizes and times, the
rate limit's refusals, and the database connections in use. The ledger's points flows
(issued, redeemed, refunded, expired, reversed) and hold resolutions are recorded in the
transaction that moves them (`count_points`, `count_hold`) and counted only when that
transaction commits: work rolled back, whole or to a savepoint, is never counted.

Read from the database when Prometheus scrapes (`refresh_from_database`, at most every
`STATE_SECONDS`): the points liability (the ledger's materialised balances) and the webhook
outbox (pending, the oldest due message's lag, dead letters), so that they are right
whichever process serves the scrape and whatever the worker did.

`docs/grafana/carbon-points.json` charts them; a test checks that its queries name these.
"""

from __future__ import annotations

import time
from collections import Counter as Counter_
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction

EVENT_OUTCOMES = Counter(
    "carbon_points_event_outcomes_total",
    "Outcomes answered to partners, by partner and status (a re-sent event's answer counts"
    " again: it is the same outcome, answered twice)",
    ["partner", "outcome"],
)
CREDITED_GRAMS = Counter(
    "carbon_points_credited_grams_total",
    "Grams of CO2e in the outcomes answered credited or capped, by partner",
    ["partner"],
)
CREDITED_POINTS = Counter(
    "carbon_points_credited_points_total",
    "Points in the outcomes answered credited or capped, by partner",
    ["partner"],
)
RATE_LIMITED = Counter(
    "carbon_points_rate_limited_total",
    "Partner requests refused by the per-second rate limit (429)",
    ["partner"],
)
BATCH_EVENTS = Histogram(
    "carbon_points_crediting_batch_events",
    "Events per partner batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000),
)
BATCH_SECONDS = Histogram(
    "carbon_points_crediting_batch_seconds",
    "Time to credit and commit one partner batch (waiting for a slot included)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
POINTS_FLOWS = Counter(
    "carbon_points_points_total",
    "Points moved by committed ledger transactions, by flow: issued (credits), redeemed"
    " (captures), refunded, expired (lots past their expiry) and reversed (taken back from"
    " balances by reversals; what was already spent becomes debt, not counted here)",
    ["flow"],
)
POINT_FLOWS = ("issued", "redeemed", "refunded", "expired", "reversed")
HOLDS_RESOLVED = Counter(
    "carbon_points_holds_resolved_total",
    "Ledger holds resolved by committed transactions: posted (captured), voided, expired"
    " (timed out)",
    ["outcome"],
)
HOLD_OUTCOMES = ("posted", "voided", "expired")
# Every child made once (a dict lookup per count, and each shows at 0 before its first count).
_FLOW_CHILDREN = {flow: POINTS_FLOWS.labels(flow) for flow in POINT_FLOWS}
_HOLD_CHILDREN = {outcome: HOLDS_RESOLVED.labels(outcome) for outcome in HOLD_OUTCOMES}
DB_CONNECTIONS_IN_USE = Gauge(
    "carbon_points_db_connections_in_use",
    "Database connections checked out of the pools",
    multiprocess_mode="livesum",
)
POINTS_LIABILITY = Gauge(
    "carbon_points_points_liability",
    "Participants' points now, from the ledger: posted (the liability), held, owed (debt)",
    ["part"],
    multiprocess_mode="mostrecent",
)
POINTS_HOLDERS = Gauge(
    "carbon_points_points_holders",
    "Participants with a positive balance",
    multiprocess_mode="mostrecent",
)
OUTBOX_PENDING = Gauge(
    "carbon_points_webhook_outbox_pending",
    "Webhook messages waiting to be delivered",
    multiprocess_mode="mostrecent",
)
OUTBOX_LAG = Gauge(
    "carbon_points_webhook_outbox_lag_seconds",
    "How long the oldest due webhook message has been due (0: none due)",
    multiprocess_mode="mostrecent",
)
OUTBOX_DEAD = Gauge(
    "carbon_points_webhook_dead_letters",
    "Webhook messages given up on (dead letters)",
    multiprocess_mode="mostrecent",
)

STATE_SECONDS = 15.0
_refreshed_at = 0.0


def count_outcomes(partner: str, outcomes: Any) -> None:
    """Count the outcomes a partner was answered (after their transaction committed): one
    increment per status and sum, not per event (a batch is up to 1,000)."""
    statuses: Counter_[str] = Counter_()
    grams = points = 0
    for outcome in outcomes:
        statuses[outcome.status] += 1
        if outcome.status in ("credited", "capped"):
            grams += outcome.grams
            points += outcome.points
    for status, n in statuses.items():
        EVENT_OUTCOMES.labels(partner, status).inc(n)
    if grams or points:
        CREDITED_GRAMS.labels(partner).inc(grams)
        CREDITED_POINTS.labels(partner).inc(points)


_PENDING = "carbon_points.metrics.pending"
"""`Session.info` key: the increments recorded in a transaction not yet committed."""


def count_points(session: AsyncSession | Session, flow: str, points: int) -> None:
    """Count `points` of `flow` when the session's transaction commits."""
    child = _FLOW_CHILDREN.get(flow)
    if child is None:
        raise ValueError(f"unknown points flow {flow!r}")
    if points > 0:
        _after_commit(session, child, points)


def count_hold(session: AsyncSession | Session, outcome: str) -> None:
    """Count a hold resolved with `outcome` when the session's transaction commits."""
    child = _HOLD_CHILDREN.get(outcome)
    if child is None:
        raise ValueError(f"unknown hold outcome {outcome!r}")
    _after_commit(session, child, 1)


def _after_commit(session: AsyncSession | Session, child: Any, amount: int) -> None:
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    transaction = sync.get_nested_transaction() or sync.get_transaction()
    if transaction is None:  # nothing open: the work is already durable
        child.inc(amount)
        return
    sync.info.setdefault(_PENDING, []).append((transaction, child, amount))


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    if _PENDING not in session.info:  # every commit of every session comes here: be quick
        return
    # Also fired when a savepoint is released: count only once the outermost transaction,
    # the one that makes the work durable, has committed.
    root = session.get_transaction()
    if root is not None and root.is_active:
        return
    for _transaction, child, amount in session.info.pop(_PENDING, ()):
        child.inc(amount)


@event.listens_for(Session, "after_soft_rollback")
def _rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    pending = session.info.get(_PENDING)
    if not pending:
        return
    kept = [entry for entry in pending if not _within(entry[0], previous_transaction)]
    if kept:
        session.info[_PENDING] = kept
    else:
        del session.info[_PENDING]


def _within(transaction: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


def watch_pool(engine: AsyncEngine) -> None:
    """Keep `carbon_points_db_connections_in_use` with the engine's pool."""
    event.listen(engine.sync_engine, "checkout", _checked_out)
    event.listen(engine.sync_engine, "checkin", _checked_in)


def _checked_out(*_: Any) -> None:
    DB_CONNECTIONS_IN_USE.inc()


def _checked_in(*_: Any) -> None:
    DB_CONNECTIONS_IN_USE.dec()


async def refresh_from_database(
    sessionmaker: async_sessionmaker[AsyncSession], *, force: bool = False
) -> None:
    """Read the liability and the outbox's state (two statements), at most every
    `STATE_SECONDS` unless `force`. A failure leaves the last values (and is not a scrape's
    failure: the HTTP and process metrics still answer)."""
    global _refreshed_at
    now = time.monotonic()
    if not force and now - _refreshed_at < STATE_SECONDS:
        return
    _refreshed_at = now
    from service.ledger import service as ledger
    from service.webhooks import service as webhooks

    async with sessionmaker() as session:
        position = await ledger.points_position(session, now=datetime.now(UTC))
        outbox = await webhooks.outbox_state(session, now=datetime.now(UTC))
    POINTS_LIABILITY.labels("posted").set(position.posted)
    POINTS_LIABILITY.labels("held").set(position.held)
    POINTS_LIABILITY.labels("debt").set(position.debt)
    POINTS_HOLDERS.set(position.holders)
    OUTBOX_PENDING.set(outbox.pending)
    OUTBOX_LAG.set(outbox.lag_seconds)
    OUTBOX_DEAD.set(outbox.dead)
