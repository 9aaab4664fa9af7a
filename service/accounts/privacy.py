"""What the accounts domain holds about a person (export), and what erasure removes.

Erasure clears the login and password hashes (so the login name can be registered again),
ends every session and access token, and removes the person's memberships. The user row
stays, marked erased, because the participant it belongs to stays as the ledger's pseudonym.
Organisations are businesses with their own points accounts: they stay.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from service.accounts import repository
from service.accounts.repository import MembershipRecord, SessionRecord
from service.privacy import PrivacyTables

# An organisation is listed through the person's membership of it.
PRIVACY_TABLES: Final = PrivacyTables(
    exported={
        "users": "user",
        "organisation_members": "organisations",
        "organisations": "organisations",
        "refresh_tokens": "sessions",
    },
    erased=frozenset({"users", "organisation_members", "refresh_tokens"}),
)


@dataclass(frozen=True, slots=True)
class UserExport:
    id: uuid.UUID
    created_at: datetime
    login_name: str = "not stored: only a keyed hash is kept, to find you at login"


@dataclass(frozen=True, slots=True)
class AccountsExport:
    user: UserExport
    organisations: list[MembershipRecord]
    sessions: list[SessionRecord]


async def export_user(session: AsyncSession, user_id: uuid.UUID) -> AccountsExport | None:
    """The user, their memberships and their sessions; None for an unknown user."""
    user = await repository.user_record(session, user_id)
    if user is None:
        return None
    return AccountsExport(
        user=UserExport(id=user.id, created_at=user.created_at),
        organisations=await repository.membership_records(session, user_id),
        sessions=await repository.session_records(session, user_id),
    )


async def erase_user(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    """Sessions first, then the user row: the order logging out everywhere takes them in."""
    await repository.delete_refresh_tokens(session, user_id)
    await repository.delete_memberships(session, user_id)
    await repository.erase_user(session, user_id, now)
