"""The admin API's partners and merchants (`/v1/admin/partners`, `/v1/admin/merchants`):
create with a first key, issue, rotate and revoke keys, suspend and reinstate; role
`program-admin` (auditors read the lists). Every act is in the audit trail.

A revoked key, a rotated merchant key and a suspension take effect in this process at once
(its caches are cleared) and in the others within their cache's few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from service.admin import merchants as merchant_admin
from service.admin import partners as partner_admin
from service.admin.dependencies import AdminPrincipal, require
from service.admin.schemas import (
    IssuedMerchantKeyOut,
    IssuedPartnerKeyOut,
    MerchantCreatedOut,
    MerchantIn,
    MerchantKeyIn,
    MerchantKeyOut,
    MerchantOut,
    MerchantPageOut,
    MerchantRotatedOut,
    PartnerCreatedOut,
    PartnerIn,
    PartnerKeyOut,
    PartnerOut,
    PartnerPageOut,
    PartnerRotatedOut,
    PartnerRotateIn,
)
from service.db import DbSession
from service.dependencies import AppSecrets
from service.fields import CODE_PATTERN, Limit
from service.merchants.auth import MerchantKeyCache, MerchantKeys
from service.models import Merchant, MerchantApiKey, Partner, PartnerCredential
from service.partners.auth import CredentialCache, PartnerCredentials

router = APIRouter()  # included by service.admin.endpoints, under /v1/admin
PARTNERS = "admin-partners"
MERCHANTS = "admin-merchants"

ProgramAdmin = Annotated[AdminPrincipal, Depends(require("program-admin"))]
Reader = Annotated[AdminPrincipal, Depends(require("program-admin", "auditor"))]
Code = Annotated[str, Path(pattern=CODE_PATTERN, description="the partner's or merchant's code")]
KeyId = Annotated[str, Path(pattern=r"^[a-z]{2}_[0-9a-f]{1,37}$", description="`pk_...`, `mk_...`")]
CodeCursor = Annotated[
    str | None,
    Query(
        pattern=CODE_PATTERN,
        description="The `next_cursor` of the previous page; absent for the first page.",
    ),
]


def _partner_out(partner: Partner) -> PartnerOut:
    return PartnerOut(
        id=partner.id,
        code=partner.code,
        name=partner.name,
        kind=partner.kind,
        action_types=sorted(partner.allowed_action_types),
        region=partner.region,
        status=partner.status,  # a CHECK keeps it one of the two
        rate_limit_per_second=partner.rate_limit_per_second,
        created_at=partner.created_at,
    )


def _partner_key_out(key: PartnerCredential) -> PartnerKeyOut:
    return PartnerKeyOut(
        key_id=key.key_id,
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
    )


def _merchant_out(merchant: Merchant) -> MerchantOut:
    return MerchantOut(
        id=merchant.id,
        code=merchant.code,
        name=merchant.name,
        region=merchant.region,
        status=merchant.status,  # a CHECK keeps it one of the two
        created_at=merchant.created_at,
    )


def _merchant_key_out(key: MerchantApiKey) -> MerchantKeyOut:
    return MerchantKeyOut(
        key_id=key.key_id,
        scopes=sorted(key.scopes),
        terminal_id=key.terminal_id,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


@dataclass(frozen=True, slots=True)
class _Keys:
    """What a key or status act needs: the server key (secrets are derived from it) and the
    processes' key caches, cleared so this process sees the act at once (others within the
    caches' 5 s)."""

    server_key: str
    partner_keys: CredentialCache
    merchant_keys: MerchantKeyCache


async def _keys(
    secrets: AppSecrets, partner_keys: PartnerCredentials, merchant_keys: MerchantKeys
) -> _Keys:
    return _Keys(secrets.partner_secret_key, partner_keys, merchant_keys)


Keys = Annotated[_Keys, Depends(_keys)]


# --- partners ---------------------------------------------------------------------------------


