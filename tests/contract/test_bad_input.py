"""Every input that used to reach a 500 (issue 13) gets a 422 problem naming the field, and
nothing is written: each test compares the row count of every table before and after."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text

from integrations import sign_request
from service.models import Base
from service.partners.credentials import IssuedCredential
from tests.accounts.helpers import bearer, register
from tests.crediting.conftest import TRIP_AT, Live, metro

# 12.345 km x 46.7 g/km = 576 g, 576 points (see tests/crediting/test_partner_api.py).
TRIP_POINTS = 576
CARD = "6222020000000001"
HUGE = "99999999999999999999999"


async def row_counts(live: Live) -> dict[str, int]:
    """Rows in every table: what "nothing was written" is checked against."""
    union = " UNION ALL ".join(
        f"SELECT '{t.name}' AS name, count(*) AS n FROM \"{t.name}\""
        for t in Base.metadata.sorted_tables
    )
    async with live.sessionmaker() as session:
        return {name: int(n) for name, n in await session.execute(text(union))}


@pytest.fixture
async def http(live: Live) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=live.transport, base_url="http://test") as client:
        yield client


@pytest.fixture
async def partner(live: Live) -> IssuedCredential:
    return await live.partner("metro-co")


async def signed(
    live: Live, credential: IssuedCredential, method: str, target: str, body: bytes = b""
) -> httpx.Response:
    """A request signed over the exact bytes sent (the SDK would refuse some of these)."""
    timestamp = int(time.time())
    webhook_id = f"msg_{time.monotonic_ns()}"
    signature = sign_request(
        key_id=credential.key_id,
        secret=credential.secret,
        webhook_id=webhook_id,
        timestamp=timestamp,
        method=method,
        path=target,
        body=body,
    )
    async with httpx.AsyncClient(transport=live.transport, base_url="http://test") as http:
        request = http.build_request(
            method,
            "http://test",
            content=body or None,
            headers={
                "content-type": "application/json",
                "webhook-key-id": credential.key_id,
                "webhook-id": webhook_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signature,
            },
        )
        # The exact target, percent-escapes and all, as it was signed.
        request.url = httpx.URL("http://test" + target)
        return await http.send(request)


def event(**changes: Any) -> dict[str, Any]:
    return {**metro("trip-1", card=CARD).to_json(), **changes}


def assert_field_problem(response: httpx.Response, *location: str) -> None:
    """A 422 validation problem whose errors name `location` (a prefix of one error's)."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/validation-error")
    locations = [tuple(e["location"]) for e in problem["errors"]]
    assert any(loc[: len(location)] == location for loc in locations), locations


def assert_outcome_problem(outcome: dict[str, Any], *location: str) -> None:
    """A batch outcome rejected for a validation problem naming `location`."""
    assert outcome["status"] == "rejected", outcome
    problem = outcome["problem"]
    assert problem["status"] == 422
    locations = [tuple(e["location"]) for e in problem["errors"]]
    assert any(loc[: len(location)] == location for loc in locations), locations


# --- partner events ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "location"),
    [
        ({"place_ids": ["station:NC\u000001"]}, ("body", "place_ids", "0")),
        ({"quantities": {"distance_m": 12345, "line": "L1\u0000"}}, ("body", "quantities")),
        ({"subject_ref": "6222\u00000001"}, ("body", "subject_ref")),
        ({"region": "CN-AAAAA-BBBBB-CC"}, ("body", "region")),  # 17 characters, matches the pattern
        ({"region": "CN-AAAAAA-BBBBBB-CCCCCC"}, ("body", "region")),  # 23, matches the pattern
        ({"quantities": {"distance_m": 18446744073709551615}}, ("body", "quantities")),
    ],
    ids=["nul-place-id", "nul-quantity-text", "nul-subject", "region-17", "region-23", "uint64"],
)
async def test_a_bad_single_event_is_a_422_naming_the_field(
    live: Live, partner: IssuedCredential, changes: dict[str, Any], location: tuple[str, ...]
) -> None:
    before = await row_counts(live)
    body = orjson.dumps(event(**changes))
    response = await signed(live, partner, "POST", "/v1/partner/events", body)
    assert_field_problem(response, *location)
    assert CARD not in response.text
    assert await row_counts(live) == before


