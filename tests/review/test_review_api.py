"""The review queue's admin API, end to end: rules set (audited), events flagged through the
partner API, the queue filtered, paged and assigned, decisions refused twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from service.models import AdminAuditEntry
from service.review.rules import OFF
from tests.admin.conftest import SignedIn, make_admin
from tests.crediting.conftest import TRIP_AT, Live, metro
from tests.crediting.test_set_based import _riders


@pytest.fixture
async def admin_http(live: Live) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=live.transport, base_url="http://test") as http:
        yield http
    live.app.state.flag_rules.current = OFF  # no rule outlives the test in this process


async def test_the_queue_through_the_admin_api(
    live: Live, admin_http: httpx.AsyncClient, reviewers: tuple[SignedIn, SignedIn]
) -> None:
    lead, second = reviewers
    async with live.sessionmaker() as session, session.begin():
        auditor = await make_admin(live.app, session, "auditor")

    # The rules: thresholds checked, a change audited and in force in this process at once.
    bad = await admin_http.put(
        "/v1/admin/review/rules/velocity",
        json={"enabled": True, "params": {"max_trips": 1.5}},
        headers=lead.headers,
    )
    assert bad.status_code == 422, bad.text
    assert bad.json()["type"].endswith("/review-rule-invalid")
    unknown = await admin_http.put(
        "/v1/admin/review/rules/velocity",
        json={"enabled": True, "params": {"max_trps": 1}},
        headers=lead.headers,
    )
    assert unknown.status_code == 422
    saved = await admin_http.put(
        "/v1/admin/review/rules/velocity",
        json={"enabled": True, "params": {"max_trips": 1}},
        headers=lead.headers,
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["params"]["max_trips"] == 1
    assert saved.json()["params"]["window_minutes"] == 60
    assert live.app.state.flag_rules.current.velocity.max_trips == 1
    listed = await admin_http.get("/v1/admin/review/rules", headers=auditor.headers)
    assert {r["rule"]: r["enabled"] for r in listed.json()["items"]} == {
        "velocity": True,
        "overlap": False,
        "travel": False,
        "identity_churn": False,
        "partner_volume": False,
    }

    # Events through the partner API: each rider's second trip within the hour is flagged.
    metro_co = await live.partner("metro-co")
    cards = [f"62223000000000{i:02d}" for i in range(5)]
    await _riders(live, metro_co.partner_id, cards)
    async with live.client(metro_co) as client:
        outcomes = await client.submit_events(
            [
                metro(f"api-{card}-{n}", card=card, occurred_at=TRIP_AT + timedelta(minutes=20 * n))
                for card in cards
                for n in range(2)
            ]
        )
    assert {o.status for o in outcomes} == {"credited"}
    flagged_ids = sorted((int(o.credit_id or 0) for o in outcomes[1::2]), reverse=True)

    async def page(**params: str) -> list[int]:
        response = await admin_http.get(
            "/v1/admin/review/flags", params=params, headers=lead.headers
        )
        assert response.status_code == 200, response.text
        return [int(item["credit_id"]) for item in response.json()["items"]]

    assert await page() == flagged_ids
    assert await page(rule="velocity") == flagged_ids
    assert await page(rule="overlap") == []
    assert await page(partner_id=str(metro_co.partner_id)) == flagged_ids
    assert await page(partner_id=str(uuid.uuid4())) == []
    assert await page(since=(datetime.now(UTC) + timedelta(hours=1)).isoformat()) == []
    assert await page(until=(datetime.now(UTC) + timedelta(hours=1)).isoformat()) == flagged_ids
    assert await page(status="approved") == []
    assert await page(assignee="none") == flagged_ids

    # Keyset pages: every flag once, newest first.
    seen: list[int] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = await admin_http.get(
            "/v1/admin/review/flags", params=params, headers=auditor.headers
        )
        body = response.json()
        seen += [int(item["credit_id"]) for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == flagged_ids

    # What the reviewer sees of one: the rule and its figures.
    first = flagged_ids[0]
    detail = await admin_http.get(f"/v1/admin/review/flags/{first}", headers=lead.headers)
    assert detail.json()["details"] == [
        {"rule": "velocity", "trips": 2, "window_minutes": 60, "max_trips": 1}
    ]

    # Assignment: to an active reviewer only; filters by assignee.
    refused = await admin_http.post(
        f"/v1/admin/review/flags/{first}/assign",
        json={"assignee": str(auditor.admin.id)},
        headers=lead.headers,
    )
    assert refused.status_code == 422
    assert refused.json()["type"].endswith("/review-assignee-not-reviewer")
    assigned = await admin_http.post(
        f"/v1/admin/review/flags/{first}/assign",
        json={"assignee": str(second.admin.id)},
        headers=lead.headers,
    )
    assert assigned.status_code == 200, assigned.text
    assert await page(assignee=str(second.admin.id)) == [first]
    assert await page(assignee="me") == []
    assert first not in await page(assignee="none")

    # Decisions: once each; a rejection needs a known reason.
    approved = await admin_http.post(
        f"/v1/admin/review/flags/{first}/approve", json={}, headers=second.headers
    )
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    again = await admin_http.post(
        f"/v1/admin/review/flags/{first}/reject",
        json={"reason": "partner_error"},
        headers=lead.headers,
    )
    assert again.status_code == 409
    assert again.json()["type"].endswith("/review-already-decided")
    unknown_reason = await admin_http.post(
        f"/v1/admin/review/flags/{flagged_ids[1]}/reject",
        json={"reason": "because"},
        headers=lead.headers,
    )
    assert unknown_reason.status_code == 422
    control = await admin_http.post(
        f"/v1/admin/review/flags/{flagged_ids[1]}/reject",
        json={"reason": "partner_error", "note": "bad\x00note"},
        headers=lead.headers,
    )
    assert control.status_code == 422
    rejected = await admin_http.post(
        f"/v1/admin/review/flags/{flagged_ids[1]}/reject",
        json={"reason": "partner_error", "note": "the feed double-sent"},
        headers=lead.headers,
    )
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["reason_text"] == (
        "taken back after review: the partner reported the action in error"
    )
    missing = await admin_http.post(
        "/v1/admin/review/flags/999999999/approve", json={}, headers=lead.headers
    )
    assert missing.status_code == 404
    assert await page(status="open") == flagged_ids[2:]

    async with live.sessionmaker() as session:
        actions = list(
            await session.scalars(
                select(AdminAuditEntry.action)
                .where(AdminAuditEntry.action.like("review.%"))
                .order_by(AdminAuditEntry.id)
            )
        )
    assert actions == ["review.rule.set", "review.assign", "review.approve", "review.reject"]
