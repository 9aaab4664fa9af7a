"""What every kind of ledger transaction shares: idempotency checks, argument checks, and the
writer that extends accounts' hash chains."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.ledger import repository as repo
from service.ledger.chain import link, posting_digest
from service.ledger.errors import (
    IdempotencyConflictError,
    InvalidAmountError,
)
from service.ledger.plan import AccountState

JOBS_ORIGIN = "ledger.jobs"
DEBT_ORIGIN = "ledger.debt"
# Shenzhen's 2022 rules: points may live at most ten years.
MAX_VALIDITY = timedelta(days=3653)


def _differences(stored: dict[str, Any], wanted: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(k for k in stored.keys() | wanted.keys() if stored.get(k) != wanted.get(k)))


def _conflict(origin: str, key: str, fields: Sequence[str]) -> IdempotencyConflictError:
    return IdempotencyConflictError(
        f"idempotency key {key!r} of {origin!r} was first used with different {', '.join(fields)}",
        fields=list(fields),
    )


def _aware(moment: datetime, name: str) -> None:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise InvalidAmountError(f"{name} must be a datetime with a time zone")


def _whole(name: str, value: object, minimum: int) -> int:
    """Invariant 9: amounts are Python ints (never bool, float or Decimal) within bounds."""
    if type(value) is not int or value < minimum or value > 2**62:
        raise InvalidAmountError(f"{name} must be a whole number >= {minimum}, not {value!r}")
    return value


def _shard() -> int:
    return secrets.randbelow(repo.ISSUANCE_SHARDS)


class _Writer:
    """Postings for locked accounts: updates balances and extends each account's chain."""

    def __init__(self, states: dict[int, AccountState]) -> None:
        self.states = states
        self.postings: list[dict[str, Any]] = []

    def post(self, transaction_id: int, digest: bytes, account_id: int, amount: int) -> None:
        if amount == 0:
            return
        state = self.states[account_id]
        state.chain_seq += 1
        state.chain_hash = link(
            state.chain_hash,
            posting_digest(digest, account_id, state.asset, amount, state.chain_seq),
        )
        state.posted += amount
        self.postings.append(
            {
                "transaction_id": transaction_id,
                "account_id": account_id,
                "asset": state.asset,
                "amount": amount,
                "account_seq": state.chain_seq,
                "chain_hash": state.chain_hash,
            }
        )

    async def flush(self, session: AsyncSession) -> None:
        await repo.post_and_save(session, self.postings, self.states.values())
        self.postings = []
