"""Problems a redemption can meet, each with a stable type."""

from __future__ import annotations

from typing import ClassVar

from service.errors import ConflictError, NotFoundError, ProblemError


class OfferUnavailableError(ConflictError):
    slug: ClassVar[str] = "offer-unavailable"
    title: ClassVar[str] = "Offer not valid now, out of stock, or over the per-user limit"


class RedemptionNotFoundError(NotFoundError):
    slug: ClassVar[str] = "redemption-not-found"
    title: ClassVar[str] = "Redemption not found"


class RedemptionTokenInvalidError(ProblemError):
    status: ClassVar[int] = 422
    slug: ClassVar[str] = "redemption-token-invalid"
    title: ClassVar[str] = "Redemption token unknown, used or expired"
