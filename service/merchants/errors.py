"""Problems a merchant's till can get, each with a stable type."""

from __future__ import annotations

from typing import ClassVar

from service.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ProblemError,
    UnauthenticatedError,
)


class MerchantKeyInvalidError(UnauthenticatedError):
    slug: ClassVar[str] = "merchant-key-invalid"
    title: ClassVar[str] = "Missing, unknown or revoked merchant key"


class ScopeMissingError(ForbiddenError):
    slug: ClassVar[str] = "scope-missing"
    title: ClassVar[str] = "This key may not do that"


class MerchantSuspendedError(ForbiddenError):
    slug: ClassVar[str] = "merchant-suspended"
    title: ClassVar[str] = "Merchant suspended"


class OfferUnavailableError(ConflictError):
    slug: ClassVar[str] = "offer-unavailable"
    title: ClassVar[str] = "Offer not valid now, out of stock, or over the per-user limit"


class RedemptionNotFoundError(NotFoundError):
    slug: ClassVar[str] = "redemption-not-found"
    title: ClassVar[str] = "Redemption not found"


class IdempotencyKeyMissingError(ProblemError):
    status: ClassVar[int] = 400
    slug: ClassVar[str] = "idempotency-key-missing"
    title: ClassVar[str] = "Send an Idempotency-Key header"


class IdempotencyKeyReusedError(ProblemError):
    status: ClassVar[int] = 422
    slug: ClassVar[str] = "idempotency-key-reused"
    title: ClassVar[str] = "Idempotency key used with a different request"


class RequestInProgressError(ConflictError):
    slug: ClassVar[str] = "request-in-progress"
    title: ClassVar[str] = "A request with this idempotency key is still in progress"


class MerchantNotFoundError(NotFoundError):
    slug: ClassVar[str] = "merchant-not-found"
    title: ClassVar[str] = "No such merchant"


class MerchantKeyNotFoundError(NotFoundError):
    slug: ClassVar[str] = "merchant-key-not-found"
    title: ClassVar[str] = "The merchant has no such key"
