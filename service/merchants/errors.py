"""Problems a merchant's till can get, each with a stable type."""

from __future__ import annotations

from typing import ClassVar

from service.errors import ForbiddenError, NotFoundError, UnauthenticatedError


class MerchantKeyInvalidError(UnauthenticatedError):
    slug: ClassVar[str] = "merchant-key-invalid"
    title: ClassVar[str] = "Missing, unknown or revoked merchant key"


class ScopeMissingError(ForbiddenError):
    slug: ClassVar[str] = "scope-missing"
    title: ClassVar[str] = "This key may not do that"


class MerchantSuspendedError(ForbiddenError):
    slug: ClassVar[str] = "merchant-suspended"
    title: ClassVar[str] = "Merchant suspended"


class MerchantNotFoundError(NotFoundError):
    slug: ClassVar[str] = "merchant-not-found"
    title: ClassVar[str] = "No such merchant"


class MerchantKeyNotFoundError(NotFoundError):
    slug: ClassVar[str] = "merchant-key-not-found"
    title: ClassVar[str] = "The merchant has no such key"
