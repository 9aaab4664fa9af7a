"""The sync client against a scripted API: signing, retries, errors, batching, paging."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from random import Random
from typing import Any

import httpx
import pytest

from integrations import (
    APIError,
    AuthenticationError,
    CarbonPointsClient,
    ConflictError,
    Event,
    InvalidEventError,
    NotFoundError,
    OutcomeStatus,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    TransportError,
    UnexpectedResponseError,
    ValidationError,
)
from tests.integrations.fakes import (
    BASE_URL,
    KEY_ID,
    NOW,
    SECRET,
    SUBJECT_REF,
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


class TopOfWindow(Random):
    """Full jitter that always draws the top of the window, to make backoff visible."""

    def uniform(self, a: float, b: float) -> float:
        return b


def make_client(api: FakeAPI, **overrides: Any) -> CarbonPointsClient:
    options: dict[str, Any] = {
        "key_id": KEY_ID,
        "secret": SECRET,
        "transport": api.transport,
        "clock": Clock(),
        "sleep": Sleeps(),
        "rng": TopOfWindow(),
    }
    options.update(overrides)
    return CarbonPointsClient(options.pop("base_url", BASE_URL), **options)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def api() -> FakeAPI:
    return FakeAPI(echo_outcome)


@pytest.fixture
def client(api: FakeAPI, sleeps: Sleeps) -> Iterator[CarbonPointsClient]:
    with make_client(api, sleep=sleeps) as client:
        yield client


def test_submit_event_sends_signed_json(client: CarbonPointsClient, api: FakeAPI) -> None:
    outcome = client.submit_event(make_event(1))

    assert outcome.status == OutcomeStatus.CREDITED
    assert outcome.external_id == "metro-2026-000001"
    (request,) = api.requests
    assert request.method == "POST"
    assert request.url.raw_path == b"/v1/partner/events"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-key-id"] == KEY_ID
    assert request.headers["webhook-timestamp"] == str(NOW)
    assert request.headers["webhook-id"].startswith("msg_")
    assert request.headers["webhook-signature"] == expected_signature(request)
    assert json.loads(request.content)["subject_ref"] == SUBJECT_REF
    assert SECRET.encode() not in request.content
    assert all(SECRET not in value for value in request.headers.values())


def test_signature_covers_the_base_path_prefix_and_query() -> None:
    api = FakeAPI(httpx.Response(200, json={"outcomes": [], "next_cursor": None}))
    with make_client(api, base_url=BASE_URL + "/api") as client:
        assert list(client.iter_outcomes(after="c 1/+", limit=2)) == []
    (request,) = api.requests
    assert request.url.raw_path == b"/api/v1/partner/outcomes?after=c+1%2F%2B&limit=2"
    assert request.content == b""
    assert request.headers["webhook-signature"] == expected_signature(request)


def test_get_event_and_retract(client: CarbonPointsClient, api: FakeAPI) -> None:
    assert client.get_event("metro-1").external_id == "metro-1"
    client.retract("metro-1", "ticket refunded")
    get, retract = api.requests
    assert (get.method, get.url.path, get.content) == ("GET", "/v1/partner/events/metro-1", b"")
    assert retract.url.path == "/v1/partner/events/metro-1/retraction"
    assert json.loads(retract.content) == {"reason": "ticket refunded"}
    assert all(r.headers["webhook-signature"] == expected_signature(r) for r in api.requests)


def test_dot_ids_are_escaped_not_normalised(client: CarbonPointsClient, api: FakeAPI) -> None:
    client.get_event("..")
    assert api.requests[0].url.raw_path == b"/v1/partner/events/%2E%2E"
    with pytest.raises(InvalidEventError):
        client.get_event("a/b")


def test_503_is_retried_with_a_new_id_and_the_same_body(sleeps: Sleeps) -> None:
    api = FakeAPI(problem(503, "unavailable"), echo_outcome)
    with make_client(api, sleep=sleeps) as client:
        assert client.submit_event(make_event(7)).status == "credited"

    first, second = api.requests
    assert first.content == second.content
    assert first.headers["webhook-id"] != second.headers["webhook-id"]
    assert first.headers["webhook-timestamp"] != second.headers["webhook-timestamp"]
    assert all(r.headers["webhook-signature"] == expected_signature(r) for r in api.requests)
    assert sleeps.calls == [0.5]


def test_backoff_is_full_jitter_exponential_and_capped(sleeps: Sleeps) -> None:
    api = FakeAPI(problem(500, "internal"))
    with (
        make_client(api, sleep=sleeps, backoff_base=1.0, backoff_cap=3.0) as client,
        pytest.raises(ServerError) as caught,
    ):
        client.submit_event(make_event())
    assert len(api.requests) == 5  # the first attempt and 4 retries
    assert sleeps.calls == [1.0, 2.0, 3.0, 3.0]
    assert caught.value.retryable
    assert caught.value.status_code == 500


def test_jitter_draws_below_the_window() -> None:
    sleeps = Sleeps()
    api = FakeAPI(httpx.Response(502, text="<html>bad gateway</html>"))
    with (
        make_client(api, sleep=sleeps, rng=Random(7), max_retries=3) as client,
        pytest.raises(ServerError) as caught,
    ):
        client.get_event("e1")
    assert [0 <= s <= w for s, w in zip(sleeps.calls, [0.5, 1.0, 2.0], strict=True)] == [True] * 3
    # A proxy's HTML page still becomes a readable problem.
    assert caught.value.problem.status == 502
    assert caught.value.title == "Bad Gateway"


def test_429_honours_retry_after(sleeps: Sleeps) -> None:
    limited = problem(429, "rate-limited")
    limited.headers["retry-after"] = "7"
    api = FakeAPI(limited, echo_outcome)
    with make_client(api, sleep=sleeps) as client:
        client.submit_event(make_event())
    assert sleeps.calls == [7.0]
    assert len(api.requests) == 2


def test_retry_after_as_http_date(sleeps: Sleeps) -> None:
    limited = httpx.Response(429, headers={"retry-after": "Thu, 01 Jan 2026 00:00:12 GMT"})
    api = FakeAPI(limited, echo_outcome)
    with make_client(api, sleep=sleeps, clock=lambda: float(NOW)) as client:
        client.get_event("e1")
    assert sleeps.calls == [12.0]


def test_a_retry_after_too_long_is_raised_not_slept(sleeps: Sleeps) -> None:
    limited = problem(429, "rate-limited")
    limited.headers["retry-after"] = "3600"
    api = FakeAPI(limited)
    with (
        make_client(api, sleep=sleeps) as client,
        pytest.raises(RateLimitedError) as caught,
    ):
        client.submit_event(make_event())
    assert sleeps.calls == []
    assert caught.value.retryable
    assert caught.value.retry_after == 3600.0


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, ValidationError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (413, ValidationError),
        (422, ValidationError),
        (405, APIError),
        (501, ServerError),
    ],
)
def test_errors_that_will_not_change_are_not_retried(
    status: int, error_class: type[APIError], sleeps: Sleeps
) -> None:
    api = FakeAPI(problem(status, "some-problem", detail="what went wrong", instance="/x/1"))
    with (
        make_client(api, sleep=sleeps) as client,
        pytest.raises(error_class) as caught,
    ):
        client.submit_event(make_event())
    error = caught.value
    assert type(error) is error_class
    assert len(api.requests) == 1
    assert sleeps.calls == []
    assert not error.retryable
    assert error.status_code == status
    assert error.type == "https://carbon-points.dev/problems/some-problem"
    assert error.title == "Some problem"
    assert error.detail == "what went wrong"
    assert error.problem.raw["instance"] == "/x/1"
    assert str(error) == f"{status} Some problem: what went wrong"


def test_timeouts_are_retried_then_raised_as_transport_error(sleeps: Sleeps) -> None:
    def time_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    api = FakeAPI(time_out)
    with (
        make_client(api, sleep=sleeps, max_retries=2) as client,
        pytest.raises(TransportError) as caught,
    ):
        client.submit_event(make_event())
    assert len(api.requests) == 3
    assert len({r.headers["webhook-id"] for r in api.requests}) == 3
    assert sleeps.calls == [0.5, 1.0]
    assert caught.value.retryable
    assert isinstance(caught.value.cause, httpx.ReadTimeout)
    assert caught.value.__cause__ is caught.value.cause


def test_connect_errors_are_retried_to_success(sleeps: Sleeps) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    api = FakeAPI(refuse, refuse, echo_outcome)
    with make_client(api, sleep=sleeps) as client:
        assert client.get_event("e1").external_id == "e1"
    assert len(api.requests) == 3


def test_max_retries_zero_means_one_attempt(sleeps: Sleeps) -> None:
    api = FakeAPI(problem(503, "unavailable"))
    with (
        make_client(api, sleep=sleeps, max_retries=0) as client,
        pytest.raises(ServerError),
    ):
        client.get_event("e1")
    assert len(api.requests) == 1


def test_timeouts_are_explicit(api: FakeAPI) -> None:
    with CarbonPointsClient(BASE_URL, key_id=KEY_ID, secret=SECRET, transport=api.transport) as c:
        c.get_event("e1")
    with make_client(api, timeout=3.0) as client:
        client.get_event("e1")
    default, custom = (r.extensions["timeout"] for r in api.requests)
    assert default == {"connect": 2.0, "read": 10.0, "write": 10.0, "pool": 10.0}
    assert custom == {"connect": 3.0, "read": 3.0, "write": 3.0, "pool": 3.0}


def test_batching_splits_and_preserves_order(client: CarbonPointsClient, api: FakeAPI) -> None:
    api.script = [echo_batch]
    events = [make_event(n) for n in range(1200)]

    outcomes = client.submit_events(events)

    assert [o.external_id for o in outcomes] == [e.external_id for e in events]
    assert [len(body["events"]) for body in api.bodies()] == [500, 500, 200]
    assert all(r.url.path == "/v1/partner/event-batches" for r in api.requests)
    assert all(r.headers["webhook-signature"] == expected_signature(r) for r in api.requests)
    sent = [e["external_id"] for body in api.bodies() for e in body["events"]]
    assert sent == [e.external_id for e in events]


def test_batch_with_a_rejected_event_keeps_its_siblings(
    client: CarbonPointsClient, api: FakeAPI
) -> None:
    rejected = outcome_json(
        "metro-2026-000002",
        status="rejected",
        grams=0,
        points=0,
        credit_id=None,
        problem={"type": "https://carbon-points.dev/problems/unknown-action", "status": 422},
    )

    def answer(request: httpx.Request) -> httpx.Response:
        ids = [e["external_id"] for e in json.loads(request.content)["events"]]
        results = [rejected if i == rejected["external_id"] else outcome_json(i) for i in ids]
        return httpx.Response(200, json={"results": results})

    api.script = [answer]
    outcomes = client.submit_events([make_event(n) for n in (1, 2, 3)])
    assert [o.status for o in outcomes] == ["credited", "rejected", "credited"]
    assert outcomes[1].problem is not None
    assert outcomes[1].problem["status"] == 422


def test_batch_sizes_and_contents_are_checked(client: CarbonPointsClient, api: FakeAPI) -> None:
    for size in (0, 1001):
        with pytest.raises(ValueError, match="batch_size"):
            client.submit_events([make_event()], batch_size=size)
    with pytest.raises(InvalidEventError):
        client.submit_events([{"external_id": "x"}])  # type: ignore[list-item]
    assert client.submit_events([]) == []
    assert api.requests == []


def test_a_short_batch_answer_is_an_error(client: CarbonPointsClient, api: FakeAPI) -> None:
    api.script = [httpx.Response(200, json={"results": [outcome_json("metro-2026-000001")]})]
    with pytest.raises(UnexpectedResponseError, match="2 events answered with 1"):
        client.submit_events([make_event(1), make_event(2)])


def test_malformed_success_body_is_an_unexpected_response(
    client: CarbonPointsClient, api: FakeAPI
) -> None:
    api.script = [httpx.Response(200, json={"status": "credited"})]
    with pytest.raises(UnexpectedResponseError, match="external_id"):
        client.get_event("e1")


def test_iter_outcomes_follows_cursors(client: CarbonPointsClient, api: FakeAPI) -> None:
    pages = {
        None: {"outcomes": [outcome_json("a"), outcome_json("b")], "next_cursor": "c1"},
        "c1": {"outcomes": [outcome_json("c")], "next_cursor": "c2"},
        "c2": {"outcomes": [outcome_json("d")], "next_cursor": None},
    }
    api.script = [lambda request: httpx.Response(200, json=pages[request.url.params.get("after")])]

    ids = [o.external_id for o in client.iter_outcomes(limit=2)]

    assert ids == ["a", "b", "c", "d"]
    assert [r.url.params.get("after") for r in api.requests] == [None, "c1", "c2"]
    assert {r.url.params["limit"] for r in api.requests} == {"2"}


def test_iter_outcomes_stops_on_an_empty_page_that_points_at_itself(
    client: CarbonPointsClient, api: FakeAPI
) -> None:
    api.script = [httpx.Response(200, json={"outcomes": [], "next_cursor": "c9"})]
    assert list(client.iter_outcomes(after="c9")) == []
    assert len(api.requests) == 1


def test_list_outcomes_returns_the_cursor(client: CarbonPointsClient, api: FakeAPI) -> None:
    api.script = [httpx.Response(200, json={"outcomes": [outcome_json("a")], "next_cursor": "n"})]
    page = client.list_outcomes(after="c", limit=1)
    assert page.next_cursor == "n"
    assert [o.external_id for o in page.outcomes] == ["a"]
    with pytest.raises(ValueError, match="limit"):
        client.iter_outcomes(limit=1001)


def test_secret_and_subject_ref_never_reach_logs_or_errors(
    caplog: pytest.LogCaptureFixture, sleeps: Sleeps
) -> None:
    def time_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    api = FakeAPI(problem(503, "unavailable"), time_out)
    with caplog.at_level(logging.DEBUG), make_client(api, sleep=sleeps) as client:
        with pytest.raises(TransportError) as caught:
            client.submit_event(make_event())
        text = caplog.text + str(caught.value) + repr(caught.value) + repr(client)
    assert "retry 1 of 4" in caplog.text
    assert SECRET not in text
    assert SUBJECT_REF not in text


def test_constructor_checks_its_credentials() -> None:
    with pytest.raises(ValueError, match="swapped"):
        CarbonPointsClient(BASE_URL, key_id=SECRET, secret=KEY_ID)
    with pytest.raises(ValueError, match="secret"):
        CarbonPointsClient(BASE_URL, key_id=KEY_ID, secret="")
    with pytest.raises(ValueError, match="max_retries"):
        CarbonPointsClient(BASE_URL, key_id=KEY_ID, secret=SECRET, max_retries=-1)


def test_submit_event_refuses_non_events(client: CarbonPointsClient) -> None:
    with pytest.raises(InvalidEventError):
        client.submit_event({"external_id": "x"})  # type: ignore[arg-type]
    assert isinstance(make_event(), Event)
