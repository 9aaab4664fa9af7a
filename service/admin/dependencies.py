"""Who is calling the admin API, and whether one of their roles allows the endpoint.

    @router.post("/v1/admin/...")
    async def act(admin: Annotated[AdminPrincipal, Depends(require("program-admin"))]) -> ...:
        ... admin.actor  # for audit.record: who, under which role, which request

Roles and status are read from the database on every request (one primary-key read), so
taking a role away or disabling an administrator takes effect at once; a role or status
change also bumps the token generation, ending the tokens issued before it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from service import audit
from service.accounts.dependencies import keyring
from service.admin import repository
from service.admin.errors import (
    AdminTokenInvalidError,
    AdminTokenMissingError,
    RoleRequiredError,
)
from service.admin.tokens import verify_admin_token
from service.db import DbSession
from service.models import ADMIN_ROLES


@dataclass(frozen=True, slots=True)
class AdminPrincipal:
    admin_id: uuid.UUID
    login: str
    roles: frozenset[str]
    acting_role: str
    request_id: str | None

    @property
    def actor(self) -> audit.Actor:
        return audit.Actor(self.admin_id, self.login, self.acting_role, self.request_id)


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminAccessToken",
    description="A token from `POST /v1/admin/login` (password and TOTP code).",
)


def require(*allowed: str) -> Callable[..., Awaitable[AdminPrincipal]]:
    """A dependency admitting administrators holding one of `allowed` (any role if none)."""
    unknown = set(allowed) - set(ADMIN_ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")
    wanted = allowed or ADMIN_ROLES

    async def dependency(
        request: Request,
        session: DbSession,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> AdminPrincipal:
        if credentials is None:
            raise AdminTokenMissingError("send Authorization: Bearer <admin token>")
        claims = verify_admin_token(keyring(request), credentials.credentials)
        admin = await repository.by_id(session, claims.admin_id)
        if admin is None or admin.status != "active" or admin.token_generation != claims.generation:
            raise AdminTokenInvalidError("the token was revoked; log in again")
        acting = next((role for role in wanted if role in admin.roles), None)
        if acting is None:
            raise RoleRequiredError(f"this needs one of the roles {', '.join(wanted)}")
        request_id = getattr(request.state, "request_id", None)
        structlog.contextvars.bind_contextvars(admin_id=str(admin.id))
        return AdminPrincipal(admin.id, admin.login, frozenset(admin.roles), acting, request_id)

    dependency.allowed_roles = tuple(wanted)  # type: ignore[attr-defined]
    return dependency


async def active_roles(session: AsyncSession, admin_id: uuid.UUID) -> frozenset[str] | None:
    """The roles of an active administrator, or None (no such administrator, or disabled):
    for other domains that name an administrator (a review's assignee)."""
    admin = await repository.by_id(session, admin_id)
    if admin is None or admin.status != "active":
        return None
    return frozenset(admin.roles)
