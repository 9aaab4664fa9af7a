"""The async client mirrors the sync one: same signing, retries, errors, batching and paging."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from integrations import (
    AsyncCarbonPointsClient,
    ConflictError,
    NotFoundError,
    TransportError,
)
from tests.integrations.fakes import (
    BASE_URL,
    KEY_ID,
    SECRET,
    Clock,
    FakeAPI,
    Sleeps,
    echo_batch,
    echo_outcome,
    expected_signature,
    make_event,
    outcome_json,
    problem,
)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def api() -> FakeAPI:
    return FakeAPI(echo_outcome)


def make_client(api: FakeAPI, sleeps: Sleeps, **overrides: Any) -> AsyncCarbonPointsClient:
    options: dict[str, Any] = {
        "key_id": KEY_ID,
        "secret": SECRET,
        "transport": api.transport,
        "clock": Clock(),
        "sleep": sleeps.asleep,
    }
    options.update(overrides)
    return AsyncCarbonPointsClient(BASE_URL, **options)


@pytest.fixture
async def client(api: FakeAPI, sleeps: Sleeps) -> AsyncIterator[AsyncCarbonPointsClient]:
    async with make_client(api, sleeps) as client:
        yield client


async def test_submit_event_is_signed(client: AsyncCarbonPointsClient, api: FakeAPI) -> None:
    outcome = await client.submit_event(make_event(1))
    assert outcome.external_id == "metro-2026-000001"
    (request,) = api.requests
    assert request.headers["webhook-key-id"] == KEY_ID
    assert request.headers["webhook-signature"] == expected_signature(request)


async def test_retries_re_sign_the_same_body(api: FakeAPI, sleeps: Sleeps) -> None:
    limited = problem(429, "rate-limited")
    limited.headers["retry-after"] = "2"
    api.script = [problem(503, "unavailable"), limited, echo_outcome]
    async with make_client(api, sleeps) as client:
        await client.submit_event(make_event())
    assert len({r.content for r in api.requests}) == 1
    assert len({r.headers["webhook-id"] for r in api.requests}) == 3
    assert all(r.headers["webhook-signature"] == expected_signature(r) for r in api.requests)
    assert len(sleeps.calls) == 2
    assert 0 <= sleeps.calls[0] <= 0.5
    assert sleeps.calls[1] == 2.0


async def test_no_retry_on_conflict_and_not_found(
    client: AsyncCarbonPointsClient, api: FakeAPI, sleeps: Sleeps
) -> None:
    api.script = [problem(409, "conflict", detail="different payload")]
    with pytest.raises(ConflictError) as caught:
        await client.retract("e1", "refund")
    assert caught.value.detail == "different payload"
    api.script = [problem(404, "not-found")]
    with pytest.raises(NotFoundError):
        await client.get_event("e1")
    assert len(api.requests) == 2
    assert sleeps.calls == []


async def test_timeouts_end_in_transport_error(api: FakeAPI, sleeps: Sleeps) -> None:
    def time_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    api.script = [time_out]
    async with make_client(api, sleeps, max_retries=1) as client:
        with pytest.raises(TransportError) as caught:
            await client.get_event("e1")
    assert len(api.requests) == 2
    assert isinstance(caught.value.cause, httpx.ConnectTimeout)


async def test_batching_preserves_order(client: AsyncCarbonPointsClient, api: FakeAPI) -> None:
    api.script = [echo_batch]
    events = [make_event(n) for n in range(1200)]
    outcomes = await client.submit_events(events, batch_size=500)
    assert [o.external_id for o in outcomes] == [e.external_id for e in events]
    assert [len(json.loads(r.content)["events"]) for r in api.requests] == [500, 500, 200]


async def test_iter_outcomes_follows_cursors(client: AsyncCarbonPointsClient, api: FakeAPI) -> None:
    pages = {
        "c0": {"outcomes": [outcome_json("a")], "next_cursor": "c1"},
        "c1": {"outcomes": [outcome_json("b")], "next_cursor": None},
    }
    api.script = [lambda r: httpx.Response(200, json=pages[r.url.params["after"]])]
    ids = [o.external_id async for o in client.iter_outcomes(after="c0", limit=10)]
    assert ids == ["a", "b"]
    assert [r.url.params["after"] for r in api.requests] == ["c0", "c1"]
    with pytest.raises(ValueError, match="limit"):
        client.iter_outcomes(limit=0)


async def test_close_and_aclose(api: FakeAPI, sleeps: Sleeps) -> None:
    client = make_client(api, sleeps)
    await client.aclose()
    with pytest.raises(RuntimeError):
        await client.get_event("e1")
    assert BASE_URL in repr(client)
    assert SECRET not in repr(client)