@router.get(
    "/partners", response_model=PartnerPageOut, tags=[PARTNERS], summary="Partners, by code"
)
async def list_partners(
    admin: Reader, session: DbSession, cursor: CodeCursor = None, limit: Limit = 50
) -> PartnerPageOut:
    rows, next_cursor = await partner_admin.list_partners(session, cursor=cursor, limit=limit)
    return PartnerPageOut(items=[_partner_out(p) for p in rows], next_cursor=next_cursor)


@router.post(
    "/partners",
    status_code=status.HTTP_201_CREATED,
    response_model=PartnerCreatedOut,
    tags=[PARTNERS],
    summary="Create a partner and its first signing key (the secret is shown once)",
)
async def create_partner(
    body: PartnerIn, admin: ProgramAdmin, keys: Keys, session: DbSession
) -> PartnerCreatedOut:
    done = await partner_admin.create_partner(
        session,
        keys.server_key,
        admin.actor,
        code=body.code,
        name=body.name,
        kind=body.kind,
        action_types=body.action_types,
        region=body.region,
        rate_limit_per_second=body.rate_limit_per_second,
    )
    return PartnerCreatedOut(
        **_partner_out(done.partner).model_dump(),
        key=IssuedPartnerKeyOut(key_id=done.key.key_id, secret=done.key.secret),
    )


@router.post(
    "/partners/{code}/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=IssuedPartnerKeyOut,
    tags=[PARTNERS],
    summary="Issue another signing key (the secret is shown once)",
)
async def issue_partner_key(
    code: Code, admin: ProgramAdmin, keys: Keys, session: DbSession
) -> IssuedPartnerKeyOut:
    issued = await partner_admin.issue_key(session, keys.server_key, admin.actor, code)
    return IssuedPartnerKeyOut(key_id=issued.key_id, secret=issued.secret)


@router.post(
    "/partners/{code}/keys/{key_id}/rotate",
    status_code=status.HTTP_201_CREATED,
    response_model=PartnerRotatedOut,
    tags=[PARTNERS],
    summary="Issue a successor key; the old one works for the overlap, then stops",
)
async def rotate_partner_key(
    code: Code,
    key_id: KeyId,
    body: PartnerRotateIn,
    admin: ProgramAdmin,
    keys: Keys,
    session: DbSession,
) -> PartnerRotatedOut:
    done = await partner_admin.rotate_key(
        session,
        keys.server_key,
        admin.actor,
        code,
        key_id,
        overlap=timedelta(hours=body.overlap_hours),
        now=datetime.now(UTC),
    )
    keys.partner_keys.clear()
    return PartnerRotatedOut(
        key=IssuedPartnerKeyOut(key_id=done.key.key_id, secret=done.key.secret),
        previous=_partner_key_out(done.previous),
    )


@router.post(
    "/partners/{code}/keys/{key_id}/revoke",
    response_model=PartnerKeyOut,
    tags=[PARTNERS],
    summary="Stop a signing key now",
)
async def revoke_partner_key(
    code: Code, key_id: KeyId, admin: ProgramAdmin, keys: Keys, session: DbSession
) -> PartnerKeyOut:
    key = await partner_admin.revoke_key(session, admin.actor, code, key_id, now=datetime.now(UTC))
    keys.partner_keys.clear()
    return _partner_key_out(key)


@router.post(
    "/partners/{code}/suspend",
    response_model=PartnerOut,
    tags=[PARTNERS],
    summary="Suspend a partner: every request it signs is refused (403 partner-suspended)",
)
async def suspend_partner(
    code: Code, admin: ProgramAdmin, keys: Keys, session: DbSession
) -> PartnerOut:
    partner = await partner_admin.set_status(session, admin.actor, code, "suspended")
    keys.partner_keys.clear()
    return _partner_out(partner)


@router.post(
    "/partners/{code}/reinstate",
    response_model=PartnerOut,
    tags=[PARTNERS],
    summary="Reinstate a suspended partner",
)
async def reinstate_partner(
    code: Code, admin: ProgramAdmin, keys: Keys, session: DbSession
) -> PartnerOut:
    partner = await partner_admin.set_status(session, admin.actor, code, "active")
    keys.partner_keys.clear()
    return _partner_out(partner)


# --- merchants --------------------------------------------------------------------------------


