"""Ledger operations, one module per kind of transaction (credits, holds, refunds, expiry)
and the reads. Each takes the session first and never commits.

Rules every operation follows, so that no two can deadlock and no number can drift:

* Lock order: idempotency keys first (inserted in sorted order), then account rows
  (`SELECT ... FOR NO KEY UPDATE` in ascending id order). Lots are only read or
  changed under their account's lock. One ledger operation per database transaction.
* Idempotency (TigerBeetle's semantics): every operation carries (origin, key).
  The same key with the same content returns the original result with status
  `exists`; with different content it is a conflict naming the differing fields.
  A request that fails (not enough points, hold expired) writes nothing and is
  not remembered: a retry is evaluated afresh.
* Materialised state (balances, chain heads, lot remainders) is written in the
  same database transaction as the postings it summarises; the database's CHECK
  constraints refuse any negative available balance even if this code erred.
* The program's issuance account is 64 shards per asset; each call picks one at
  random, so concurrent batches do not queue on one balance row.
* Debt (points a reversal could not claw back) is the `DEBT` asset: posted and
  chained like points. Points that come back to a participant who owes (a voided
  hold, a refund) pay the debt before they can be spent again; so do new credits.
"""

from service.ledger.schemas import (
    Asset,
    Balance,
    CreditRequest,
    CreditResult,
    HoldResult,
    HoldState,
    MerchantSettlementTotal,
    PointsFlows,
    PointsPosition,
    ResolutionResult,
    SettlementLine,
    Status,
    TransferResult,
)
from service.ledger.service._common import DEBT_ORIGIN, JOBS_ORIGIN, MAX_VALIDITY
from service.ledger.service.credits import CreditContext, credit, lock_for_credits, post_credits
from service.ledger.service.expiry import expire_lots, void_overdue_holds
from service.ledger.service.holds import open_merchant_accounts, place_hold, post_hold, void_hold
from service.ledger.service.pooling import (
    PoolCandidate,
    PoolingResult,
    PoolLedgerSummary,
    ReversedPooledCredit,
    pool_balance,
    pool_credits,
    pool_summaries,
    reversed_pooled_credits,
)
from service.ledger.service.reads import balance, history, hold_state, settlement_lines
from service.ledger.service.refunds import refund, reverse_credit
from service.ledger.service.reports import (
    merchant_settlement_totals,
    points_flows,
    points_position,
)
from service.ledger.service.review import (
    reject_reviewed_credit,
    release_review_hold,
    review_hold_id,
)

__all__ = [
    "DEBT_ORIGIN",
    "JOBS_ORIGIN",
    "MAX_VALIDITY",
    "Asset",
    "Balance",
    "CreditContext",
    "CreditRequest",
    "CreditResult",
    "HoldResult",
    "HoldState",
    "MerchantSettlementTotal",
    "PointsFlows",
    "PointsPosition",
    "PoolCandidate",
    "PoolLedgerSummary",
    "PoolingResult",
    "ResolutionResult",
    "ReversedPooledCredit",
    "SettlementLine",
    "Status",
    "TransferResult",
    "balance",
    "credit",
    "expire_lots",
    "history",
    "hold_state",
    "lock_for_credits",
    "merchant_settlement_totals",
    "open_merchant_accounts",
    "place_hold",
    "points_flows",
    "points_position",
    "pool_balance",
    "pool_credits",
    "pool_summaries",
    "post_credits",
    "post_hold",
    "refund",
    "reject_reviewed_credit",
    "release_review_hold",
    "reverse_credit",
    "reversed_pooled_credits",
    "review_hold_id",
    "settlement_lines",
    "void_hold",
    "void_overdue_holds",
]
