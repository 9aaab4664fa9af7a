"""Export and erasure (China's PIPL): everything stored about a person, and then nothing.

Erasure removes the personal data (name, region, login hash, password hash, identity
links, memberships, sessions, redemption codes) and keeps the ledger whole: credits,
postings and lots stay under the participant id, which from then on is a pseudonym that
nothing connects to a person. `ledger verify` passes before and after.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import (
    CapUsage,
    Credit,
    IdentityLink,
    LedgerAccount,
    LedgerHold,
    LedgerLot,
    LedgerPosting,
    LedgerTransaction,
    OrganisationMember,
    Participant,
    Partner,
    PartnerEvent,
    PartnerTokenUse,
    Redemption,
    RedemptionToken,
    RefreshToken,
    User,
)

ERASED_NAME = "erased participant"


def _row(obj: Any, *fields: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in fields:
        value = getattr(obj, name)
        if isinstance(value, bytes):
            value = value.hex()
        elif isinstance(value, uuid.UUID | datetime):
            value = str(value) if isinstance(value, uuid.UUID) else value.isoformat()
        out[name] = value
    return out


async def export(
    session: AsyncSession, user_id: uuid.UUID, participant_id: uuid.UUID
) -> dict[str, Any]:
    """Every row stored about the person, as JSON-able data."""
    participant = await session.get(Participant, participant_id)
    user = await session.get(User, user_id)
    if participant is None or user is None:
        raise LookupError("no such user")
    accounts = (
        await session.scalars(select(LedgerAccount).where(LedgerAccount.owner_id == participant_id))
    ).all()
    account_ids = [a.id for a in accounts]
    postings = (
        await session.execute(
            select(LedgerPosting, LedgerTransaction.kind, LedgerTransaction.request)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
            .where(LedgerPosting.account_id.in_(account_ids))
            .order_by(LedgerPosting.id)
        )
    ).all()
    links = (
        await session.execute(
            select(IdentityLink, Partner.code)
            .join(Partner, Partner.id == IdentityLink.partner_id)
            .where(IdentityLink.participant_id == participant_id)
        )
    ).all()
    return {
        "participant": _row(participant, "id", "kind", "display_name", "region", "created_at"),
        "user": {
            **_row(user, "id", "created_at"),
            "login_name": "not stored: only a keyed hash is kept, to find you at login",
        },
        "organisations": [
            _row(m, "organisation_id", "role", "added_at")
            for m in (
                await session.scalars(
                    select(OrganisationMember).where(OrganisationMember.user_id == user_id)
                )
            ).all()
        ],
        "sessions": [
            _row(t, "family_id", "issued_at", "expires_at", "used_at", "revoked_at")
            for t in (
                await session.scalars(select(RefreshToken).where(RefreshToken.user_id == user_id))
            ).all()
        ],
        "identity_links": [
            {**_row(link, "id", "subject_hash", "linked_at", "unlinked_at"), "partner": code}
            for link, code in links
        ],
        "events": [
            _row(
                e,
                "id",
                "external_id",
                "action_type",
                "occurred_at",
                "received_at",
                "region",
                "quantities",
                "place_ids",
                "status",
                "grams",
                "points",
                "methodology_id",
                "methodology_version",
                "reasons",
            )
            for e in (
                await session.scalars(
                    select(PartnerEvent).where(PartnerEvent.participant_id == participant_id)
                )
            ).all()
        ],
        "credits": [
            _row(
                c,
                "event_id",
                "action_type",
                "occurred_at",
                "methodology_id",
                "methodology_version",
                "inputs",
                "usage_before",
                "status",
                "grams",
                "points",
                "transaction_id",
            )
            for c in (
                await session.scalars(select(Credit).where(Credit.participant_id == participant_id))
            ).all()
        ],
        "accounts": [_row(a, "id", "asset", "posted", "held") for a in accounts],
        "postings": [
            {
                **_row(p, "id", "account_id", "asset", "amount", "transaction_id"),
                "kind": kind,
                "request": request,
            }
            for p, kind, request in postings
        ],
        "lots": [
            _row(lot, "id", "amount", "remaining", "expires_at")
            for lot in (
                await session.scalars(
                    select(LedgerLot).where(LedgerLot.account_id.in_(account_ids))
                )
            ).all()
        ],
        "holds": [
            _row(h, "id", "amount", "expires_at", "created_at")
            for h in (
                await session.scalars(
                    select(LedgerHold).where(LedgerHold.account_id.in_(account_ids))
                )
            ).all()
        ],
        "redemptions": [
            _row(r, "id", "merchant_id", "offer_id", "points", "created_at")
            for r in (
                await session.scalars(
                    select(Redemption).where(Redemption.participant_id == participant_id)
                )
            ).all()
        ],
        "cap_usage": [
            _row(u, "usage_key", "grams", "points")
            for u in (
                await session.scalars(
                    select(CapUsage).where(CapUsage.participant_id == participant_id)
                )
            ).all()
        ],
        "link_tokens_used": [
            _row(t, "partner_id", "token_id", "used_at")
            for t in (
                await session.scalars(
                    select(PartnerTokenUse).where(PartnerTokenUse.participant_id == participant_id)
                )
            ).all()
        ],
        "redemption_codes": [
            _row(t, "created_at", "expires_at", "used_at")
            for t in (
                await session.scalars(
                    select(RedemptionToken).where(RedemptionToken.participant_id == participant_id)
                )
            ).all()
        ],
    }


async def erase(
    session: AsyncSession, user_id: uuid.UUID, participant_id: uuid.UUID, now: datetime
) -> None:
    """Erase the person; keep the ledger under the participant id as a pseudonym."""
    await session.execute(
        update(Participant)
        .where(Participant.id == participant_id)
        .values(display_name=ERASED_NAME, region=None, erased_at=now)
    )
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(
            login_hash=None,
            password_hash=None,
            erased_at=now,
            token_generation=User.token_generation + 1,
        )
    )
    await session.execute(delete(RefreshToken).where(RefreshToken.user_id == user_id))
    await session.execute(delete(OrganisationMember).where(OrganisationMember.user_id == user_id))
    await session.execute(delete(IdentityLink).where(IdentityLink.participant_id == participant_id))
    await session.execute(
        delete(RedemptionToken).where(RedemptionToken.participant_id == participant_id)
    )
