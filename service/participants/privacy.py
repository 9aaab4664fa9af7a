"""Export and erasure (China's PIPL): everything stored about a person, and then nothing.

Each domain exports and erases its own tables, through its own functions; this module only
asks them, in the request's one transaction, in one fixed order, and assembles the document:

- participants (`service`): the participant and the link tokens used; erasure renames the
  participant;
- accounts (`privacy`): the user, memberships, sessions; erasure clears the login and password
  hashes, ends every token, deletes the sessions and memberships;
- crediting (`privacy`): identity links, events, credits, cap usage; erasure deletes the
  identity links and keeps the rest;
- ledger (`privacy`): accounts, postings, lots, holds; kept;
- redemption (`privacy`): redemptions, redemption codes; erasure deletes the codes;
- review (`privacy`): flagged credits and their decisions; kept, reviewers' notes cleared.

Erasure keeps the ledger whole: credits, postings and lots stay under the participant id,
which from then on is a pseudonym that nothing connects to a person. `ledger verify` passes
before and after.

The order above is the lock order: the participant's row is the first row erasure locks, so
two erasures of one person queue on it rather than meet half-way; the accounts domain then
takes the sessions before the user row, the order logging out everywhere takes them in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from service import ledger
from service.accounts import privacy as accounts
from service.crediting import privacy as crediting
from service.participants import service as participants
from service.privacy import PrivacyTables
from service.redemption import privacy as redemption
from service.review import privacy as review

ERASED_NAME = participants.ERASED_NAME

# Every domain that holds rows about a person, in the order export and erasure ask them.
DOMAINS: Final[dict[str, PrivacyTables]] = {
    "participants": participants.PRIVACY_TABLES,
    "accounts": accounts.PRIVACY_TABLES,
    "crediting": crediting.PRIVACY_TABLES,
    "ledger": ledger.PRIVACY_TABLES,
    "redemption": redemption.PRIVACY_TABLES,
    "review": review.PRIVACY_TABLES,
}

# The document's sections in order, each with the domain (a field of `PrivacyExport`) whose
# export holds it, under the same name.
SECTIONS: Final = (
    ("participant", "participants"),
    ("user", "accounts"),
    ("organisations", "accounts"),
    ("sessions", "accounts"),
    ("identity_links", "crediting"),
    ("events", "crediting"),
    ("credits", "crediting"),
    ("accounts", "ledger"),
    ("postings", "ledger"),
    ("lots", "ledger"),
    ("holds", "ledger"),
    ("redemptions", "redemption"),
    ("cap_usage", "crediting"),
    ("link_tokens_used", "participants"),
    ("redemption_codes", "redemption"),
    ("reviews", "review"),
)


@dataclass(frozen=True, slots=True)
class PrivacyExport:
    """Every domain's export of one person."""

    participants: participants.ParticipantExport
    accounts: accounts.AccountsExport
    crediting: crediting.CreditingExport
    ledger: ledger.LedgerExport
    redemption: redemption.RedemptionExport
    review: review.ReviewExport

    def to_json(self) -> dict[str, Any]:
        """The document: its sections in order, ids and times as text, hashes as hex."""
        return {
            section: _json(getattr(getattr(self, domain), section)) for section, domain in SECTIONS
        }


def _json(value: object) -> object:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, list):
        return [_json(item) for item in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value  # numbers, text, None, and JSON documents as stored


async def export(
    session: AsyncSession, user_id: uuid.UUID, participant_id: uuid.UUID
) -> PrivacyExport:
    """Every row stored about the person, from each domain that holds some."""
    own = await participants.export_participant(session, participant_id)
    account = await accounts.export_user(session, user_id)
    if own is None or account is None:
        raise LookupError("no such user")
    return PrivacyExport(
        participants=own,
        accounts=account,
        crediting=await crediting.export_participant(session, participant_id),
        ledger=await ledger.export_participant(session, participant_id),
        redemption=await redemption.export_participant(session, participant_id),
        review=await review.export_participant(session, participant_id),
    )


async def erase(
    session: AsyncSession, user_id: uuid.UUID, participant_id: uuid.UUID, now: datetime
) -> None:
    """Erase the person; keep the ledger under the participant id as a pseudonym."""
    await participants.erase_participant(session, participant_id, now)
    await accounts.erase_user(session, user_id, now)
    await crediting.erase_participant(session, participant_id)
    await ledger.erase_participant(session, participant_id)
    await redemption.erase_participant(session, participant_id)
    await review.erase_participant(session, participant_id)
