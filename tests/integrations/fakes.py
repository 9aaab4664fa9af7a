"""A scripted partner API behind httpx.MockTransport, and a signature check done by hand."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx

from integrations import Event

KEY_ID = "pk_2f6c0d9e4b1a7c3e5f8d0a2b"
SECRET = "cpsk_ZXhhbXBsZSBzZWNyZXQ6IGRvY3MgJiB0ZXN0cyEhISE"
SUBJECT_REF = "card-8888-0001"
BASE_URL = "http://carbon-points.test"
NOW = 1767225600  # 2026-01-01T00:00:00Z
CST = dt.timezone(dt.timedelta(hours=8))

Responder = Callable[[httpx.Request], httpx.Response]


def make_event(n: int = 1, **overrides: Any) -> Event:
    fields: dict[str, Any] = {
        "external_id": f"metro-2026-{n:06d}",
        "action_type": "transit.metro",
        "occurred_at": dt.datetime(2026, 1, 1, 8, 30, tzinfo=CST),
        "subject_ref": SUBJECT_REF,
        "quantities": {"distance_m": 12345, "duration_s": 1500},
    }
    fields.update(overrides)
    return Event(**fields)


def outcome_json(external_id: str, status: str = "credited", **extra: Any) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "status": status,
        "grams": 321,
        "points": 3,
        "credit_id": "cr_1",
        "methodology_id": "transit.metro",
        "methodology_version": 2,
        "duplicate_of": None,
        "reasons": [],
        "problem": None,
        "received_at": "2026-01-01T00:00:01Z",
        **extra,
    }


def problem(status: int, slug: str, detail: str = "details", **extra: Any) -> httpx.Response:
    body = {
        "type": f"https://carbon-points.dev/problems/{slug}",
        "title": slug.replace("-", " ").capitalize(),
        "status": status,
        "detail": detail,
        **extra,
    }
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


def expected_signature(request: httpx.Request, secret: str = SECRET) -> str:
    """Recompute the partner signature from what actually went over the wire."""
    content = (
        ".".join(
            [
                request.headers["webhook-key-id"],
                request.headers["webhook-id"],
                request.headers["webhook-timestamp"],
                request.method,
                request.url.raw_path.decode("ascii"),
            ]
        ).encode()
        + b"."
        + request.content
    )
    digest = hmac.new(secret.encode(), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class FakeAPI:
    """Answers requests from a script (one responder per call; the last one repeats)."""

    def __init__(self, *script: Responder | httpx.Response) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        step = self.script[min(len(self.requests), len(self.script)) - 1]
        return step(request) if callable(step) else step

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) for r in self.requests]


def echo_outcome(request: httpx.Request) -> httpx.Response:
    """200 with a credited outcome for the submitted event (or the path's external_id)."""
    if request.content:
        body = json.loads(request.content)
        external_id = body.get("external_id") or request.url.path.split("/")[-2]
    else:
        external_id = request.url.path.rsplit("/", 1)[-1]
    return httpx.Response(200, json=outcome_json(external_id))


def echo_batch(request: httpx.Request) -> httpx.Response:
    events = json.loads(request.content)["events"]
    return httpx.Response(200, json={"results": [outcome_json(e["external_id"]) for e in events]})


class Sleeps:
    """A fake sleep that records instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.calls.append(seconds)


class Clock:
    """Ticks one second per reading, so every attempt gets a distinct timestamp."""

    def __init__(self, start: float = NOW) -> None:
        self.now = start

    def __call__(self) -> float:
        value = self.now
        self.now += 1
        return value


def decimal_body(request: httpx.Request) -> Any:
    return json.loads(request.content, parse_float=Decimal)
