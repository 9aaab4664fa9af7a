"""The partner API clients: CarbonPointsClient (sync) and AsyncCarbonPointsClient.

Both share one core: every operation is described once as a `_Call` (method, path, query, body,
how to read the answer); the sync and async clients differ only in how they send and sleep.
Each HTTP attempt is signed afresh (new webhook-id and timestamp) over the same body bytes, so a
retry is a new request to the replay guard but the same event to the ledger.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from random import Random
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import httpx
import pydantic

from integrations._errors import (
    APIError,
    CarbonPointsError,
    InvalidEventError,
    TransportError,
    UnexpectedResponseError,
    error_for_response,
)
from integrations._models import (
    MAX_BATCH_SIZE,
    Event,
    Outcome,
    OutcomePage,
    _BatchResults,
    check_external_id,
    encode_json,
)
from integrations._signing import (
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_ID_HEADER,
    new_webhook_id,
    sign_request,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "AsyncCarbonPointsClient",
    "CarbonPointsClient",
]

logger = logging.getLogger("integrations")

# Connecting is quick or broken; reading may wait on a busy ledger.
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=2.0)
DEFAULT_MAX_RETRIES = 4
DEFAULT_BACKOFF_BASE = 0.5
DEFAULT_BACKOFF_CAP = 8.0
# A Retry-After longer than this is not slept through inside a call: the error is raised and the
# caller's scheduler decides when to come back.
DEFAULT_MAX_RETRY_AFTER = 60.0
USER_AGENT = "carbon-points-python-sdk/0.1.0"

EVENTS_PATH = "/v1/partner/events"
BATCHES_PATH = "/v1/partner/event-batches"
OUTCOMES_PATH = "/v1/partner/outcomes"

T = TypeVar("T")


def _event_path(external_id: str, suffix: str = "") -> str:
    check_external_id(external_id)
    # "." and ".." are valid ids but dot-segments in a URL; escape them so no one normalises them.
    segment = "%2E" * len(external_id) if external_id in {".", ".."} else external_id
    # Every other character the id may hold ([A-Za-z0-9._:-]) is already safe in a path segment.
    return f"{EVENTS_PATH}/{segment}{suffix}"


def _parse(model: type[pydantic.BaseModel], response: httpx.Response) -> Any:
    try:
        return model.model_validate_json(response.content)
    except pydantic.ValidationError as exc:
        # Say what is wrong without echoing the body: it is the server's data, not ours to log.
        fields = ", ".join(".".join(map(str, e["loc"])) or "(body)" for e in exc.errors()[:5])
        raise UnexpectedResponseError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code} with a body that is not a {model.__name__} ({fields})",
            status_code=response.status_code,
        ) from None


def _outcome(response: httpx.Response) -> Outcome:
    outcome: Outcome = _parse(Outcome, response)
    return outcome


def _page(response: httpx.Response) -> OutcomePage:
    page: OutcomePage = _parse(OutcomePage, response)
    return page


@dataclass(frozen=True)
class _Call(Generic[T]):
    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: dict[str, str | int] | None = None
    body: bytes | None = None


def _batches(events: Iterable[Event], size: int) -> Iterator[list[Event]]:
    batch: list[Event] = []
    for event in events:
        if not isinstance(event, Event):
            raise InvalidEventError(f"expected an Event, got {type(event).__name__}")
        batch.append(event)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _batch_call(batch: Sequence[Event]) -> _Call[list[Outcome]]:
    def read(response: httpx.Response) -> list[Outcome]:
        results: _BatchResults = _parse(_BatchResults, response)
        if len(results.results) != len(batch):
            raise UnexpectedResponseError(
                f"batch of {len(batch)} events answered with {len(results.results)} results",
                status_code=response.status_code,
            )
        return results.results

    body = encode_json({"events": [event.to_json() for event in batch]})
    return _Call("POST", BATCHES_PATH, read, body=body)


def _check_batch_size(batch_size: int) -> None:
    if type(batch_size) is not int or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be an int in 1..{MAX_BATCH_SIZE}")


def _check_limit(limit: int) -> None:
    if type(limit) is not int or not 1 <= limit <= MAX_BATCH_SIZE:
        raise ValueError(f"limit must be an int in 1..{MAX_BATCH_SIZE}")


def _outcomes_call(after: str | None, limit: int) -> _Call[OutcomePage]:
    params: dict[str, str | int] = {"limit": limit}
    if after is not None:
        params = {"after": after, **params}
    return _Call("GET", OUTCOMES_PATH, _page, params=params)


def _retraction_call(external_id: str, reason: str) -> _Call[Outcome]:
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("reason must be a non-empty string")
    body = encode_json({"reason": reason})
    return _Call("POST", _event_path(external_id, "/retraction"), _outcome, body=body)


def _submit_call(event: Event) -> _Call[Outcome]:
    if not isinstance(event, Event):
        raise InvalidEventError(f"expected an Event, got {type(event).__name__}")
    return _Call("POST", EVENTS_PATH, _outcome, body=encode_json(event.to_json()))


def _get_call(external_id: str) -> _Call[Outcome]:
    return _Call("GET", _event_path(external_id), _outcome)


class _ClientCore:
    """Configuration, signing, error mapping and backoff shared by both clients."""

    def __init__(
        self,
        *,
        base_url: str,
        key_id: str,
        secret: str,
        timeout: httpx.Timeout | float,
        max_retries: int,
        backoff_base: float,
        backoff_cap: float,
        max_retry_after: float,
        clock: Callable[[], float],
        rng: Random | None,
    ) -> None:
        if not base_url:
            raise ValueError("base_url is required")
        if not key_id or not key_id.isascii() or any(c in key_id for c in ". \r\n"):
            raise ValueError("key_id must be a non-empty ASCII id (e.g. pk_…)")
        if not secret:
            raise ValueError("secret is required")
        if key_id.startswith("cpsk_") or secret.startswith("pk_"):
            raise ValueError("key_id and secret look swapped")
        if type(max_retries) is not int or max_retries < 0:
            raise ValueError("max_retries must be an int >= 0")
        if backoff_base < 0 or backoff_cap < 0 or max_retry_after < 0:
            raise ValueError("backoff_base, backoff_cap and max_retry_after must be >= 0")
        self._base_url = base_url
        self._key_id = key_id
        self._secret = secret
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._max_retry_after = max_retry_after
        self._clock = clock
        # Jitter needs no cryptographic strength, but SystemRandom keeps linters and auditors calm.
        self._rng = rng if rng is not None else secrets.SystemRandom()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._base_url!r}, key_id={self._key_id!r})"

    @property
    def _default_headers(self) -> dict[str, str]:
        return {"user-agent": USER_AGENT, "accept": "application/json"}

    def _sign(self, request: httpx.Request, body: bytes) -> None:
        webhook_id = new_webhook_id()
        timestamp = int(self._clock())
        target = request.url.raw_path.decode("ascii")
        request.headers[KEY_ID_HEADER] = self._key_id
        request.headers[WEBHOOK_ID_HEADER] = webhook_id
        request.headers[TIMESTAMP_HEADER] = str(timestamp)
        request.headers[SIGNATURE_HEADER] = sign_request(
            key_id=self._key_id,
            secret=self._secret,
            webhook_id=webhook_id,
            timestamp=timestamp,
            method=request.method,
            path=target,
            body=body,
        )

    def _build(self, http: httpx.Client | httpx.AsyncClient, call: _Call[Any]) -> httpx.Request:
        body = call.body if call.body is not None else b""
        headers = {"content-type": "application/json"} if call.body is not None else None
        request = http.build_request(
            call.method, call.path, params=call.params, content=call.body, headers=headers
        )
        self._sign(request, body)
        return request

    def _retry_after(self, response: httpx.Response) -> float | None:
        value = response.headers.get("retry-after")
        if value is None:
            return None
        value = value.strip()
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            seconds = when.timestamp() - self._clock()
        if seconds != seconds:  # NaN
            return None
        return max(0.0, seconds)

    def _error(self, response: httpx.Response) -> APIError:
        return error_for_response(response, retry_after=self._retry_after(response))

    @staticmethod
    def _transport_error(request: httpx.Request, exc: httpx.HTTPError) -> TransportError:
        # A URL scheme httpx cannot speak will not start working on the next attempt.
        retryable = not isinstance(exc, httpx.UnsupportedProtocol)
        return TransportError(
            f"{type(exc).__name__} on {request.method} {request.url.path}: {exc}",
            cause=exc,
            retryable=retryable,
        )

    def _delay(self, attempt: int, error: CarbonPointsError) -> float | None:
        """Seconds to wait before retry number `attempt + 1`, or None to give up."""
        if not error.retryable or attempt >= self._max_retries:
            return None
        if isinstance(error, APIError) and error.retry_after is not None:
            if error.retry_after > self._max_retry_after:
                return None
            return error.retry_after
        # Full jitter: spread retrying partners over the whole window, not onto its edge.
        return self._rng.uniform(0.0, min(self._backoff_cap, self._backoff_base * 2**attempt))

    def _log_retry(
        self, request: httpx.Request, error: CarbonPointsError, attempt: int, delay: float
    ) -> None:
        logger.warning(
            "carbon-points %s %s failed (%s); retry %d of %d in %.2fs",
            request.method,
            request.url.path,
            type(error).__name__,
            attempt + 1,
            self._max_retries,
            delay,
        )


class CarbonPointsClient(_ClientCore):
    """Synchronous partner API client. Create one, reuse it, close it (or use `with`)."""

    def __init__(
        self,
        base_url: str,
        *,
        key_id: str,
        secret: str,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_cap: float = DEFAULT_BACKOFF_CAP,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: Random | None = None,
    ) -> None:
        """Configure the client; one pooled httpx.Client is opened and reused by every call.

        `transport` replaces the network (tests pass `httpx.MockTransport`); `clock` gives the
        signing timestamp, `sleep` waits between retries and `rng` draws the backoff jitter.
        """
        super().__init__(
            base_url=base_url,
            key_id=key_id,
            secret=secret,
            timeout=timeout,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            max_retry_after=max_retry_after,
            clock=clock,
            rng=rng,
        )
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url,
            timeout=self._timeout,
            transport=transport,
            headers=self._default_headers,
        )

    def _execute(self, call: _Call[T]) -> T:
        attempt = 0
        while True:
            request = self._build(self._http, call)
            error: CarbonPointsError
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                error = self._transport_error(request, exc)
                cause: BaseException | None = exc
            else:
                if response.is_success:
                    return call.read(response)
                error, cause = self._error(response), None
            delay = self._delay(attempt, error)
            if delay is None:
                raise error from cause
            self._log_retry(request, error, attempt, delay)
            self._sleep(delay)
            attempt += 1

    def submit_event(self, event: Event) -> Outcome:
        """Submit one event and return its outcome (safe to repeat: external_id is idempotent)."""
        return self._execute(_submit_call(event))

    def submit_events(self, events: Iterable[Event], *, batch_size: int = 500) -> list[Outcome]:
        """Submit events in batches of `batch_size` (≤ 1000); outcomes come back in input order.

        A bad event gets a `rejected` outcome without failing its siblings. If a batch fails
        after retries the error is raised and later batches are not sent; submitting the whole
        list again is safe because events are idempotent by external_id.
        """
        _check_batch_size(batch_size)
        outcomes: list[Outcome] = []
        for batch in _batches(events, batch_size):
            results = self._execute(_batch_call(batch))
            outcomes.extend(results)
        return outcomes

    def get_event(self, external_id: str) -> Outcome:
        """The current outcome of a submitted event; NotFoundError if the server has none."""
        return self._execute(_get_call(external_id))

    def list_outcomes(self, after: str | None = None, limit: int = 500) -> OutcomePage:
        """One page of the outcomes feed after cursor `after` (None: from the start)."""
        _check_limit(limit)
        return self._execute(_outcomes_call(after, limit))

    def iter_outcomes(self, after: str | None = None, limit: int = 500) -> Iterator[Outcome]:
        """Every outcome after cursor `after`, page by page, until `next_cursor` is null.

        Pages are fetched lazily as the iterator is consumed. To checkpoint a long read, use
        list_outcomes() and store each page's `next_cursor`.
        """
        _check_limit(limit)  # here, not in the generator, so a bad limit fails at the call
        return self._iter_outcomes(after, limit)

    def _iter_outcomes(self, after: str | None, limit: int) -> Iterator[Outcome]:
        cursor = after
        while True:
            page = self._execute(_outcomes_call(cursor, limit))
            yield from page.outcomes
            # An empty page that points at itself would loop forever; treat it as the end.
            if page.next_cursor is None or (not page.outcomes and page.next_cursor == cursor):
                return
            cursor = page.next_cursor

    def retract(self, external_id: str, reason: str) -> Outcome:
        """Withdraw a submitted event (e.g. a refunded ticket); returns the `retracted` outcome."""
        return self._execute(_retraction_call(external_id, reason))

    def close(self) -> None:
        """Close the pooled connections. The client cannot be used afterwards."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


