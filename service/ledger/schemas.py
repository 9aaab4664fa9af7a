"""Requests and results of ledger operations: plain frozen dataclasses, integers only."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Asset(StrEnum):
    POINTS = "POINTS"
    GRAMS = "GCO2E"
    DEBT = "DEBT"


class Status(StrEnum):
    CREATED = "created"
    EXISTS = "exists"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class CreditRequest:
    """Points (and grams) credited to a participant, opening a lot that expires."""

    origin: str
    key: str
    participant_id: uuid.UUID
    points: int
    grams: int
    expires_at: datetime
    credit_id: str | None = None
    methodology_id: str | None = None
    methodology_version: int | None = None
    reason: str = "action_credited"
    review: bool = False
    """Flagged for review: the points the credit's lot receives are held (a ledger hold on
    the lot, key `review:<transaction id>`) until a reviewer releases them
    (`release_review_hold`) or takes the credit back (`reject_reviewed_credit`)."""

    def content(self) -> dict[str, object]:
        content: dict[str, object] = {
            "reason": self.reason,
            "participant_id": str(self.participant_id),
            "points": self.points,
            "grams": self.grams,
            "expires_at": self.expires_at.isoformat(),
            "credit_id": self.credit_id,
            "methodology_id": self.methodology_id,
            "methodology_version": self.methodology_version,
        }
        if self.review:
            # Only when set, so every credit made before review existed hashes the same.
            content["review"] = True
        return content


@dataclass(frozen=True, slots=True)
class CreditResult:
    status: Status
    transaction_id: int | None
    lot_id: int | None = None
    debt_paid: int = 0
    conflicting_fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HoldResult:
    status: Status
    hold_id: int
    amount: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class HoldState:
    hold_id: int
    expires_at: datetime
    outcome: str | None  # None while pending; else posted, voided or expired
    amount_posted: int
    refunded: int
    transaction_id: int | None = None  # the capture's ledger transaction, once posted


@dataclass(frozen=True, slots=True)
class ResolutionResult:
    status: Status
    hold_id: int
    outcome: str
    amount_posted: int
    transaction_id: int | None
    hold_expires_at: datetime | None = None  # set when this call resolved the hold


@dataclass(frozen=True, slots=True)
class TransferResult:
    status: Status
    transaction_id: int
    amount: int
    unrecovered: int = 0


@dataclass(frozen=True, slots=True)
class Balance:
    participant_id: uuid.UUID
    posted: int
    held: int
    available: int
    debt: int
    grams: int
    expiring: list[tuple[datetime, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SettlementLine:
    """A posting to a merchant's settlement accounts: a capture (+) or a refund (-)."""

    at: datetime
    kind: str  # the ledger transaction's kind: redemption or refund
    transaction_id: int
    points: int


@dataclass(frozen=True, slots=True)
class PointsFlows:
    """POINTS moved in a period, by what moved them (all non-negative). Participants' net
    change = issued - redeemed + refunded - expired - reversed - debt_repaid."""

    issued: int  # credits: issuance -> participants
    redeemed: int  # captures: participants -> merchants' settlement accounts
    refunded: int  # refunds: merchants' settlement accounts -> participants
    expired: int  # expiry: participants -> the expiry account
    reversed: int  # reversals: participants -> issuance
    debt_repaid: int  # points that reached a participant who owed, back to issuance
    expired_reclaimed: int  # reversals of credits whose points had already expired
    participants_net: int  # the sum of the period's postings to participants' accounts


@dataclass(frozen=True, slots=True)
class PointsPosition:
    """Participants' points now: the programme's liability, and when it falls due."""

    posted: int  # the liability: the sum of participants' posted POINTS
    held: int  # of which held for redemptions in progress
    debt: int  # points owed by participants (reversals of spent points)
    holders: int  # participants with a positive balance
    expiring: dict[int, int]  # days ahead -> open points due by then (0: overdue now)


@dataclass(frozen=True, slots=True)
class MerchantSettlementTotal:
    """What a merchant's settlement accounts received and gave back in a period."""

    merchant_id: uuid.UUID
    redemptions: int
    redeemed: int
    refunds: int
    refunded: int

    @property
    def net(self) -> int:
        return self.redeemed - self.refunded
