"""Administrators: bootstrap, creation, login with a second factor, roles.

Services take the session first and never commit; every act is recorded in the audit
trail in the same transaction.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service import audit
from service.accounts.passwords import PASSWORDS
from service.accounts.throttle import LoginThrottle
from service.accounts.tokens import Keyring
from service.admin import repository, totp
from service.admin.errors import (
    AdminLoginFailedError,
    AdminLoginTakenError,
    AlreadyBootstrappedError,
)
from service.admin.tokens import ADMIN_TOKEN_TTL, mint_admin_token
from service.errors import NotFoundError
from service.models import Admin
from service.redis import RedisClient

THROTTLE = LoginThrottle()


@dataclass(frozen=True, slots=True)
class EnrolledAdmin:
    """A new administrator and their TOTP provisioning URI: shown once, never again."""

    admin: Admin
    provisioning_uri: str


def admin_state(admin: Admin) -> dict[str, Any]:
    """What the audit trail digests about an administrator (no password hash, no TOTP)."""
    return {
        "id": admin.id,
        "login": admin.login,
        "display_name": admin.display_name,
        "roles": sorted(admin.roles),
        "status": admin.status,
    }


async def _enrol(
    session: AsyncSession,
    server_key: str,
    *,
    login: str,
    display_name: str,
    password: str,
    roles: list[str],
) -> EnrolledAdmin:
    if await repository.login_exists(session, login):
        raise AdminLoginTakenError(f"an administrator with login {login!r} exists")
    admin = Admin(
        id=uuid.uuid4(),
        login=login,
        display_name=display_name,
        password_hash=await PASSWORDS.hash(password),
        roles=sorted(set(roles)),
        totp_salt=secrets.token_bytes(16),
        totp_last_step=0,
        token_generation=0,
        status="active",
    )
    await repository.add(session, admin)
    secret = totp.derive_secret(server_key, admin.id, admin.totp_salt)
    return EnrolledAdmin(admin, totp.provisioning_uri(secret, login))


async def bootstrap(
    session: AsyncSession,
    server_key: str,
    *,
    login: str,
    display_name: str,
    password: str,
    roles: list[str],
) -> EnrolledAdmin:
    """The first administrator (from the CLI); refused once any administrator exists."""
    await repository.lock_for_bootstrap(session)
    if await repository.count(session) > 0:
        raise AlreadyBootstrappedError("administrators exist: ask a program-admin to create yours")
    enrolled = await _enrol(
        session,
        server_key,
        login=login,
        display_name=display_name,
        password=password,
        roles=roles,
    )
    admin = enrolled.admin
    await audit.record(
        session,
        audit.Actor(admin.id, admin.login, "program-admin", "cli"),
        action="admin.bootstrap",
        target_type="admin",
        target_id=str(admin.id),
        after=admin_state(admin),
    )
    return enrolled


async def create_admin(
    session: AsyncSession,
    server_key: str,
    actor: audit.Actor,
    *,
    login: str,
    display_name: str,
    password: str,
    roles: list[str],
) -> EnrolledAdmin:
    enrolled = await _enrol(
        session,
        server_key,
        login=login,
        display_name=display_name,
        password=password,
        roles=roles,
    )
    await audit.record(
        session,
        actor,
        action="admin.create",
        target_type="admin",
        target_id=str(enrolled.admin.id),
        after=admin_state(enrolled.admin),
    )
    return enrolled


async def get_admin(session: AsyncSession, admin_id: uuid.UUID) -> Admin:
    admin = await repository.by_id(session, admin_id)
    if admin is None:
        raise NotFoundError(f"no administrator {admin_id}")
    return admin


async def update_admin(
    session: AsyncSession,
    actor: audit.Actor,
    admin_id: uuid.UUID,
    *,
    roles: list[str] | None,
    status: str | None,
) -> Admin:
    """Change roles or status; either change ends the administrator's current tokens."""
    admin = await get_admin(session, admin_id)
    before = admin_state(admin)
    new_roles = sorted(set(roles)) if roles is not None else sorted(admin.roles)
    new_status = status or admin.status
    await repository.set_roles_and_status(
        session, admin.id, roles=new_roles, status=new_status, bump=True
    )
    await session.refresh(admin)
    await audit.record(
        session,
        actor,
        action="admin.update",
        target_type="admin",
        target_id=str(admin.id),
        before=before,
        after=admin_state(admin),
    )
    return admin


async def list_admins(session: AsyncSession, *, offset: int, limit: int) -> list[Admin]:
    """Administrators by login, `limit` of them from `offset`."""
    return list(await repository.admins_page(session, offset=offset, limit=limit))


@dataclass(frozen=True, slots=True)
class AdminLogin:
    admin: Admin
    access_token: str
    expires_in: int


def _login_key(login: str) -> bytes:
    return hashlib.sha256(b"admin-login\x00" + login.encode()).digest()


async def login(
    session: AsyncSession,
    redis: RedisClient,
    keyring: Keyring,
    server_key: str,
    *,
    login: str,
    password: str,
    code: str,
    address: str,
    request_id: str | None = None,
    now: datetime | None = None,
) -> AdminLogin:
    """Password and a one-time code, both right, or one undifferentiated 401."""
    moment = now or datetime.now(UTC)
    throttle_key = _login_key(login)
    await THROTTLE.attempt(redis, throttle_key, address)
    admin = await repository.by_login(session, login)
    if admin is None:
        await PASSWORDS.verify_nothing(password)
        raise AdminLoginFailedError()
    password_ok = await PASSWORDS.verify(admin.password_hash, password)
    secret = totp.derive_secret(server_key, admin.id, admin.totp_salt)
    step = totp.matching_step(secret, code, moment, admin.totp_last_step)
    if not password_ok or step is None or admin.status != "active":
        raise AdminLoginFailedError()
    if not await repository.use_totp_step(session, admin.id, step):
        raise AdminLoginFailedError()
    await THROTTLE.succeeded(redis, throttle_key, address)
    await audit.record(
        session,
        audit.Actor(admin.id, admin.login, sorted(admin.roles)[0], request_id),
        action="admin.login",
        target_type="admin",
        target_id=str(admin.id),
        now=moment,
    )
    token = mint_admin_token(
        keyring, admin_id=admin.id, generation=admin.token_generation, now=moment
    )
    return AdminLogin(admin, token, int(ADMIN_TOKEN_TTL.total_seconds()))
