"""What the ledger holds about a participant (export), and why erasure keeps all of it.

Erasure (PIPL) leaves every ledger row in place: accounts, postings, lots and holds are
append-only facts under a hash chain (invariant 7), and the participant id they are filed
under is a pseudonym once the participants and accounts domains have erased the person. So
`erase_participant` writes nothing: it is here so that privacy asks every domain alike, and so
that this decision is written where the ledger's tables are.

The statements are the repository's (`repository/reads.py`), typed records out.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from service.ledger import repository as repo
from service.ledger.repository.reads import AccountRecord, HoldRecord, LotRecord, PostingRecord
from service.privacy import PrivacyTables

# The transactions' kind and request go out with their postings. Nothing is erased.
PRIVACY_TABLES: Final = PrivacyTables(
    exported={
        "ledger_accounts": "accounts",
        "ledger_postings": "postings",
        "ledger_transactions": "postings",
        "ledger_lots": "lots",
        "ledger_holds": "holds",
    }
)


@dataclass(frozen=True, slots=True)
class LedgerExport:
    accounts: list[AccountRecord]
    postings: list[PostingRecord]
    lots: list[LotRecord]
    holds: list[HoldRecord]


async def export_participant(session: AsyncSession, participant_id: uuid.UUID) -> LedgerExport:
    """Every account of the participant, with its postings, lots and holds. Four statements."""
    accounts = await repo.participant_accounts(session, participant_id)
    account_ids = [account.id for account in accounts]
    postings = await repo.postings_of_accounts(session, account_ids)
    lots = await repo.lots_of_accounts(session, account_ids)
    holds = await repo.holds_of_accounts(session, account_ids)
    return LedgerExport(accounts=accounts, postings=postings, lots=lots, holds=holds)


async def erase_participant(session: AsyncSession, participant_id: uuid.UUID) -> None:
    """Nothing to erase: the ledger's rows stay, under the participant id as a pseudonym,
    so every balance, chain and `ledger verify` holds before and after."""
