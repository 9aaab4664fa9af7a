"""Why a partner request was refused: each its own stable problem type."""

from __future__ import annotations

from typing import ClassVar

from service.errors import ForbiddenError, NotFoundError, UnauthenticatedError


class SignatureMissingError(UnauthenticatedError):
    slug: ClassVar[str] = "signature-missing"
    title: ClassVar[str] = "Request is not signed"


class StaleTimestampError(UnauthenticatedError):
    slug: ClassVar[str] = "stale-timestamp"
    title: ClassVar[str] = "Signature timestamp outside the tolerance"


class UnknownKeyError(UnauthenticatedError):
    slug: ClassVar[str] = "unknown-key"
    title: ClassVar[str] = "Unknown signing key"


class RevokedKeyError(UnauthenticatedError):
    slug: ClassVar[str] = "revoked-key"
    title: ClassVar[str] = "Signing key revoked or expired"


class BadSignatureError(UnauthenticatedError):
    slug: ClassVar[str] = "bad-signature"
    title: ClassVar[str] = "Signature does not match"


class ReplayedRequestError(UnauthenticatedError):
    slug: ClassVar[str] = "replayed-request"
    title: ClassVar[str] = "Request id already used"


class PartnerSuspendedError(ForbiddenError):
    slug: ClassVar[str] = "partner-suspended"
    title: ClassVar[str] = "Partner suspended"


class ActionTypeNotAllowedError(ForbiddenError):
    slug: ClassVar[str] = "action-type-not-allowed"
    title: ClassVar[str] = "Action type not allowed for this partner"


class PartnerNotFoundError(NotFoundError):
    slug: ClassVar[str] = "partner-not-found"
    title: ClassVar[str] = "Partner not found"


class PartnerKeyNotFoundError(NotFoundError):
    slug: ClassVar[str] = "partner-key-not-found"
    title: ClassVar[str] = "The partner has no such key"
