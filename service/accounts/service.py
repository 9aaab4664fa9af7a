"""Registration, login, token rotation, logout, organisations.

Functions take the session first and never commit: the request's session dependency
owns the transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from service.accounts import repository
from service.accounts.errors import (
    AlreadyAMemberError,
    InvalidCredentialsError,
    LoginTakenError,
    NotAMemberError,
    OwnerRequiredError,
    RefreshTokenInvalidError,
    RefreshTokenReusedError,
    UserNotFoundError,
)
from service.accounts.logins import login_hash
from service.accounts.passwords import PASSWORDS, PasswordHashing
from service.accounts.repository import Membership
from service.accounts.throttle import LoginThrottle
from service.accounts.tokens import (
    ACCESS_TOKEN_TTL,
    REFRESH_TOKEN_TTL,
    Keyring,
    mint_access_token,
    new_refresh_token,
    refresh_token_hash,
)
from service.i18n import _
from service.models import ParticipantKind
from service.observability import get_logger
from service.participants import service as participants

_log = get_logger("carbon_points.accounts")
DEFAULT_THROTTLE = LoginThrottle()


@dataclass(frozen=True, slots=True)
class AccountsSettings:
    pepper: str = field(repr=False)
    keyring: Keyring
    access_ttl: timedelta = ACCESS_TOKEN_TTL
    refresh_ttl: timedelta = REFRESH_TOKEN_TTL
    passwords: PasswordHashing = PASSWORDS
    throttle: LoginThrottle = DEFAULT_THROTTLE


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    user_id: uuid.UUID
    participant_id: uuid.UUID
    access_token: str
    access_ttl: timedelta
    refresh_token: str = field(repr=False)
    refresh_ttl: timedelta


async def _issue(
    session: AsyncSession,
    settings: AccountsSettings,
    *,
    user_id: uuid.UUID,
    participant_id: uuid.UUID,
    generation: int,
    family_id: uuid.UUID,
    now: datetime,
) -> IssuedTokens:
    refresh = new_refresh_token()
    await repository.insert_refresh_token(
        session,
        token_hash=refresh_token_hash(refresh),
        user_id=user_id,
        family_id=family_id,
        issued_at=now,
        expires_at=now + settings.refresh_ttl,
    )
    access = mint_access_token(
        settings.keyring,
        user_id=user_id,
        participant_id=participant_id,
        generation=generation,
        now=now,
        ttl=settings.access_ttl,
    )
    return IssuedTokens(
        user_id, participant_id, access, settings.access_ttl, refresh, settings.refresh_ttl
    )


async def register(
    session: AsyncSession,
    settings: AccountsSettings,
    *,
    login: str,
    password: str,
    display_name: str,
    region: str | None,
) -> IssuedTokens:
    """A citizen: a participant (their points account) and a user; signed in at once."""
    key = login_hash(settings.pepper, login)
    if await repository.login_taken(session, key):
        raise LoginTakenError(_("this login name is registered already; log in instead"))
    password_hash = await settings.passwords.hash(password)
    participant_id, user_id = uuid.uuid4(), uuid.uuid4()
    await participants.create_participant(
        session,
        participant_id,
        kind=ParticipantKind.CITIZEN,
        display_name=display_name,
        region=region,
    )
    inserted = await repository.insert_user(
        session,
        user_id,
        participant_id=participant_id,
        login_hash=key,
        password_hash=password_hash,
    )
    if not inserted:
        raise LoginTakenError(_("this login name is registered already; log in instead"))
    _log.info("user_registered", user_id=str(user_id))
    return await _issue(
        session,
        settings,
        user_id=user_id,
        participant_id=participant_id,
        generation=0,
        family_id=uuid.uuid4(),
        now=datetime.now(UTC),
    )


async def login(
    session: AsyncSession,
    redis: Redis,
    settings: AccountsSettings,
    *,
    login: str,
    password: str,
    address: str,
) -> IssuedTokens:
    """Tokens of a new family, or InvalidCredentialsError whether the login exists or not."""
    key = login_hash(settings.pepper, login)
    await settings.throttle.attempt(redis, key, address)
    user = await repository.user_by_login_hash(session, key)
    if user is None:
        await settings.passwords.verify_nothing(password)
        _log.info("login_failed")
        raise InvalidCredentialsError(_("the login name or the password is wrong"))
    if not await settings.passwords.verify(user.password_hash, password):
        _log.info("login_failed")
        raise InvalidCredentialsError(_("the login name or the password is wrong"))
    await settings.throttle.succeeded(redis, key, address)
    if settings.passwords.needs_rehash(user.password_hash):
        await repository.set_password_hash(
            session, user.id, await settings.passwords.hash(password)
        )
    _log.info("login_succeeded", user_id=str(user.id))
    return await _issue(
        session,
        settings,
        user_id=user.id,
        participant_id=user.participant_id,
        generation=user.token_generation,
        family_id=uuid.uuid4(),
        now=datetime.now(UTC),
    )


async def refresh(
    session: AsyncSession, settings: AccountsSettings, *, refresh_token: str
) -> IssuedTokens:
    """Rotate: the token is spent and its successor issued in the same family.

    A token presented a second time means two parties hold it: the whole family is
    revoked and RefreshTokenReusedError raised. That revocation must be committed
    although the request fails: the caller returns the error instead of raising it.
    """
    token_hash = refresh_token_hash(refresh_token)
    now = datetime.now(UTC)
    used = await repository.use_refresh_token(session, token_hash, now)
    if used is None:
        state = await repository.refresh_token_state(session, token_hash)
        if state is not None and state.used_at is not None and state.revoked_at is None:
            await repository.revoke_family(session, state.family_id, now)
            _log.warning(
                "refresh_token_reused", user_id=str(state.user_id), family_id=str(state.family_id)
            )
            raise RefreshTokenReusedError(
                _("this refresh token was used before; every session it belongs to is revoked")
            )
        raise RefreshTokenInvalidError(_("the refresh token is unknown, expired or revoked"))
    user = await repository.user_by_id(session, used.user_id)
    if user is None or user.erased_at is not None:
        raise RefreshTokenInvalidError(_("the refresh token is unknown, expired or revoked"))
    return await _issue(
        session,
        settings,
        user_id=used.user_id,
        participant_id=user.participant_id,
        generation=user.token_generation,
        family_id=used.family_id,
        now=now,
    )


async def logout(session: AsyncSession, *, refresh_token: str) -> None:
    """Revoke the token's family. Unknown tokens are ignored: logging out is idempotent."""
    state = await repository.refresh_token_state(session, refresh_token_hash(refresh_token))
    if state is not None:
        await repository.revoke_family(session, state.family_id, datetime.now(UTC))


