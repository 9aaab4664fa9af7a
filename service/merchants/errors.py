"""Problems a merchant's till can get, each with a stable type."""

from __future__ import annotations

from typing import ClassVar

from service.errors import (
    ForbiddenError,
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
