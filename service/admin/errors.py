"""Why an admin request was refused: each its own stable problem type."""

from __future__ import annotations

from typing import Any, ClassVar

from service.errors import ConflictError, ForbiddenError, UnauthenticatedError


class _AdminBearerError(UnauthenticatedError):
    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.headers["www-authenticate"] = 'Bearer realm="carbon-points-admin"'


class AdminTokenMissingError(_AdminBearerError):
    slug: ClassVar[str] = "admin-token-missing"
    title: ClassVar[str] = "Administrator bearer token required"


class AdminTokenInvalidError(_AdminBearerError):
    slug: ClassVar[str] = "admin-token-invalid"
    title: ClassVar[str] = "Administrator token invalid or expired"


class AdminLoginFailedError(UnauthenticatedError):
    slug: ClassVar[str] = "admin-login-failed"
    title: ClassVar[str] = "Login name, password or one-time code is wrong"


class RoleRequiredError(ForbiddenError):
    slug: ClassVar[str] = "role-required"
    title: ClassVar[str] = "None of the administrator's roles allows this"


class AlreadyBootstrappedError(ConflictError):
    slug: ClassVar[str] = "already-bootstrapped"
    title: ClassVar[str] = "An administrator exists already"


class AdminLoginTakenError(ConflictError):
    slug: ClassVar[str] = "admin-login-taken"
    title: ClassVar[str] = "An administrator has this login already"
