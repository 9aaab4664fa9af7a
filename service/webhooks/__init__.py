"""Outbound webhooks to merchants and partners, from a transactional outbox.

Business code calls `enqueue(session, ...)` inside its own transaction; the delivery worker
(`service.webhooks.delivery.deliver_due`) sends what committed, signed to the Standard Webhooks
spec, retrying with exponential backoff and full jitter and dead-lettering after the last try.
"""

from service.webhooks.repository import subscribed_endpoints_sql
from service.webhooks.service import EVENT_TYPES, enqueue

__all__ = ["EVENT_TYPES", "enqueue", "subscribed_endpoints_sql"]

# The modules other domains may import; the rest (the repository first) are this
# domain's own. `tests/architecture/test_domain_boundaries.py` holds everyone to it.
PUBLIC_MODULES = ("cli", "delivery", "errors", "retry", "service", "signing")