@pytest.mark.parametrize("number", [b"8000.5", b"8000.0", b"8.0005e3", b"1e400"])
async def test_a_json_float_quantity_is_refused(
    live: Live, partner: IssuedCredential, number: bytes
) -> None:
    before = await row_counts(live)
    body = orjson.dumps(event(quantities={"distance_m": 0})).replace(
        b'"distance_m":0', b'"distance_m":' + number
    )
    assert number in body
    response = await signed(live, partner, "POST", "/v1/partner/events", body)
    if number == b"1e400":  # beyond a double: the JSON parser refuses it first
        assert response.status_code == 400
        assert response.json()["type"].endswith("/malformed-body")
    else:
        assert_field_problem(response, "body", "quantities", "distance_m")
    assert await row_counts(live) == before


async def test_exact_decimals_written_as_strings_are_credited(
    live: Live, partner: IssuedCredential
) -> None:
    rider = await live.participant()
    await live.link(rider, partner, CARD)
    body = orjson.dumps(event(quantities={"distance_m": "12345.0", "duration_s": 1500}))
    response = await signed(live, partner, "POST", "/v1/partner/events", body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "credited"
    assert await live.balance(rider) == TRIP_POINTS


async def test_in_a_batch_only_the_bad_events_are_refused(
    live: Live, partner: IssuedCredential
) -> None:
    rider = await live.participant()
    await live.link(rider, partner, CARD)
    good = metro("good-1", card=CARD).to_json()
    later = metro("good-2", card=CARD, occurred_at=TRIP_AT.replace(minute=59)).to_json()
    bad = [
        {**good, "external_id": "nul-place", "place_ids": ["a\u0000b"]},
        {**good, "external_id": "nul-text", "quantities": {"distance_m": 1, "line": "\u0000"}},
        {**good, "external_id": "long-region", "region": "CN-AAAAAA-BBBBBB-CCCCCC"},
    ]
    body = orjson.dumps({"events": [good, *bad, later]})
    float_event = b'{"external_id":"float","action_type":"transit.metro","occurred_at":"' + (
        TRIP_AT.isoformat().encode()
        + b'","subject_ref":"'
        + CARD.encode()
        + b'","quantities":{"distance_m":8000.5}}'
    )
    body = body[:-2] + b"," + float_event + b"]}"
    before = await row_counts(live)
    response = await signed(live, partner, "POST", "/v1/partner/event-batches", body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["external_id"] for r in results] == [
        "good-1",
        "nul-place",
        "nul-text",
        "long-region",
        "good-2",
        "float",
    ]
    assert [r["status"] for r in results] == ["credited", *["rejected"] * 3, "credited", "rejected"]
    assert_outcome_problem(results[1], "events", "1", "place_ids")
    assert_outcome_problem(results[2], "events", "2", "quantities")
    assert_outcome_problem(results[3], "events", "3", "region")
    assert_outcome_problem(results[5], "events", "5", "quantities", "distance_m")
    assert await live.balance(rider) == 2 * TRIP_POINTS
    after = await row_counts(live)
    # Exactly the two good events were written: no row for any rejected one.
    assert after["partner_events"] - before["partner_events"] == 2
    assert after["credits"] - before["credits"] == 2


@pytest.mark.parametrize(
    "target",
    [
        "/v1/partner/outcomes?after=99999999999999999999",
        "/v1/partner/outcomes?cursor=99999999999999999999",
        "/v1/partner/outcomes?limit=" + HUGE,
    ],
)
async def test_huge_partner_cursors_are_a_422(
    live: Live, partner: IssuedCredential, target: str
) -> None:
    before = await row_counts(live)
    response = await signed(live, partner, "GET", target)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert await row_counts(live) == before


async def test_a_nul_in_a_retraction_reason_is_a_422(live: Live, partner: IssuedCredential) -> None:
    before = await row_counts(live)
    body = orjson.dumps({"reason": "wrong\u0000"})
    response = await signed(live, partner, "POST", "/v1/partner/events/trip-1/retraction", body)
    assert_field_problem(response, "body", "reason")
    assert await row_counts(live) == before


# --- the app ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"display_name": "Xiao\u0000Ming"}, "display_name"),
        ({"display_name": "Xiao\u0007Ming"}, "display_name"),
        ({"display_name": "x" * 121}, "display_name"),
        ({"region": "CN-AAAAA-BBBBB-CC"}, "region"),
        ({"region": "CN-AAAAAA-BBBBBB-CCCCCC"}, "region"),
        ({"login": "a\u0000b@example.com"}, "login"),
    ],
    ids=["nul-name", "bell-name", "name-121", "region-17", "region-23", "nul-login"],
)
async def test_bad_registrations_are_a_422_naming_the_field(
    live: Live, http: httpx.AsyncClient, changes: dict[str, Any], field: str
) -> None:
    before = await row_counts(live)
    body = {
        "login": "13800000000",
        "password": "correct horse battery staple",
        "display_name": "Xiao Ming",
        **changes,
    }
    response = await http.post("/v1/app/register", json=body)
    assert_field_problem(response, "body", field)
    assert await row_counts(live) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Green\u0000Cafe"}, "name"),
        ({"name": "x" * 121}, "name"),
        ({"name": "x" * 200}, "name"),
        ({"name": "Green Cafe", "region": "CN-AAAAAA-BBBBBB-CCCCCC"}, "region"),
        ({"name": "Green Cafe", "region": "CN-AAAAA-BBBBB-CC"}, "region"),
    ],
    ids=["nul-name", "name-121", "name-200", "region-23", "region-17"],
)
async def test_bad_organisations_are_a_422_naming_the_field(
    live: Live, http: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    user = await register(http)
    before = await row_counts(live)
    response = await http.post(
        "/v1/app/organisations", json=body, headers=bearer(user.access_token)
    )
    assert_field_problem(response, "body", field)
    assert await row_counts(live) == before


async def test_the_longest_allowed_organisation_name_is_stored(
    live: Live, http: httpx.AsyncClient
) -> None:
    user = await register(http)
    response = await http.post(
        "/v1/app/organisations", json={"name": "x" * 120}, headers=bearer(user.access_token)
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "x" * 120


@pytest.mark.parametrize(
    ("method", "target", "location"),
    [
        ("GET", "/v1/app/offers?merchant=demo%00cafe", ("query", "merchant")),
        ("GET", "/v1/app/offers?region=CN-AAAAAA-BBBBBB-CCCCCC", ("query", "region")),
        ("GET", "/v1/app/offers?cursor=" + HUGE, ("query", "cursor")),
        ("DELETE", "/v1/app/identity-links/" + HUGE, ("path", "link_id")),
        ("DELETE", "/v1/app/identity-links/0", ("path", "link_id")),
        ("GET", f"/v1/app/credits/{HUGE}/explanation", ("path", "credit_id")),
        ("GET", "/v1/app/history?cursor=" + HUGE, ("query", "cursor")),
        ("GET", "/v1/app/reductions?cursor=" + HUGE, ("query", "cursor")),
        ("GET", "/v1/app/identity-links?cursor=" + HUGE, ("query", "cursor")),
        ("GET", "/v1/app/leaderboards/regions/CN-JX?cursor=" + HUGE, ("query", "cursor")),
        ("GET", "/v1/app/leaderboards/regions/CN-AAAAAA-BBBBBB-CCCCCC", ("path", "region")),
    ],
)
async def test_bad_paths_and_queries_are_a_422_naming_the_parameter(
    live: Live, http: httpx.AsyncClient, method: str, target: str, location: tuple[str, ...]
) -> None:
    user = await register(http)
    before = await row_counts(live)
    response = await http.request(method, target, headers=bearer(user.access_token))
    assert_field_problem(response, *location)
    assert await row_counts(live) == before


async def test_a_nul_in_a_link_token_is_a_422(live: Live, http: httpx.AsyncClient) -> None:
    user = await register(http)
    before = await row_counts(live)
    response = await http.post(
        "/v1/app/identity-links",
        json={"token": "eyJ0eXAiOiJ\u0000jcC1saW5rIn0"},
        headers=bearer(user.access_token),
    )
    assert_field_problem(response, "body", "token")
    assert await row_counts(live) == before
