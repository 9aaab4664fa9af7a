"""The ledger's plan for a set of credits: every row to write, decided in memory, no I/O.

The shell (`service.ledger.service`) loads and locks the accounts a set of credits touches and
reserves the ids the new rows will carry; this module decides everything else: debt paid
first, the lot each credit opens, the postings with their per-account sequence numbers and
hash chain, and the accounts' new balances and chain heads. The shell then writes the plan in
one statement. Being pure, the plan is tested without a database, and the chain a plan
computes is the same the verifier recomputes from the stored rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.ledger.chain import link, posting_digest, transaction_digest
from service.ledger.schemas import Asset, CreditRequest, CreditResult, Status


@dataclass(slots=True)
class AccountState:
    """An account row as locked for update; a plan changes it, then the shell saves it."""

    id: int
    asset: str
    bounded: bool
    posted: int
    held: int
    chain_seq: int
    chain_hash: bytes


def participant_account_code(participant_id: uuid.UUID, asset: str) -> str:
    return f"participant:{participant_id}:{asset}"


MERCHANT_SHARDS = 32
"""A merchant's settlement account is this many accounts: each hold picks one at random and
its capture and refunds post to that one, so a merchant's tills never queue on one row."""


def merchant_account_code(merchant_id: uuid.UUID, shard: int) -> str:
    return f"merchant:{merchant_id}:settlement:POINTS:{shard:02d}"


def merchant_account_codes(merchant_id: uuid.UUID) -> list[str]:
    """Every settlement account a merchant may have: its shards, and the single account of
    holds placed before there were shards."""
    return [
        f"merchant:{merchant_id}:settlement:POINTS",
        *(merchant_account_code(merchant_id, shard) for shard in range(MERCHANT_SHARDS)),
    ]


def issuance_account_code(asset: str, shard: int) -> str:
    return f"program:issuance:{asset}:{shard:02d}"


def review_hold_key(credit_transaction_id: int) -> str:
    """The idempotency key of the hold on a flagged credit's points (origin: the credit's)."""
    return f"review:{credit_transaction_id}"


@dataclass(slots=True)
class CreditWrites:
    """Every row a set of credits writes, column by column (ready for `unnest`)."""

    tx_id: list[int] = field(default_factory=list)
    tx_origin: list[str] = field(default_factory=list)
    tx_key: list[str] = field(default_factory=list)
    tx_request: list[dict[str, Any]] = field(default_factory=list)
    tx_created_at: list[datetime] = field(default_factory=list)
    posting_tx: list[int] = field(default_factory=list)
    posting_account: list[int] = field(default_factory=list)
    posting_asset: list[str] = field(default_factory=list)
    posting_amount: list[int] = field(default_factory=list)
    posting_seq: list[int] = field(default_factory=list)
    posting_hash: list[bytes] = field(default_factory=list)
    lot_id: list[int] = field(default_factory=list)
    lot_account: list[int] = field(default_factory=list)
    lot_tx: list[int] = field(default_factory=list)
    lot_amount: list[int] = field(default_factory=list)
    lot_expires_at: list[datetime] = field(default_factory=list)
    lot_held: list[int] = field(default_factory=list)
    hold_origin: list[str] = field(default_factory=list)
    hold_key: list[str] = field(default_factory=list)
    hold_request: list[dict[str, Any]] = field(default_factory=list)
    hold_account: list[int] = field(default_factory=list)
    hold_counter: list[int] = field(default_factory=list)
    hold_amount: list[int] = field(default_factory=list)
    hold_lot: list[int] = field(default_factory=list)
    hold_expires_at: list[datetime] = field(default_factory=list)
    accounts: dict[int, AccountState] = field(default_factory=dict)
    results: list[CreditResult] = field(default_factory=list)

    def post(self, tx_id: int, digest: bytes, state: AccountState, amount: int) -> None:
        """One posting: the account's balance moves and its chain grows by one link."""
        if amount == 0:
            return
        state.chain_seq += 1
        state.chain_hash = link(
            state.chain_hash,
            posting_digest(digest, state.id, state.asset, amount, state.chain_seq),
        )
        state.posted += amount
        self.accounts[state.id] = state
        self.posting_tx.append(tx_id)
        self.posting_account.append(state.id)
        self.posting_asset.append(state.asset)
        self.posting_amount.append(amount)
        self.posting_seq.append(state.chain_seq)
        self.posting_hash.append(state.chain_hash)


