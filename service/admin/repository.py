"""All SQL on `admins`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import Admin

_BOOTSTRAP_LOCK = 0x6164_6D69_6E00  # "admin": two bootstraps at once cannot both see none


async def lock_for_bootstrap(session: AsyncSession) -> None:
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _BOOTSTRAP_LOCK})


async def count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Admin)) or 0)


async def by_id(session: AsyncSession, admin_id: uuid.UUID) -> Admin | None:
    return await session.get(Admin, admin_id)


async def by_login(session: AsyncSession, login: str, *, for_update: bool = False) -> Admin | None:
    query = select(Admin).where(Admin.login == login)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def login_exists(session: AsyncSession, login: str) -> bool:
    return await session.scalar(select(Admin.id).where(Admin.login == login)) is not None


async def add(session: AsyncSession, admin: Admin) -> Admin:
    session.add(admin)
    await session.flush()
    return admin


async def admins_page(session: AsyncSession, *, offset: int, limit: int) -> Sequence[Admin]:
    query = select(Admin).order_by(Admin.login).offset(offset).limit(limit)
    return (await session.execute(query)).scalars().all()


async def use_totp_step(session: AsyncSession, admin_id: uuid.UUID, step: int) -> bool:
    """Record the step a code matched; False if that step (or a later one) was used already
    (two logins racing with one code: only one wins)."""
    result = await session.execute(
        update(Admin)
        .where(Admin.id == admin_id, Admin.totp_last_step < step)
        .values(totp_last_step=step)
        .returning(Admin.id)
    )
    return result.scalar_one_or_none() is not None


async def set_roles_and_status(
    session: AsyncSession, admin_id: uuid.UUID, *, roles: list[str], status: str, bump: bool
) -> None:
    values: dict[str, object] = {"roles": roles, "status": status}
    if bump:
        values["token_generation"] = Admin.token_generation + 1
    await session.execute(update(Admin).where(Admin.id == admin_id).values(**values))