@router.get(
    "/merchants", response_model=MerchantPageOut, tags=[MERCHANTS], summary="Merchants, by code"
)
async def list_merchants(
    admin: Reader, session: DbSession, cursor: CodeCursor = None, limit: Limit = 50
) -> MerchantPageOut:
    rows, next_cursor = await merchant_admin.list_merchants(session, cursor=cursor, limit=limit)
    return MerchantPageOut(items=[_merchant_out(m) for m in rows], next_cursor=next_cursor)


@router.post(
    "/merchants",
    status_code=status.HTTP_201_CREATED,
    response_model=MerchantCreatedOut,
    tags=[MERCHANTS],
    summary="Create a merchant and its first API key (redeem, refund, settlement; shown once)",
)
async def create_merchant(
    body: MerchantIn, admin: ProgramAdmin, session: DbSession
) -> MerchantCreatedOut:
    done = await merchant_admin.create_merchant(
        session, admin.actor, code=body.code, name=body.name, region=body.region
    )
    return MerchantCreatedOut(
        **_merchant_out(done.merchant).model_dump(),
        key=IssuedMerchantKeyOut(key_id=done.key.key_id, token=done.key.token, scopes=done.scopes),
    )


@router.post(
    "/merchants/{code}/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=IssuedMerchantKeyOut,
    tags=[MERCHANTS],
    summary="Issue another API key with chosen scopes (the token is shown once)",
)
async def issue_merchant_key(
    code: Code, body: MerchantKeyIn, admin: ProgramAdmin, session: DbSession
) -> IssuedMerchantKeyOut:
    issued = await merchant_admin.issue_key(session, admin.actor, code, list(body.scopes))
    return IssuedMerchantKeyOut(
        key_id=issued.key.key_id, token=issued.key.token, scopes=issued.scopes
    )


@router.post(
    "/merchants/{code}/keys/{key_id}/rotate",
    status_code=status.HTTP_201_CREATED,
    response_model=MerchantRotatedOut,
    tags=[MERCHANTS],
    summary="Issue a successor with the same scopes and terminal; the old key stops now",
)
async def rotate_merchant_key(
    code: Code, key_id: KeyId, admin: ProgramAdmin, keys: Keys, session: DbSession
) -> MerchantRotatedOut:
    done = await merchant_admin.rotate_key(
        session, admin.actor, code, key_id, now=datetime.now(UTC)
    )
    keys.merchant_keys.clear()
    return MerchantRotatedOut(
        key=IssuedMerchantKeyOut(
            key_id=done.key.key.key_id, token=done.key.key.token, scopes=done.key.scopes
        ),
        previous=_merchant_key_out(done.previous),
    )


@router.post(
    "/merchants/{code}/keys/{key_id}/revoke",
    response_model=MerchantKeyOut,
    tags=[MERCHANTS],
    summary="Stop an API key now",
)
async def revoke_merchant_key(
    code: Code, key_id: KeyId, admin: ProgramAdmin, keys: Keys, session: DbSession
) -> MerchantKeyOut:
    key = await merchant_admin.revoke_key(session, admin.actor, code, key_id, now=datetime.now(UTC))
    keys.merchant_keys.clear()
    return _merchant_key_out(key)


@router.post(
    "/merchants/{code}/suspend",
    response_model=MerchantOut,
    tags=[MERCHANTS],
    summary="Suspend a merchant: its keys are refused (403 merchant-suspended)",
)
async def suspend_merchant(
    code: Code, admin: ProgramAdmin, keys: Keys, session: DbSession
) -> MerchantOut:
    merchant = await merchant_admin.set_status(session, admin.actor, code, "suspended")
    keys.merchant_keys.clear()
    return _merchant_out(merchant)


@router.post(
    "/merchants/{code}/reinstate",
    response_model=MerchantOut,
    tags=[MERCHANTS],
    summary="Reinstate a suspended merchant",
)
async def reinstate_merchant(
    code: Code, admin: ProgramAdmin, keys: Keys, session: DbSession
) -> MerchantOut:
    merchant = await merchant_admin.set_status(session, admin.actor, code, "active")
    keys.merchant_keys.clear()
    return _merchant_out(merchant)
