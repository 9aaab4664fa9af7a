"""Problems of the Idempotency-Key machinery, each with a stable type."""

from __future__ import annotations

from typing import ClassVar

from service.errors import ConflictError, ProblemError


class IdempotencyKeyMissingError(ProblemError):
    status: ClassVar[int] = 400
    slug: ClassVar[str] = "idempotency-key-missing"
    title: ClassVar[str] = "Send an Idempotency-Key header"


class IdempotencyKeyReusedError(ProblemError):
    status: ClassVar[int] = 422
    slug: ClassVar[str] = "idempotency-key-reused"
    title: ClassVar[str] = "Idempotency key used with a different request"


class RequestInProgressError(ConflictError):
    slug: ClassVar[str] = "request-in-progress"
    title: ClassVar[str] = "A request with this idempotency key is still in progress"
