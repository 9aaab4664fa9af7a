"""The points ledger: double-entry accounts, lots, holds, reversals and a hash chain.

Invariants 1-3, 7 and 9 of PRODUCT.md live here. Operations are in `service`;
all SQL is in `repository`; `verify` recomputes every materialised number from
the append-only facts.
"""

from service.ledger.privacy import (
    PRIVACY_TABLES,
    LedgerExport,
    erase_participant,
    export_participant,
)
from service.ledger.repository import hold_is_live_sql
from service.ledger.repository.pooling import credit_unpooled_and_standing_sql

__all__ = [
    "PRIVACY_TABLES",
    "LedgerExport",
    "credit_unpooled_and_standing_sql",
    "erase_participant",
    "export_participant",
    "hold_is_live_sql",
]

# The modules other domains may import; the rest (the repository first) are this
# domain's own. `tests/architecture/test_domain_boundaries.py` holds everyone to it.
PUBLIC_MODULES = ("chain", "commands", "errors", "jobs", "privacy", "schemas", "service", "verify")
