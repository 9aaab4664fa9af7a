"""The SDK's one error hierarchy: what went wrong, and whether trying again can help.

Every error carries `retryable`. The clients retry retryable errors themselves (up to
`max_retries`); when they give up, the last error is raised, still marked retryable so a caller's
own job queue can schedule another go later. Messages never contain the secret or a subject_ref.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = [
    "APIError",
    "AuthenticationError",
    "CarbonPointsError",
    "ConflictError",
    "InvalidEventError",
    "NotFoundError",
    "PermissionDeniedError",
    "Problem",
    "RateLimitedError",
    "ServerError",
    "TransportError",
    "UnexpectedResponseError",
    "ValidationError",
    "WebhookVerificationError",
]

# The statuses where the server (or a proxy in front of it) may well answer differently next time.
RETRYABLE_SERVER_STATUSES = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class Problem:
    """An RFC 9457 problem document, as the server sent it (`raw` keeps every member)."""

    type: str
    title: str
    status: int
    detail: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_response(cls, response: httpx.Response) -> Problem:
        """Parse the problem in `response`, or describe a body that is not one (a proxy's page)."""
        raw: Any = None
        try:
            raw = response.json()
        except ValueError:
            raw = None
        if not isinstance(raw, dict):
            return cls(
                type="about:blank",
                title=response.reason_phrase or f"HTTP {response.status_code}",
                status=response.status_code,
            )
        detail = raw.get("detail")
        status = raw.get("status")
        return cls(
            type=str(raw.get("type") or "about:blank"),
            title=str(raw.get("title") or response.reason_phrase or ""),
            # The status line is the truth; the body's `status` is advisory (RFC 9457 §3.1.2).
            status=status if type(status) is int else response.status_code,
            detail=detail if isinstance(detail, str) else None,
            raw=raw,
        )


class CarbonPointsError(Exception):
    """Base of every error the SDK raises on purpose."""

    retryable: bool = False


class InvalidEventError(CarbonPointsError, ValueError):
    """An Event (or another argument) was rejected before anything was sent."""


class WebhookVerificationError(CarbonPointsError):
    """An inbound webhook failed verification: missing headers, stale, or no matching signature."""


class UnexpectedResponseError(CarbonPointsError):
    """A success response whose body is not what the API promises (not JSON, wrong shape)."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class TransportError(CarbonPointsError):
    """The request did not get an HTTP answer: connect/read timeout, reset, DNS, TLS, …

    The httpx exception is kept as `__cause__` (and `cause`).
    """

    retryable = True

    def __init__(self, message: str, *, cause: httpx.HTTPError, retryable: bool = True) -> None:
        super().__init__(message)
        self.cause = cause
        self.retryable = retryable


class APIError(CarbonPointsError):
    """The server answered with an error status; `problem` is its parsed problem document."""

    def __init__(
        self,
        problem: Problem,
        *,
        status_code: int,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        message = f"{status_code} {problem.title}"
        if problem.detail:
            message += f": {problem.detail}"
        super().__init__(message)
        self.problem = problem
        self.status_code = status_code
        self.headers: Mapping[str, str] = dict(headers or {})
        # Seconds the server asked us to wait (Retry-After), when it said so.
        self.retry_after = retry_after

    @property
    def type(self) -> str:
        """The problem's stable `type` URI: match on this, not on the message."""
        return self.problem.type

    @property
    def title(self) -> str:
        """The problem's short, human-readable summary."""
        return self.problem.title

    @property
    def detail(self) -> str | None:
        """The problem's explanation of this occurrence, if any."""
        return self.problem.detail


class AuthenticationError(APIError):
    """401: unknown key id, bad signature, stale timestamp or replayed webhook-id."""


class PermissionDeniedError(APIError):
    """403: the credential is valid but may not do this."""


class NotFoundError(APIError):
    """404: no such event (or resource) for this partner."""


class ConflictError(APIError):
    """409: the request conflicts with what the server already holds."""


class ValidationError(APIError):
    """400, 413 or 422: the request itself is wrong; sending it again will not help."""


class RateLimitedError(APIError):
    """429: too many requests; retried after `retry_after` seconds (or a backoff)."""

    retryable = True


class ServerError(APIError):
    """5xx: the server failed. 500, 502, 503 and 504 are retried; others (501, …) are not."""

    def __init__(
        self,
        problem: Problem,
        *,
        status_code: int,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(problem, status_code=status_code, headers=headers, retry_after=retry_after)
        self.retryable = status_code in RETRYABLE_SERVER_STATUSES


_BY_STATUS: dict[int, type[APIError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: ValidationError,
    422: ValidationError,
    429: RateLimitedError,
}


def error_for_response(response: httpx.Response, *, retry_after: float | None) -> APIError:
    """The APIError subclass for an error response, with its problem parsed."""
    status = response.status_code
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
    return cls(
        Problem.from_response(response),
        status_code=status,
        headers=dict(response.headers),
        retry_after=retry_after,
    )
