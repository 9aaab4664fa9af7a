"""All of the accounts domain's SQL. Functions take the session first and never commit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Select, Table, delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import Reader, reader
from service.models import Organisation, OrganisationMember, RefreshToken, User

_users = cast(Table, User.__table__)
_organisations = cast(Table, Organisation.__table__)
_members = cast(Table, OrganisationMember.__table__)
_refresh = cast(Table, RefreshToken.__table__)


async def login_taken(session: AsyncSession, login_hash: bytes) -> bool:
    found = await session.scalar(select(_users.c.id).where(_users.c.login_hash == login_hash))
    return found is not None


async def insert_user(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    participant_id: uuid.UUID,
    login_hash: bytes,
    password_hash: str,
) -> bool:
    """False when the login hash is taken (a concurrent registration won)."""
    inserted = await session.scalar(
        insert(_users)
        .values(
            id=user_id,
            participant_id=participant_id,
            login_hash=login_hash,
            password_hash=password_hash,
        )
        .on_conflict_do_nothing(index_elements=["login_hash"])
        .returning(_users.c.id)
    )
    return inserted is not None


@dataclass(frozen=True, slots=True)
class LoginUser:
    id: uuid.UUID
    participant_id: uuid.UUID
    # Never None for a live user: the `credentials_until_erased` CHECK.
    password_hash: str
    token_generation: int


async def user_by_login_hash(session: AsyncSession, login_hash: bytes) -> LoginUser | None:
    """A live (not erased) user by login hash, or None."""
    row = (
        await session.execute(
            select(
                _users.c.id,
                _users.c.participant_id,
                _users.c.password_hash,
                _users.c.token_generation,
            ).where(_users.c.login_hash == login_hash, _users.c.erased_at.is_(None))
        )
    ).first()
    return LoginUser(*row) if row is not None else None


# Every authenticated app request runs this.
_USER_BY_ID = "SELECT participant_id, token_generation, erased_at FROM users WHERE id = $1"


@dataclass(frozen=True, slots=True)
class UserTokenState:
    participant_id: uuid.UUID
    token_generation: int
    erased_at: datetime | None


async def user_by_id(source: AsyncSession | Reader, user_id: uuid.UUID) -> UserTokenState | None:
    """What a token is checked against, or None: one primary-key read."""
    rows = await reader(source).rows(_USER_BY_ID, user_id)
    return UserTokenState(*rows[0]) if rows else None


async def set_password_hash(session: AsyncSession, user_id: uuid.UUID, password_hash: str) -> None:
    await session.execute(
        update(_users).where(_users.c.id == user_id).values(password_hash=password_hash)
    )


async def next_token_generation(session: AsyncSession, user_id: uuid.UUID) -> int:
    generation = await session.scalar(
        update(_users)
        .where(_users.c.id == user_id)
        .values(token_generation=_users.c.token_generation + 1)
        .returning(_users.c.token_generation)
    )
    return int(generation or 0)


@dataclass(frozen=True, slots=True)
class UserRow:
    id: uuid.UUID
    participant_id: uuid.UUID
    created_at: datetime


async def user_row(session: AsyncSession, user_id: uuid.UUID) -> UserRow | None:
    """The user's id, participant and registration time."""
    row = (
        await session.execute(
            select(_users.c.id, _users.c.participant_id, _users.c.created_at).where(
                _users.c.id == user_id
            )
        )
    ).first()
    return UserRow(*row) if row is not None else None


def member_participant_ids(organisation_id: uuid.UUID) -> Select[uuid.UUID]:
    """The participants of the organisation's members (users): a statement for the leaderboard
    to filter on (exported by the package; it never runs on its own)."""
    return (
        select(_users.c.participant_id)
        .join(_members, _members.c.user_id == _users.c.id)
        .where(_members.c.organisation_id == organisation_id)
    )


@dataclass(frozen=True, slots=True)
class Membership:
    participant_id: uuid.UUID  # the organisation's
    name: str
    role: str


async def memberships(session: AsyncSession, user_id: uuid.UUID) -> list[Membership]:
    """Every organisation of the user, by name."""
    rows = await session.execute(
        select(_organisations.c.participant_id, _organisations.c.name, _members.c.role)
        .join(_members, _members.c.organisation_id == _organisations.c.participant_id)
        .where(_members.c.user_id == user_id)
        .order_by(_organisations.c.name, _organisations.c.participant_id)
    )
    return [Membership(*row) for row in rows]


# Refresh tokens


async def insert_refresh_token(
    session: AsyncSession,
    *,
    token_hash: bytes,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    issued_at: datetime,
    expires_at: datetime,
) -> None:
    await session.execute(
        insert(_refresh).values(
            token_hash=token_hash,
            user_id=user_id,
            family_id=family_id,
            issued_at=issued_at,
            expires_at=expires_at,
        )
    )


@dataclass(frozen=True, slots=True)
class UsedRefreshToken:
    user_id: uuid.UUID
    family_id: uuid.UUID


async def use_refresh_token(
    session: AsyncSession, token_hash: bytes, now: datetime
) -> UsedRefreshToken | None:
    """Mark a live token used, atomically; its user_id and family_id, or None.

    The row lock makes concurrent uses of one token serial: exactly one succeeds, and
    the others find it used (which is reuse).
    """
    row = (
        await session.execute(
            update(_refresh)
            .where(
                _refresh.c.token_hash == token_hash,
                _refresh.c.used_at.is_(None),
                _refresh.c.revoked_at.is_(None),
                _refresh.c.expires_at > now,
            )
            .values(used_at=now)
            .returning(_refresh.c.user_id, _refresh.c.family_id)
        )
    ).first()
    return UsedRefreshToken(*row) if row is not None else None


