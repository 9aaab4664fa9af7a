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
