"""The ledger's jobs: lots past their expiry, and holds past their timeout."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service import metrics
from service.ledger import repository as repo
from service.ledger.chain import transaction_digest
from service.ledger.errors import (
    HoldAlreadyResolvedError,
)
from service.ledger.schemas import (
    Status,
)
from service.ledger.service._common import JOBS_ORIGIN, _aware, _Writer
from service.ledger.service.holds import _move_lots, void_hold

_EXPIRY_LOCK = 0x6C65_6467_6572  # pg_advisory_xact_lock key: one expiry run at a time


async def expire_lots(session: AsyncSession, *, now: datetime, batch_size: int = 500) -> int:
    """Expire up to `batch_size` due lots; returns how many lots it expired.

    One expiry transaction per account per batch, keyed by the lots and their
    latest movement, so a retried batch is recognised and a lot refilled later
    (a voided hold, a refund) expires again under a new key. Run it in a loop,
    one commit per batch: after a crash it resumes where the last commit ended.
    """
    _aware(now, "now")
    await repo.take_advisory_lock(session, _EXPIRY_LOCK)
    due = await repo.due_lots(session, now, batch_size)
    if not due:
        return 0
    by_account: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for lot_id, account_id, last_movement in due:
        by_account[account_id].append((lot_id, int(last_movement)))
    expiry_account = (await repo.account_ids_by_code(session, [repo.EXPIRY_ACCOUNT_CODE]))[
        repo.EXPIRY_ACCOUNT_CODE
    ]
    states = await repo.lock_accounts(session, [*by_account, expiry_account])
    lots = await repo.lots_by_id(session, [lot_id for lot_id, _, _ in due])

    # Amounts are read after the locks: a hold may have taken points since the scan.
    amounts_by_account: dict[int, dict[int, int]] = {}
    rows: dict[int, dict[str, Any]] = {}
    for account_id, entries in by_account.items():
        amounts = {i: lots[i].remaining for i, _ in entries if lots[i].remaining > 0}
        if not amounts:
            continue
        amounts_by_account[account_id] = amounts
        fingerprint = hashlib.sha256(repr(sorted(entries)).encode()).hexdigest()[:40]
        rows[account_id] = {
            "origin": JOBS_ORIGIN,
            "idempotency_key": f"expire:{account_id}:{fingerprint}",
            "kind": "expiry",
            "request": {"account_id": account_id, "lots": [list(e) for e in sorted(entries)]},
        }
    inserted = await repo.insert_transactions(session, list(rows.values()))
    writer = _Writer(states)
    expired = 0
    points = 0
    for account_id, amounts in sorted(amounts_by_account.items()):
        row = rows[account_id]
        key: str = row["idempotency_key"]
        if (JOBS_ORIGIN, key) not in inserted:
            continue
        tx_id, created_at = inserted[(JOBS_ORIGIN, key)]
        total = sum(amounts.values())
        await _move_lots(
            session,
            [lots[i] for i in amounts],
            amounts,
            kind="expire",
            sign=-1,
            transaction_id=tx_id,
        )
        digest = transaction_digest(tx_id, JOBS_ORIGIN, key, "expiry", row["request"], created_at)
        writer.post(tx_id, digest, account_id, -total)
        writer.post(tx_id, digest, expiry_account, total)
        expired += len(amounts)
        points += total
    await writer.flush(session)
    metrics.count_points(session, "expired", points)
    return expired


async def void_overdue_holds(
    session: AsyncSession, *, now: datetime, batch_size: int = 100
) -> list[int]:
    """Void holds whose timeout passed without a post (outcome `expired`); returns the ids
    of the holds this call expired, so the caller (the redemption domain) can tell whoever
    placed them in the same transaction."""
    _aware(now, "now")
    voided: list[int] = []
    for hold_id in await repo.overdue_holds(session, now, batch_size):
        try:
            async with session.begin_nested():
                result = await void_hold(
                    session,
                    origin=JOBS_ORIGIN,
                    key=f"timeout:{hold_id}",
                    hold_id=hold_id,
                    outcome="expired",
                )
        except HoldAlreadyResolvedError:
            continue  # a till posted or voided it between the scan and the lock
        if result.status is Status.CREATED:  # not another runner's timeout of the same hold
            voided.append(hold_id)
    return voided