async def _asyncio_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class AsyncCarbonPointsClient(_ClientCore):
    """Asynchronous partner API client, the mirror of CarbonPointsClient."""

    def __init__(
        self,
        base_url: str,
        *,
        key_id: str,
        secret: str,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_cap: float = DEFAULT_BACKOFF_CAP,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = _asyncio_sleep,
        rng: Random | None = None,
    ) -> None:
        """Configure the client; one pooled httpx.AsyncClient is opened and reused by every call.

        `transport` replaces the network (tests pass `httpx.MockTransport`); `clock` gives the
        signing timestamp, `sleep` waits between retries and `rng` draws the backoff jitter.
        """
        super().__init__(
            base_url=base_url,
            key_id=key_id,
            secret=secret,
            timeout=timeout,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            max_retry_after=max_retry_after,
            clock=clock,
            rng=rng,
        )
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=self._timeout,
            transport=transport,
            headers=self._default_headers,
        )

    async def _execute(self, call: _Call[T]) -> T:
        attempt = 0
        while True:
            request = self._build(self._http, call)
            error: CarbonPointsError
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                error = self._transport_error(request, exc)
                cause: BaseException | None = exc
            else:
                if response.is_success:
                    return call.read(response)
                error, cause = self._error(response), None
            delay = self._delay(attempt, error)
            if delay is None:
                raise error from cause
            self._log_retry(request, error, attempt, delay)
            await self._sleep(delay)
            attempt += 1

    async def submit_event(self, event: Event) -> Outcome:
        """Submit one event and return its outcome (safe to repeat: external_id is idempotent)."""
        return await self._execute(_submit_call(event))

    async def submit_events(
        self, events: Iterable[Event], *, batch_size: int = 500
    ) -> list[Outcome]:
        """Submit events in batches of `batch_size` (≤ 1000); outcomes come back in input order.

        Same semantics as CarbonPointsClient.submit_events: batches are sent one after another.
        """
        _check_batch_size(batch_size)
        outcomes: list[Outcome] = []
        for batch in _batches(events, batch_size):
            results = await self._execute(_batch_call(batch))
            outcomes.extend(results)
        return outcomes

    async def get_event(self, external_id: str) -> Outcome:
        """The current outcome of a submitted event; NotFoundError if the server has none."""
        return await self._execute(_get_call(external_id))

    async def list_outcomes(self, after: str | None = None, limit: int = 500) -> OutcomePage:
        """One page of the outcomes feed after cursor `after` (None: from the start)."""
        _check_limit(limit)
        return await self._execute(_outcomes_call(after, limit))

    def iter_outcomes(self, after: str | None = None, limit: int = 500) -> AsyncIterator[Outcome]:
        """Every outcome after cursor `after`, page by page, until `next_cursor` is null.

        Use with `async for`; pages are fetched lazily as the iterator is consumed.
        """
        _check_limit(limit)
        return self._iter_outcomes(after, limit)

    async def _iter_outcomes(self, after: str | None, limit: int) -> AsyncIterator[Outcome]:
        cursor = after
        while True:
            page = await self._execute(_outcomes_call(cursor, limit))
            for outcome in page.outcomes:
                yield outcome
            if page.next_cursor is None or (not page.outcomes and page.next_cursor == cursor):
                return
            cursor = page.next_cursor

    async def retract(self, external_id: str, reason: str) -> Outcome:
        """Withdraw a submitted event (e.g. a refunded ticket); returns the `retracted` outcome."""
        return await self._execute(_retraction_call(external_id, reason))

    async def close(self) -> None:
        """Close the pooled connections. The client cannot be used afterwards."""
        await self._http.aclose()

    async def aclose(self) -> None:
        """Alias of close(), matching httpx.AsyncClient."""
        await self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
