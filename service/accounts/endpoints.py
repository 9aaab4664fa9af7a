"""The app API's accounts: registration, login, tokens, organisations."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response, status

from service.accounts import service
from service.accounts.dependencies import AccountsConfig, CurrentUser
from service.accounts.errors import RefreshTokenReusedError
from service.accounts.schemas import (
    LoginIn,
    MemberIn,
    MemberOut,
    MembershipOut,
    MeOut,
    OrganisationIn,
    OrganisationOut,
    RefreshIn,
    RegisterIn,
    TokensOut,
)
from service.db import DbSession
from service.dependencies import RedisClient
from service.errors import problem_response, request_language

router = APIRouter(prefix="/v1/app", tags=["app-accounts"])

_BEARER: dict[int | str, dict[str, Any]] = {
    401: {"description": "Bearer token missing (`token-missing`), expired or invalid"},
}


def _tokens_out(tokens: service.IssuedTokens) -> TokensOut:
    return TokensOut(
        user_id=tokens.user_id,
        participant_id=tokens.participant_id,
        access_token=tokens.access_token,
        expires_in=int(tokens.access_ttl.total_seconds()),
        refresh_token=tokens.refresh_token,
        refresh_expires_in=int(tokens.refresh_ttl.total_seconds()),
    )


def _client_address(request: Request) -> str:
    # Behind a load balancer, run uvicorn with --proxy-headers and --forwarded-allow-ips
    # so this is the client's address, not the balancer's.
    return request.client.host if request.client else "unknown"


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=TokensOut,
    responses={409: {"description": "The login name is registered already (`login-taken`)"}},
    summary="Register a citizen and sign in",
)
async def register(body: RegisterIn, session: DbSession, settings: AccountsConfig) -> TokensOut:
    tokens = await service.register(
        session,
        settings,
        login=body.login,
        password=body.password,
        display_name=body.display_name,
        region=body.region,
    )
    return _tokens_out(tokens)


@router.post(
    "/login",
    response_model=TokensOut,
    responses={
        401: {"description": "Login name or password wrong (`invalid-credentials`)"},
        429: {"description": "Too many failed logins (`login-throttled`, see Retry-After)"},
    },
    summary="Sign in: a new session (refresh-token family)",
)
async def login(
    body: LoginIn,
    request: Request,
    session: DbSession,
    settings: AccountsConfig,
    redis: RedisClient,
) -> TokensOut:
    tokens = await service.login(
        session,
        redis,
        settings,
        login=body.login,
        password=body.password,
        address=_client_address(request),
    )
    return _tokens_out(tokens)


@router.post(
    "/token/refresh",
    response_model=TokensOut,
    responses={
        401: {
            "description": "Refresh token unknown, expired or revoked (`refresh-token-invalid`),"
            " or used before (`refresh-token-reused`: its whole session is revoked)"
        }
    },
    summary="Rotate a refresh token: a new access and refresh token",
)
async def refresh_tokens(
    body: RefreshIn, request: Request, session: DbSession, settings: AccountsConfig
) -> Any:
    try:
        tokens = await service.refresh(session, settings, refresh_token=body.refresh_token)
    except RefreshTokenReusedError as error:
        # Returned, not raised: raising would roll back the family's revocation.
        return problem_response(
            error, getattr(request.state, "request_id", None), request_language(request)
        )
    return _tokens_out(tokens)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="End this session: revoke the refresh token's family",
)
async def logout(body: RefreshIn, session: DbSession) -> Response:
    await service.logout(session, refresh_token=body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/logout-everywhere",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=_BEARER,
    summary="End every session of the user, and every access token issued so far",
)
async def logout_everywhere(user: CurrentUser, session: DbSession) -> Response:
    await service.logout_everywhere(session, user.user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=MeOut, responses=_BEARER, summary="The signed-in user")
async def get_me(user: CurrentUser, session: DbSession) -> MeOut:
    profile, memberships = await service.me(session, user.user_id)
    return MeOut(
        user_id=profile.id,
        participant_id=profile.participant_id,
        display_name=profile.display_name,
        region=profile.region,
        created_at=profile.created_at,
        organisations=[
            MembershipOut(organisation_id=row.participant_id, name=row.name, role=row.role)
            for row in memberships
        ],
    )


async def _organisation_out(
    session: DbSession, user: CurrentUser, organisation_id: uuid.UUID
) -> OrganisationOut:
    row, role, members = await service.organisation(
        session, organisation_id=organisation_id, user_id=user.user_id
    )
    return OrganisationOut(
        organisation_id=row.participant_id,
        participant_id=row.participant_id,
        name=row.name,
        region=row.region,
        created_at=row.created_at,
        your_role=role,
        members=[
            MemberOut(
                user_id=m.user_id, display_name=m.display_name, role=m.role, added_at=m.added_at
            )
            for m in members
        ],
    )


@router.post(
    "/organisations",
    status_code=status.HTTP_201_CREATED,
    response_model=OrganisationOut,
    responses=_BEARER,
    summary="Create an organisation (a business with its own points account); you own it",
)
async def create_organisation(
    body: OrganisationIn, user: CurrentUser, session: DbSession
) -> OrganisationOut:
    organisation_id = await service.create_organisation(
        session, owner=user.user_id, name=body.name, region=body.region
    )
    return await _organisation_out(session, user, organisation_id)


@router.post(
    "/organisations/{organisation_id}/members",
    status_code=status.HTTP_201_CREATED,
    response_model=OrganisationOut,
    responses={
        **_BEARER,
        403: {"description": "Not a member (`not-a-member`) or not an owner (`owner-required`)"},
        404: {"description": "No user with this login name (`user-not-found`)"},
        409: {"description": "Already a member (`already-a-member`)"},
    },
    summary="Add a user to the organisation by login name (owners only)",
)
async def add_organisation_member(
    organisation_id: uuid.UUID,
    body: MemberIn,
    user: CurrentUser,
    session: DbSession,
    settings: AccountsConfig,
) -> OrganisationOut:
    await service.add_member(
        session,
        settings,
        organisation_id=organisation_id,
        by=user.user_id,
        login=body.login,
        role=body.role,
    )
    return await _organisation_out(session, user, organisation_id)


@router.get(
    "/organisations/{organisation_id}",
    response_model=OrganisationOut,
    responses={**_BEARER, 403: {"description": "Not a member (`not-a-member`)"}},
    summary="An organisation you belong to, with its members",
)
async def get_organisation(
    organisation_id: uuid.UUID, user: CurrentUser, session: DbSession
) -> OrganisationOut:
    return await _organisation_out(session, user, organisation_id)
