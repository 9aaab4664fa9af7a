"""Why an app request about accounts or tokens was refused: each its own stable type."""

from __future__ import annotations

from typing import Any, ClassVar

from service.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    UnauthenticatedError,
)


class _BearerError(UnauthenticatedError):
    """A 401 that tells the client, per RFC 6750, what to do with its bearer token."""

    challenge: ClassVar[str] = 'Bearer realm="carbon-points", error="invalid_token"'

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.headers["www-authenticate"] = self.challenge


class TokenMissingError(_BearerError):
    slug: ClassVar[str] = "token-missing"
    title: ClassVar[str] = "Bearer access token required"
    challenge: ClassVar[str] = 'Bearer realm="carbon-points"'


class TokenInvalidError(_BearerError):
    slug: ClassVar[str] = "token-invalid"
    title: ClassVar[str] = "Access token invalid"


class TokenExpiredError(_BearerError):
    slug: ClassVar[str] = "token-expired"
    title: ClassVar[str] = "Access token expired"


class InvalidCredentialsError(UnauthenticatedError):
    slug: ClassVar[str] = "invalid-credentials"
    title: ClassVar[str] = "Login name or password is wrong"


class RefreshTokenInvalidError(UnauthenticatedError):
    slug: ClassVar[str] = "refresh-token-invalid"
    title: ClassVar[str] = "Refresh token unknown, expired or revoked"


class RefreshTokenReusedError(UnauthenticatedError):
    slug: ClassVar[str] = "refresh-token-reused"
    title: ClassVar[str] = "Refresh token already used; its session is revoked"


class LoginThrottledError(RateLimitedError):
    slug: ClassVar[str] = "login-throttled"
    title: ClassVar[str] = "Too many failed logins"


class LoginTakenError(ConflictError):
    slug: ClassVar[str] = "login-taken"
    title: ClassVar[str] = "Login name already registered"


class NotAMemberError(ForbiddenError):
    slug: ClassVar[str] = "not-a-member"
    title: ClassVar[str] = "Not a member of this organisation"


class OwnerRequiredError(ForbiddenError):
    slug: ClassVar[str] = "owner-required"
    title: ClassVar[str] = "Only an owner of the organisation may do this"


class UserNotFoundError(NotFoundError):
    slug: ClassVar[str] = "user-not-found"
    title: ClassVar[str] = "No user with this login name"


class AlreadyAMemberError(ConflictError):
    slug: ClassVar[str] = "already-a-member"
    title: ClassVar[str] = "Already a member of this organisation"