def plan_credits(
    specs: Sequence[CreditRequest],
    *,
    transaction_ids: Sequence[int],
    lot_ids: Sequence[int],
    accounts: Mapping[str, AccountState],
    issuance: Mapping[Asset, str],
    created_at: datetime,
    known_transactions: Mapping[tuple[str, str], tuple[int, datetime]] | None = None,
) -> CreditWrites:
    """Plan `specs` in order: transaction ids and lot ids are taken from the reserved ones.

    `accounts` maps account codes to their locked states (participants' POINTS and GCO2E
    must be there; a DEBT account only if the participant ever owed); `issuance` names the
    issuance shard of each asset this plan posts against. `known_transactions` gives the id
    and time of transaction rows already inserted (the generic `credit()` claims its keys
    first); otherwise the plan inserts them too, with `created_at`.
    Debt is paid first, in the open: the points go back to issuance, and only the rest
    opens a lot. The states in `accounts` are updated in place.
    """
    writes = CreditWrites()
    lots = iter(lot_ids)
    ids = iter(transaction_ids)
    for spec in specs:
        request = spec.content()
        known = known_transactions.get((spec.origin, spec.key)) if known_transactions else None
        if known is None:
            tx_id, moment = next(ids), created_at
            writes.tx_id.append(tx_id)
            writes.tx_origin.append(spec.origin)
            writes.tx_key.append(spec.key)
            writes.tx_request.append(request)
            writes.tx_created_at.append(moment)
        else:
            tx_id, moment = known
        digest = transaction_digest(tx_id, spec.origin, spec.key, "credit", request, moment)
        pid = spec.participant_id
        points_account = accounts[participant_account_code(pid, Asset.POINTS)]
        debt_account = accounts.get(participant_account_code(pid, Asset.DEBT))
        issuance_points = accounts[issuance[Asset.POINTS]]

        writes.post(tx_id, digest, issuance_points, -spec.points)
        writes.post(tx_id, digest, points_account, spec.points)
        paid = min(debt_account.posted, spec.points) if debt_account is not None else 0
        if paid and debt_account is not None:
            writes.post(tx_id, digest, points_account, -paid)
            writes.post(tx_id, digest, issuance_points, paid)
            writes.post(tx_id, digest, debt_account, -paid)
            writes.post(tx_id, digest, accounts[issuance[Asset.DEBT]], paid)
        if spec.grams:
            grams_account = accounts[participant_account_code(pid, Asset.GRAMS)]
            writes.post(tx_id, digest, accounts[issuance[Asset.GRAMS]], -spec.grams)
            writes.post(tx_id, digest, grams_account, spec.grams)
        lot_id: int | None = None
        if spec.points - paid > 0:
            lot_id = next(lots)
            writes.lot_id.append(lot_id)
            writes.lot_account.append(points_account.id)
            writes.lot_tx.append(tx_id)
            writes.lot_amount.append(spec.points - paid)
            writes.lot_expires_at.append(spec.expires_at)
            held = spec.points - paid if spec.review else 0
            writes.lot_held.append(held)
            if held:
                # Under review: the whole lot is held at once (a hold on the participant's
                # account, its counter-account the issuance shard), so not a point of it can
                # be spent until a reviewer decides.
                points_account.held += held
                writes.hold_origin.append(spec.origin)
                writes.hold_key.append(review_hold_key(tx_id))
                writes.hold_request.append(
                    {"participant_id": str(pid), "review_of": tx_id, "amount": held}
                )
                writes.hold_account.append(points_account.id)
                writes.hold_counter.append(issuance_points.id)
                writes.hold_amount.append(held)
                writes.hold_lot.append(lot_id)
                writes.hold_expires_at.append(spec.expires_at)
        writes.results.append(CreditResult(Status.CREATED, tx_id, lot_id, paid))
    return writes


def pool_account_code(pool_id: int) -> str:
    """The GCO2E account of a reductions pool: the grams its pooling runs took from
    participants, less those of pooled credits reversed since."""
    return f"program:pool:{pool_id}:GCO2E"
