"""Why a webhook administration call was refused: each its own stable problem type."""

from __future__ import annotations

from typing import ClassVar

from service.errors import ConflictError, NotFoundError, ValidationProblem


class EndpointNotFoundError(NotFoundError):
    slug: ClassVar[str] = "webhook-endpoint-not-found"
    title: ClassVar[str] = "Webhook endpoint not found"


class InvalidEndpointError(ValidationProblem):
    slug: ClassVar[str] = "webhook-endpoint-invalid"
    title: ClassVar[str] = "Webhook endpoint is not valid"


class MessageNotFoundError(NotFoundError):
    slug: ClassVar[str] = "webhook-message-not-found"
    title: ClassVar[str] = "Webhook message not found"


class MessageNotReplayableError(ConflictError):
    slug: ClassVar[str] = "webhook-message-not-replayable"
    title: ClassVar[str] = "Only dead or delivered webhook messages can be replayed"
