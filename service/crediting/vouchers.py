"""Claim vouchers (verification tier 2): a partner-signed QR code, credited to who scans it.

The voucher carries one event (no subject: the signed-in participant is the subject) and
its id is the event's external id, so the crediting path's unique (partner, external id)
accepts it once, even when submitted concurrently; another participant presenting the same
voucher gets a conflict.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from points_rules import Registry
from service.crediting.schemas import EventIn, OutcomeOut
from service.crediting.service import CreditingSettings, EventConflictError, ingest
from service.errors import ConflictError, ProblemError
from service.i18n import _
from service.partners.auth import PartnerContext
from service.partners.credentials import subject_hash


class VoucherClaimedError(ConflictError):
    slug = "voucher-already-claimed"
    title = "This voucher was already claimed"


class VoucherInvalidError(ProblemError):
    status = 422
    slug = "voucher-invalid"
    title = "The voucher does not describe a valid action"


async def claim_voucher(
    session: AsyncSession,
    registry: Registry,
    settings: CreditingSettings,
    partner: PartnerContext,
    claims: dict[str, object],
    participant_id: uuid.UUID,
    received_at: datetime,
) -> OutcomeOut:
    """Credit the voucher's event to the participant; the same outcome on a retry."""
    subject_ref = f"participant:{participant_id}"
    body = claims.get("event")
    if not isinstance(body, dict) or body.get("external_id") != claims.get("jti"):
        raise VoucherInvalidError(_("the voucher carries no event, or a different id"))
    try:
        event = EventIn.model_validate({**body, "subject_ref": subject_ref})
    except ValidationError as exc:
        raise VoucherInvalidError(
            _("%(count)s field(s) of the voucher are invalid", count=len(exc.errors()))
        ) from None
    subject = subject_hash(settings.pepper, partner.partner_id, subject_ref)
    (outcome,) = await ingest(
        session,
        registry,
        settings,
        partner,
        [event],
        received_at,
        known_subjects={subject: participant_id},
    )
    if outcome.problem is not None:
        if outcome.problem.get("type", "").endswith("/" + EventConflictError.slug):
            raise VoucherClaimedError(_("someone else already claimed this voucher"))
        raise VoucherInvalidError(str(outcome.problem.get("detail")))
    return outcome
