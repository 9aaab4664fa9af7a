"""Ledger errors: each a problem type a client can act on."""

from __future__ import annotations

from typing import ClassVar

from service.errors import ConflictError, NotFoundError, ProblemError


class InsufficientPointsError(ProblemError):
    status: ClassVar[int] = 409
    slug: ClassVar[str] = "insufficient-points"
    title: ClassVar[str] = "Not enough available points"


class IdempotencyConflictError(ConflictError):
    """Same idempotency key, different content (TigerBeetle's `exists_with_different_*`)."""

    slug: ClassVar[str] = "idempotency-conflict"
    title: ClassVar[str] = "Idempotency key reused with different content"


class HoldNotFoundError(NotFoundError):
    slug: ClassVar[str] = "hold-not-found"
    title: ClassVar[str] = "Hold not found"


class HoldAlreadyResolvedError(ConflictError):
    slug: ClassVar[str] = "hold-already-resolved"
    title: ClassVar[str] = "Hold already posted, voided or expired"


class HoldExpiredError(ConflictError):
    slug: ClassVar[str] = "hold-expired"
    title: ClassVar[str] = "Hold expired before it was posted"


class InvalidAmountError(ProblemError):
    status: ClassVar[int] = 422
    slug: ClassVar[str] = "invalid-amount"
    title: ClassVar[str] = "Invalid amount"


class TransactionNotFoundError(NotFoundError):
    slug: ClassVar[str] = "transaction-not-found"
    title: ClassVar[str] = "Ledger transaction not found"


class AlreadyReversedError(ConflictError):
    slug: ClassVar[str] = "already-reversed"
    title: ClassVar[str] = "Credit already reversed"


class NothingToRefundError(ConflictError):
    slug: ClassVar[str] = "nothing-to-refund"
    title: ClassVar[str] = "Refund exceeds what the redemption took"
