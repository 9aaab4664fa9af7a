"""Credits: points (and their lots) issued to participants, one at a time or in sets."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service import metrics
from service.ledger import repository as repo
from service.ledger.errors import (
    InvalidAmountError,
)
from service.ledger.plan import AccountState, plan_credits
from service.ledger.schemas import (
    Asset,
    CreditRequest,
    CreditResult,
    Status,
)
from service.ledger.service._common import MAX_VALIDITY, _aware, _differences, _whole


def _participant_account_rows(
    participant_ids: set[uuid.UUID], assets: Sequence[Asset]
) -> list[dict[str, Any]]:
    return [
        {
            "code": repo.participant_account_code(pid, asset.value),
            "owner_type": "participant",
            "owner_id": pid,
            "asset": asset.value,
            "kind": "participant",
            "bounded": True,
        }
        for pid in participant_ids
        for asset in assets
    ]


async def credit(
    session: AsyncSession, requests: Sequence[CreditRequest], *, now: datetime | None = None
) -> list[CreditResult]:
    """Credit a batch (one or many): one transaction and at most one lot per new request.

    A credit first pays off any debt left by an earlier reversal; the rest opens
    a lot that expires at `expires_at` (after `now`, at most ten years on).
    Returns one result per request, in order.
    """
    moment = now or datetime.now(UTC)
    _check_credits(requests, moment)

    first_by_key: dict[tuple[str, str], CreditRequest] = {}
    for request in requests:
        first_by_key.setdefault((request.origin, request.key), request)
    inserted = await repo.insert_transactions(
        session,
        [
            {"origin": o, "idempotency_key": k, "kind": "credit", "request": r.content()}
            for (o, k), r in first_by_key.items()
        ],
    )
    existing = await repo.find_transactions(
        session, [key for key in first_by_key if key not in inserted]
    )
    fresh = [r for key, r in first_by_key.items() if key in inserted]
    results_by_key = await _apply_credits(session, fresh, inserted) if fresh else {}
    replayed = await repo.lots_of_transactions(
        session, [tx.id for tx in existing.values() if tx.kind == "credit"]
    )
    for key, stored in existing.items():
        if stored.kind != "credit":
            continue
        lot_id, lot_amount = replayed.get(stored.id, (None, 0))
        results_by_key[key] = CreditResult(
            Status.EXISTS, stored.id, lot_id, int(stored.request["points"]) - lot_amount
        )

    results: list[CreditResult] = []
    for request in requests:
        key = (request.origin, request.key)
        first = first_by_key[key]
        if key in inserted and first is request:
            results.append(results_by_key[key])
            continue
        stored_content = (
            first.content()
            if key in inserted
            else (existing[key].request if existing[key].kind == "credit" else {"kind": "other"})
        )
        differing = _differences(stored_content, request.content())
        if differing:
            results.append(CreditResult(Status.CONFLICT, None, conflicting_fields=differing))
        else:
            original = results_by_key[key]
            results.append(
                CreditResult(
                    Status.EXISTS, original.transaction_id, original.lot_id, original.debt_paid
                )
            )
    return results


def _check_credits(requests: Sequence[CreditRequest], moment: datetime) -> None:
    _aware(moment, "now")
    for request in requests:
        _whole("points", request.points, 0)
        _whole("grams", request.grams, 0)
        if request.points + request.grams == 0:
            raise InvalidAmountError(f"credit {request.key!r}: points and grams are both zero")
        _aware(request.expires_at, "expires_at")
        if not moment < request.expires_at <= moment + MAX_VALIDITY:
            raise InvalidAmountError(
                f"credit {request.key!r}: expires_at must be after now and at most ten years on"
            )


@dataclass(slots=True)
class CreditContext:
    """The locked accounts and reserved ids for crediting a set of participants.

    Holding one means this database transaction holds the row locks of those participants'
    POINTS, GCO2E (and DEBT, if any) accounts, and of one issuance shard per asset: crediting
    them is serialised with every other writer of those accounts until commit.
    """

    participants: frozenset[uuid.UUID]
    accounts: dict[str, AccountState]
    shards: dict[Asset, str]
    transaction_ids: list[int]
    lot_ids: list[int]


async def lock_for_credits(
    session: AsyncSession,
    participant_ids: Sequence[uuid.UUID],
    *,
    capacity: int,
    with_transactions: bool = True,
) -> CreditContext:
    """Create missing accounts, reserve ids for up to `capacity` credits, lock. Two statements.

    The caller decides what to credit under these locks (caps and de-duplication read state
    that only changes under them), then calls `post_credits`.
    """
    participants = frozenset(participant_ids)
    transaction_ids, lot_ids = await repo.ensure_participant_accounts_and_reserve(
        session, participants, transactions=capacity if with_transactions else 0, lots=capacity
    )
    codes = [
        repo.participant_account_code(pid, asset.value) for pid in participants for asset in Asset
    ]
    accounts, shards = await repo.lock_for_credits(session, codes)
    return CreditContext(
        participants,
        accounts,
        {Asset(asset): code for asset, code in shards.items()},
        transaction_ids,
        lot_ids,
    )


async def post_credits(
    session: AsyncSession,
    context: CreditContext,
    requests: Sequence[CreditRequest],
    *,
    now: datetime,
) -> list[CreditResult]:
    """Post credits whose idempotency keys are new by construction (the caller owns them,
    e.g. one per claimed event): planned in memory, written in one statement, nothing read
    back. Each request's participant must be one `context` locked."""
    _check_credits(requests, now)
    if not requests:
        return []
    if len(requests) > len(context.transaction_ids):
        raise InvalidAmountError(
            f"{len(requests)} credits, ids reserved for {len(context.transaction_ids)}"
        )
    for request in requests:
        if request.participant_id not in context.participants:
            raise InvalidAmountError(f"credit {request.key!r}: its participant is not locked")
    writes = plan_credits(
        list(requests),
        transaction_ids=context.transaction_ids,
        lot_ids=context.lot_ids,
        accounts=context.accounts,
        issuance=context.shards,
        created_at=now,
    )
    del context.transaction_ids[: len(writes.tx_id)]
    del context.lot_ids[: len(writes.lot_id)]
    await repo.write_credits(session, writes)
    metrics.count_points(session, "issued", sum(r.points for r in requests))
    return writes.results


async def _apply_credits(
    session: AsyncSession,
    fresh: list[CreditRequest],
    inserted: dict[tuple[str, str], tuple[int, datetime]],
) -> dict[tuple[str, str], CreditResult]:
    ordered = sorted(fresh, key=lambda r: (r.origin, r.key))
    context = await lock_for_credits(
        session, [r.participant_id for r in ordered], capacity=len(ordered), with_transactions=False
    )
    writes = plan_credits(
        ordered,
        transaction_ids=(),
        lot_ids=context.lot_ids,
        accounts=context.accounts,
        issuance=context.shards,
        created_at=datetime.now(UTC),
        known_transactions=inserted,
    )
    await repo.write_credits(session, writes)
    metrics.count_points(session, "issued", sum(r.points for r in ordered))
    return {(r.origin, r.key): result for r, result in zip(ordered, writes.results, strict=True)}
