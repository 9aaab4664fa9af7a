"""A participant's partner identities: linked with a partner-signed token, unlinked at will.

The participant's consent is the act of submitting the token from the app; the partner's
signature proves the identity is theirs. Only a keyed hash of the card or account number is
kept. Linking releases the credits waiting for that identity; unlinking stops crediting
from then on (later events for it wait as pending again).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from integrations import TokenError, read_token, verify_token
from points_rules import Registry
from service.crediting import identity
from service.crediting.schemas import OutcomeOut
from service.crediting.service import CreditingSettings, link_identity
from service.errors import ConflictError, NotFoundError, ProblemError
from service.i18n import _
from service.participants import repository as repo
from service.participants.repository import LinkView
from service.partners.auth import CredentialCache, PartnerContext
from service.partners.service import partner_labels


class PartnerTokenInvalidError(ProblemError):
    status = 422
    slug = "partner-token-invalid"
    title = "The partner's token is invalid or expired"


class PartnerTokenUsedError(ConflictError):
    slug = "partner-token-used"
    title = "This token was already used"


class LinkNotFoundError(NotFoundError):
    slug = "identity-link-not-found"
    title = "Identity link not found"


async def verified_claims(
    cache: CredentialCache,
    sessionmaker: async_sessionmaker[AsyncSession],
    partner_key: str,
    token: str,
    expected_type: str,
    now: datetime,
) -> tuple[PartnerContext, dict[str, object]]:
    """The signing partner and the claims of a partner token, or a 422 problem."""
    try:
        key_id, _, _ = read_token(token)
        credential = await cache.get(sessionmaker, partner_key, key_id)
        if credential is None or credential.revoked or not credential.active:
            raise TokenError("unknown or revoked key")
        if credential.expires_at is not None and credential.expires_at <= now:
            raise TokenError("key past its rotation overlap")
        claims = verify_token(token, credential.secret, expected_type, now=now.timestamp())
    except TokenError as exc:
        raise PartnerTokenInvalidError(str(exc)) from None
    return credential.partner, claims


async def link_with_token(
    session: AsyncSession,
    registry: Registry,
    settings: CreditingSettings,
    partner: PartnerContext,
    claims: dict[str, object],
    participant_id: uuid.UUID,
    now: datetime,
) -> list[OutcomeOut]:
    """Link the token's identity to the participant, once per token."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise PartnerTokenInvalidError(_("the token names no identity"))
    if not await repo.use_partner_token(
        session, partner.partner_id, str(claims["jti"]), participant_id
    ):
        raise PartnerTokenUsedError(_("ask the partner's app for a new link token"))
    return await link_identity(
        session,
        registry,
        settings,
        participant_id=participant_id,
        partner_id=partner.partner_id,
        subject_ref=subject,
        now=now,
    )


async def list_links(
    session: AsyncSession,
    participant_id: uuid.UUID,
    *,
    offset: int = 0,
    limit: int | None = None,
) -> list[LinkView]:
    """The participant's active links, oldest first, with each partner's code and name."""
    links = await identity.active_links(session, participant_id, offset=offset, limit=limit)
    partners = await partner_labels(session, {link.partner_id for link in links})
    return [
        LinkView(
            link.id, partners[link.partner_id].code, partners[link.partner_id].name, link.linked_at
        )
        for link in links
    ]


async def unlink(
    session: AsyncSession, participant_id: uuid.UUID, link_id: int, now: datetime
) -> None:
    """Stop crediting this identity to the participant from now on."""
    if not await identity.end_link(session, participant_id, link_id, now):
        raise LinkNotFoundError(_("no active link %(link_id)s on this account", link_id=link_id))
