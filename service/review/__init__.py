"""Review: flag rules evaluated as events are credited, and the queue where reviewers decide
flagged credits (points held until then; approved releases them, rejected reverses the
credit through the ledger).

Pooling leaves credits under review out by embedding `credit_not_under_review_sql`."""

from service.review.repository import credit_not_under_review_sql

__all__ = ["credit_not_under_review_sql"]

# The modules other domains may import; the rest (the repository first) are this
# domain's own. `tests/architecture/test_domain_boundaries.py` holds everyone to it.
PUBLIC_MODULES = ("endpoints", "errors", "flagging", "privacy", "rules", "schemas", "service")
