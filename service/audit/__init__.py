"""The audit trail of administrative acts: append-only, hash-chained, verifiable.

Other domains record an act with `record(session, actor, action=..., target=..., before=...,
after=...)` in the same transaction as the act itself, so a rolled-back act leaves no entry
and a committed one always has its entry.
"""

from service.audit.service import Actor, AuditPage, list_entries, record, stream_entries
from service.audit.verify import AuditReport, verify_audit

__all__ = [
    "Actor",
    "AuditPage",
    "AuditReport",
    "list_entries",
    "record",
    "stream_entries",
    "verify_audit",
]

# The modules other domains may import; the rest (the repository first) are this
# domain's own. `tests/architecture/test_domain_boundaries.py` holds everyone to it.
PUBLIC_MODULES = ("chain", "service", "verify")
