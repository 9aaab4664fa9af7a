"""SQLAlchemy models, one module per table; importing this package registers them all."""

from service.models.base import Base
from service.models.participant import Participant, ParticipantKind

__all__ = ["Base", "Participant", "ParticipantKind"]
