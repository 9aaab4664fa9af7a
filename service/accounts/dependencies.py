"""Who is calling the app API: the `CurrentUser` dependency other domains use.

Usage in an endpoint::

    from service.accounts.dependencies import CurrentUser
    from service.db import AppReader, DbSession, Reader

    @router.get("/v1/app/balance")
    async def balance(user: CurrentUser, session: DbSession) -> BalanceOut:
        # user.user_id, user.participant_id (the citizen's own points account)
        ...

    @router.get("/v1/app/organisations/{organisation_id}/balance")
    async def organisation_balance(
        organisation_id: uuid.UUID, user: CurrentUser, session: DbSession
    ) -> BalanceOut:
        await user.require_role(session, organisation_id)  # 403 not-a-member
        ...

The dependency reads `Authorization: Bearer <access token>`, verifies the JWT
(HS256 only, known `kid`, signature, expiry, `typ=access`) and checks in the
request's own session that the user still exists, is not erased, and has not
logged out everywhere since the token was issued (the token's `gen` claim must equal
`users.token_generation`: one primary-key read, exact, no cache to go stale). Any
failure is a 401 problem: `token-missing`, `token-expired` or `token-invalid`, with
a `WWW-Authenticate: Bearer` header.

Tests mint tokens through the real endpoints: see `tests/accounts/helpers.py`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from service.accounts import service
from service.accounts.errors import TokenInvalidError, TokenMissingError
from service.accounts.service import AccountsSettings
from service.accounts.tokens import Keyring, verify_access_token
from service.db import AppReader, DbSession, Reader
from service.dependencies import AppSecrets
from service.i18n import _


@dataclass(frozen=True, slots=True)
class AuthenticatedUser:
    """The verified caller of an app request.

    `participant_id` is the user's own (citizen) points account. Organisations have
    their own participant ids; check membership with `role_in` or `require_role`
    before acting on one.
    """

    user_id: uuid.UUID
    participant_id: uuid.UUID
    token_id: str

    async def role_in(self, session: AsyncSession, organisation_id: uuid.UUID) -> str | None:
        """`owner`, `member`, or None (not a member, or no such organisation)."""
        return await service.role_in(session, organisation_id, self.user_id)

    async def require_role(
        self, session: AsyncSession, organisation_id: uuid.UUID, *roles: str
    ) -> str:
        """The user's role in the organisation; 403 `not-a-member` if none, 403
        `owner-required` if `roles` are given and the role is not among them."""
        return await service.require_role(session, organisation_id, self.user_id, *roles)

    async def may_act_for(self, session: AsyncSession, participant_id: uuid.UUID) -> bool:
        """Whether the user may use this points account: their own, or an organisation's
        of which they are a member (any role)."""
        if participant_id == self.participant_id:
            return True
        return await self.role_in(session, participant_id) is not None


def keyring(request: Request) -> Keyring:
    """The JWT keyring, built once from the secrets and settings (tests may replace
    `app.state.jwt_keyring`)."""
    state = request.app.state
    ring: Keyring | None = getattr(state, "jwt_keyring", None)
    if ring is None:
        previous = state.settings.jwt_previous_signing_keys
        ring = Keyring.from_secrets(
            state.secrets.jwt_signing_key,
            [s.strip() for s in previous.get_secret_value().split(",")] if previous else [],
        )
        state.jwt_keyring = ring
    return ring


async def accounts_settings(request: Request, secrets: AppSecrets) -> AccountsSettings:
    return AccountsSettings(pepper=secrets.identifier_pepper, keyring=keyring(request))


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AppAccessToken",
    description="An access token from `POST /v1/app/login` (or register, or refresh).",
)


async def authenticate_user(
    request: Request,
    session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AuthenticatedUser:
    return await _authenticate(request, session, credentials)


async def authenticate_reader(
    request: Request,
    app_reader: AppReader,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AuthenticatedUser:
    return await _authenticate(request, app_reader, credentials)


async def _authenticate(
    request: Request,
    source: AsyncSession | Reader,
    credentials: HTTPAuthorizationCredentials | None,
) -> AuthenticatedUser:
    if credentials is None:
        raise TokenMissingError(_("send Authorization: Bearer <access token>"))
    claims = verify_access_token(keyring(request), credentials.credentials)
    user = await service.user_token_state(source, claims.user_id)
    if (
        user is None
        or user.erased_at is not None
        or user.token_generation != claims.generation
        or user.participant_id != claims.participant_id
    ):
        raise TokenInvalidError(_("the access token was revoked; log in again"))
    # The request's log line names its caller (by id: never a phone number or email).
    structlog.contextvars.bind_contextvars(user_id=str(claims.user_id))
    return AuthenticatedUser(claims.user_id, claims.participant_id, claims.token_id)


CurrentUser = Annotated[AuthenticatedUser, Depends(authenticate_user)]
"""The authenticated app user; 401 problem when the bearer token is missing or invalid."""

CurrentReader = Annotated[AuthenticatedUser, Depends(authenticate_reader)]
"""The same check through the read pool (`AppReader`): for read-only endpoints. Those that
read through it too (`app_reader: AppReader`) share its one connection."""

AccountsConfig = Annotated[AccountsSettings, Depends(accounts_settings)]
