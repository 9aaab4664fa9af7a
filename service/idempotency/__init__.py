"""Stripe's `Idempotency-Key` for any endpoint that opts in: `Idempotent` (a dependency)."""

from service.idempotency.dependencies import Idempotency, Idempotent
from service.idempotency.errors import (
    IdempotencyKeyMissingError,
    IdempotencyKeyReusedError,
    RequestInProgressError,
)
from service.idempotency.repository import KEY_PATTERN, LOCK_WAIT

__all__ = [
    "KEY_PATTERN",
    "LOCK_WAIT",
    "Idempotency",
    "IdempotencyKeyMissingError",
    "IdempotencyKeyReusedError",
    "Idempotent",
    "RequestInProgressError",
]

# The modules other domains may import; the rest (the repository first) are this
# domain's own. `tests/architecture/test_domain_boundaries.py` holds everyone to it.
PUBLIC_MODULES = ("dependencies", "errors")
