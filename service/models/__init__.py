"""SQLAlchemy models; importing this package registers every table on `Base.metadata`."""

from service.models.base import Base
from service.models.ledger import (
    LedgerAccount,
    LedgerHold,
    LedgerHoldResolution,
    LedgerLot,
    LedgerLotMovement,
    LedgerPosting,
    LedgerTransaction,
)
from service.models.participant import Participant, ParticipantKind

__all__ = [
    "Base",
    "LedgerAccount",
    "LedgerHold",
    "LedgerHoldResolution",
    "LedgerLot",
    "LedgerLotMovement",
    "LedgerPosting",
    "LedgerTransaction",
    "Participant",
    "ParticipantKind",
]