async def logout_everywhere(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Revoke every family of the user and every access token issued so far."""
    await repository.revoke_all_families(session, user_id, datetime.now(UTC))
    await repository.next_token_generation(session, user_id)
    _log.info("logged_out_everywhere", user_id=str(user_id))


@dataclass(frozen=True, slots=True)
class Profile:
    id: uuid.UUID
    participant_id: uuid.UUID
    display_name: str
    region: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OrganisationView:
    participant_id: uuid.UUID
    name: str
    region: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Member:
    user_id: uuid.UUID
    display_name: str
    role: str
    added_at: datetime


async def me(session: AsyncSession, user_id: uuid.UUID) -> tuple[Profile, list[Membership]]:
    """The user's profile (its name and region are the participant's) and organisations."""
    user = await repository.user_row(session, user_id)
    if user is None:  # the caller's token was checked against this row moments ago
        raise UserNotFoundError(_("no such user"))
    label = (await participants.participant_labels(session, [user.participant_id]))[
        user.participant_id
    ]
    profile = Profile(
        user.id, user.participant_id, label.display_name, label.region, user.created_at
    )
    return profile, await repository.memberships(session, user_id)


async def create_organisation(
    session: AsyncSession, *, owner: uuid.UUID, name: str, region: str | None
) -> uuid.UUID:
    """A business participant (its own points account) whose first owner is `owner`."""
    organisation_id = uuid.uuid4()
    await participants.create_participant(
        session, organisation_id, kind=ParticipantKind.BUSINESS, display_name=name, region=region
    )
    await repository.insert_organisation(session, organisation_id, name=name, created_by=owner)
    await repository.insert_member(session, organisation_id, owner, "owner")
    _log.info("organisation_created", organisation_id=str(organisation_id), user_id=str(owner))
    return organisation_id


# The token check's one read (every authenticated app request), the repository's own function:
# no wrapper on the hot path.
user_token_state = repository.user_by_id


async def role_in(
    session: AsyncSession, organisation_id: uuid.UUID, user_id: uuid.UUID
) -> str | None:
    """`owner`, `member`, or None (not a member, or no such organisation)."""
    return await repository.role_in(session, organisation_id, user_id)


async def require_role(
    session: AsyncSession, organisation_id: uuid.UUID, user_id: uuid.UUID, *roles: str
) -> str:
    """The user's role; NotAMemberError (also for an unknown organisation: no existence
    oracle) or OwnerRequiredError when the role is not one of `roles`."""
    role = await role_in(session, organisation_id, user_id)
    if role is None:
        raise NotAMemberError(_("you are not a member of this organisation"))
    if roles and role not in roles:
        raise OwnerRequiredError(_("only an owner of the organisation may do this"))
    return role


async def add_member(
    session: AsyncSession,
    settings: AccountsSettings,
    *,
    organisation_id: uuid.UUID,
    by: uuid.UUID,
    login: str,
    role: str,
) -> uuid.UUID:
    await require_role(session, organisation_id, by, "owner")
    user = await repository.user_by_login_hash(session, login_hash(settings.pepper, login))
    if user is None:
        raise UserNotFoundError(_("no user is registered with this login name"))
    if not await repository.insert_member(session, organisation_id, user.id, role):
        raise AlreadyAMemberError(_("this user is a member of the organisation already"))
    _log.info(
        "organisation_member_added",
        organisation_id=str(organisation_id),
        user_id=str(user.id),
        role=role,
    )
    return uuid.UUID(str(user.id))


async def organisation(
    session: AsyncSession, *, organisation_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[OrganisationView, str, list[Member]]:
    role = await require_role(session, organisation_id, user_id)
    row = await repository.organisation(session, organisation_id)
    if row is None:  # a member's organisation exists (the memberships' foreign key)
        raise NotAMemberError(_("you are not a member of this organisation"))
    members = await repository.members(session, organisation_id)
    labels = await participants.participant_labels(
        session, {organisation_id, *(member.participant_id for member in members)}
    )
    view = OrganisationView(
        row.participant_id, row.name, labels[organisation_id].region, row.created_at
    )
    return (
        view,
        role,
        [
            Member(m.user_id, labels[m.participant_id].display_name, m.role, m.added_at)
            for m in members
        ],
    )