@dataclass(frozen=True, slots=True)
class RefreshTokenState:
    user_id: uuid.UUID
    family_id: uuid.UUID
    used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime


async def refresh_token_state(session: AsyncSession, token_hash: bytes) -> RefreshTokenState | None:
    """Where a refresh token stands, used or not, or None for an unknown one."""
    row = (
        await session.execute(
            select(
                _refresh.c.user_id,
                _refresh.c.family_id,
                _refresh.c.used_at,
                _refresh.c.revoked_at,
                _refresh.c.expires_at,
            ).where(_refresh.c.token_hash == token_hash)
        )
    ).first()
    return RefreshTokenState(*row) if row is not None else None


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(_refresh)
        .where(_refresh.c.family_id == family_id, _refresh.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_all_families(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(_refresh)
        .where(_refresh.c.user_id == user_id, _refresh.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


# Organisations


async def insert_organisation(
    session: AsyncSession, participant_id: uuid.UUID, *, name: str, created_by: uuid.UUID
) -> None:
    await session.execute(
        insert(_organisations).values(
            participant_id=participant_id, name=name, created_by=created_by
        )
    )


async def insert_member(
    session: AsyncSession, organisation_id: uuid.UUID, user_id: uuid.UUID, role: str
) -> bool:
    """False when the user is a member already."""
    inserted = await session.scalar(
        insert(_members)
        .values(organisation_id=organisation_id, user_id=user_id, role=role)
        .on_conflict_do_nothing(index_elements=["organisation_id", "user_id"])
        .returning(_members.c.user_id)
    )
    return inserted is not None


async def role_in(
    session: AsyncSession, organisation_id: uuid.UUID, user_id: uuid.UUID
) -> str | None:
    role = await session.scalar(
        select(_members.c.role).where(
            _members.c.organisation_id == organisation_id, _members.c.user_id == user_id
        )
    )
    return str(role) if role is not None else None


@dataclass(frozen=True, slots=True)
class OrganisationRow:
    participant_id: uuid.UUID
    name: str
    created_at: datetime


async def organisation(session: AsyncSession, organisation_id: uuid.UUID) -> OrganisationRow | None:
    row = (
        await session.execute(
            select(
                _organisations.c.participant_id,
                _organisations.c.name,
                _organisations.c.created_at,
            ).where(_organisations.c.participant_id == organisation_id)
        )
    ).first()
    return OrganisationRow(*row) if row is not None else None


@dataclass(frozen=True, slots=True)
class MemberRow:
    user_id: uuid.UUID
    participant_id: uuid.UUID
    role: str
    added_at: datetime


async def members(session: AsyncSession, organisation_id: uuid.UUID) -> list[MemberRow]:
    """Each member of the organisation, owners first."""
    rows = await session.execute(
        select(
            _members.c.user_id,
            _users.c.participant_id,
            _members.c.role,
            _members.c.added_at,
        )
        .join(_users, _users.c.id == _members.c.user_id)
        .where(_members.c.organisation_id == organisation_id)
        .order_by(_members.c.role.desc(), _members.c.added_at, _members.c.user_id)
    )
    return [MemberRow(*row) for row in rows]


# A user's own rows, for export and erasure (privacy)


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: uuid.UUID
    created_at: datetime


@dataclass(frozen=True, slots=True)
class MembershipRecord:
    organisation_id: uuid.UUID
    role: str
    added_at: datetime


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A refresh-token family's member: when it was issued, used, revoked; never the token."""

    family_id: uuid.UUID
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


async def user_record(session: AsyncSession, user_id: uuid.UUID) -> UserRecord | None:
    row = (
        await session.execute(
            select(_users.c.id, _users.c.created_at).where(_users.c.id == user_id)
        )
    ).first()
    return UserRecord(*row) if row is not None else None


async def membership_records(session: AsyncSession, user_id: uuid.UUID) -> list[MembershipRecord]:
    rows = await session.execute(
        select(_members.c.organisation_id, _members.c.role, _members.c.added_at)
        .where(_members.c.user_id == user_id)
        .order_by(_members.c.added_at, _members.c.organisation_id)
    )
    return [MembershipRecord(*row) for row in rows]


async def session_records(session: AsyncSession, user_id: uuid.UUID) -> list[SessionRecord]:
    rows = await session.execute(
        select(
            _refresh.c.family_id,
            _refresh.c.issued_at,
            _refresh.c.expires_at,
            _refresh.c.used_at,
            _refresh.c.revoked_at,
        )
        .where(_refresh.c.user_id == user_id)
        .order_by(_refresh.c.id)
    )
    return [SessionRecord(*row) for row in rows]


async def delete_refresh_tokens(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(delete(_refresh).where(_refresh.c.user_id == user_id))


async def delete_memberships(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(delete(_members).where(_members.c.user_id == user_id))


async def erase_user(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    """Clear the login and password hashes (the login name can be registered again) and end
    every access token issued so far."""
    await session.execute(
        update(_users)
        .where(_users.c.id == user_id)
        .values(
            login_hash=None,
            password_hash=None,
            erased_at=now,
            token_generation=_users.c.token_generation + 1,
        )
    )
