"""One error hierarchy, rendered as RFC 9457 problem details.

Every error a client can see carries a stable `type` URI built from a slug, a
title, an HTTP status and a human `detail`. Handlers for FastAPI's own errors
(validation, unknown route, method not allowed) map onto the same shape, and an
unexpected exception becomes an opaque 500 whose only link to the logs is the
request id: no stack trace, no exception text reaches a client.

`title` and `detail` are written in the reader's language (`Accept-Language`; zh-CN by default
on the app API, see `service.i18n`), announced by `Content-Language`; `type` URIs never change
with the language.
"""

from __future__ import annotations

import socket
from http import HTTPStatus
from typing import Any, ClassVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Scope

from service.i18n import DEFAULT_LANGUAGE, _, default_language, negotiate, translate

PROBLEM_BASE = "https://carbon-points.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


def problem_type(slug: str) -> str:
    return PROBLEM_BASE + slug


class ProblemError(Exception):
    """Base of every error that reaches a client as a problem document."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error"

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extensions = extensions
        self.headers: dict[str, str] = {}

    def to_problem(
        self, instance: str | None = None, language: str = DEFAULT_LANGUAGE
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": problem_type(self.slug),
            "title": translate(self.title, language),
            "status": self.status,
            "detail": translate(self.detail, language),
        }
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        return body


class BadRequestError(ProblemError):
    status = 400
    slug = "bad-request"
    title = "Bad request"


class MalformedBodyError(ProblemError):
    status = 400
    slug = "malformed-body"
    title = "Request body is not valid JSON"


class ValidationProblem(ProblemError):
    status = 422
    slug = "validation-error"
    title = "Request failed validation"


class UnauthenticatedError(ProblemError):
    status = 401
    slug = "unauthenticated"
    title = "Authentication required"


class ForbiddenError(ProblemError):
    status = 403
    slug = "forbidden"
    title = "Not allowed"


class NotFoundError(ProblemError):
    status = 404
    slug = "not-found"
    title = "Not found"


class MethodNotAllowedError(ProblemError):
    status = 405
    slug = "method-not-allowed"
    title = "Method not allowed"


class ConflictError(ProblemError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class PayloadTooLargeError(ProblemError):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class RateLimitedError(ProblemError):
    status = 429
    slug = "rate-limited"
    title = "Too many requests"


class ServiceUnavailableError(ProblemError):
    status = 503
    slug = "service-unavailable"
    title = "Service unavailable"


class InternalError(ProblemError):
    pass


# Seconds a client is asked to wait when the database cannot be reached: long enough for a
# failover or a restart to make progress, short enough that a till's customer still waits.
UNAVAILABLE_RETRY_AFTER_SECONDS = 2
# SQLSTATE classes meaning "the server cannot serve this connection now": 08 connection
# exception, 57P01-57P03 admin shutdown, crash shutdown, cannot connect now; 53300 too many
# connections; 55P03 a lock not had within the transaction's `lock_timeout` (busy rows).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300", "55P03")


def database_unavailable(exc: BaseException) -> ServiceUnavailableError | None:
    """A 503 problem when `exc` (or an exception it was raised from) says PostgreSQL is
    unreachable, restarting or out of connections; None for any other failure.

    Walks the cause chain: SQLAlchemy wraps asyncpg's errors, and the group commit hands the
    waiting request whatever its transaction raised.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_unavailability(current):
            error = ServiceUnavailableError(
                _("the database is unreachable; retry after the Retry-After delay")
            )
            error.headers["retry-after"] = str(UNAVAILABLE_RETRY_AFTER_SECONDS)
            return error
        current = current.__cause__ or current.__context__
    return None


def _is_unavailability(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True  # refused, reset, aborted, timed out, unknown host
    if isinstance(exc, sa_exc.TimeoutError):
        return True  # the pool had no connection to give within its timeout
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    # asyncpg's connection errors (closed mid-operation, failure, cannot connect now) and the
    # server's shutdown and too-many-connections errors all carry one of these SQLSTATEs.
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES)


_BY_STATUS: dict[int, type[ProblemError]] = {
    400: BadRequestError,
    401: UnauthenticatedError,
    403: ForbiddenError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: RateLimitedError,
    503: ServiceUnavailableError,
}


def scope_language(scope: Scope) -> str:
    """The language a request reads: its `Accept-Language` among the supported ones, else the
    default of its API (zh-CN for the app, English elsewhere)."""
    header: str | None = None
    for name, value in scope.get("headers", ()):
        if name == b"accept-language":
            header = value.decode("latin-1")
            break
    return negotiate(header, default_language(scope.get("path", "")))


def request_language(request: Request) -> str:
    return scope_language(request.scope)


def problem_response(
    error: ProblemError, request_id: str | None = None, language: str = DEFAULT_LANGUAGE
) -> Response:
    body = error.to_problem(language=language)
    if request_id:
        body["request_id"] = request_id
    headers = dict(error.headers)
    headers["content-language"] = language
    return Response(
        content=orjson.dumps(body),
        status_code=error.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _request_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


async def _handle_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return problem_response(exc, _request_id(request), request_language(request))


async def _handle_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    language = request_language(request)
    error_class = _BY_STATUS.get(exc.status_code)
    if error_class is None:
        phrase = HTTPStatus(exc.status_code).phrase
        body = {
            "type": problem_type(f"http-{exc.status_code}"),
            "title": phrase,
            "status": exc.status_code,
            "detail": str(exc.detail),
        }
        headers = {**(exc.headers or {}), "content-language": DEFAULT_LANGUAGE}
        return Response(orjson.dumps(body), exc.status_code, headers, media_type=PROBLEM_MEDIA_TYPE)
    error: ProblemError
    if exc.status_code == 404:
        error = NotFoundError(_("no route or resource at %(path)s", path=request.url.path))
    elif exc.status_code == 405:
        error = MethodNotAllowedError(
            _("%(method)s is not allowed on %(path)s", method=request.method, path=request.url.path)
        )
    else:
        error = error_class(str(exc.detail))
    if exc.headers:
        error.headers.update(exc.headers)
    return problem_response(error, _request_id(request), language)


async def _handle_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    language = request_language(request)
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        position = first.get("ctx", {}).get("error", "")
        detail = (
            _("the body could not be parsed as JSON: %(position)s", position=position)
            if position
            else _("the body could not be parsed as JSON")
        )
        return problem_response(MalformedBodyError(detail), _request_id(request), language)
    # Input values are deliberately left out: they may hold card or phone numbers.
    details = [
        {
            "location": [str(part) for part in e.get("loc", ())],
            "message": e.get("msg", ""),
            "code": e.get("type", ""),
        }
        for e in errors
    ]
    return problem_response(
        ValidationProblem(
            _("%(count)s field(s) failed validation", count=len(details)), errors=details
        ),
        _request_id(request),
        language,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _handle_problem)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(RequestValidationError, _handle_validation)
