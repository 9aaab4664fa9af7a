"""The review queue's console pages over HTTP (httpx against the real app, committing):
the queue with its filters and pages, a flagged credit's explanation, assignment, a decision
through the page (audited, through the same service as the API), a second decision refused,
two reviewers deciding at once, and the roles of the API (reviewers decide; program
administrators and auditors read)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select

from service.console import endpoints
from service.models import AdminAuditEntry, LedgerTransaction, ReviewFlag
from tests.console.conftest import Enrolled, csrf_of, enrol, log_in
from tests.crediting.conftest import Live
from tests.review.test_review_queue import _flagged_credit

HTML = "text/html; charset=utf-8"


def _card() -> str:
    return "62" + "".join(random.choices("0123456789", k=14))


async def _flag(live: Live) -> tuple[uuid.UUID, int]:
    """A credit flagged by the velocity rule as the crediting path made it: its participant
    and credit id."""
    participant, outcome = await _flagged_credit(live, _card())
    assert outcome.credit_id is not None
    return participant, int(outcome.credit_id)


@pytest.fixture
async def pages(live: Live) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=live.transport, base_url="https://console.test") as http:
        yield http


async def _signed_in(live: Live, client: httpx.AsyncClient, *roles: str) -> Enrolled:
    async with live.sessionmaker() as session, session.begin():
        who = await enrol(live.app, session, *roles)
    response = await log_in(client, who)
    assert response.status_code == 303, response.text
    return who


async def _flag_row(live: Live, credit_id: int) -> ReviewFlag:
    async with live.sessionmaker() as session:
        flag = await session.get(ReviewFlag, credit_id)
    assert flag is not None
    return flag


async def _reversals(live: Live) -> int:
    async with live.sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.kind == "reversal")
        )
    return int(count or 0)


async def test_a_reviewer_assigns_and_rejects_a_flagged_credit_and_a_second_decision_is_refused(
    live: Live, pages: httpx.AsyncClient
) -> None:
    _, credit_id = await _flag(live)
    who = await _signed_in(live, pages, "reviewer")

    queue = await pages.get("/admin/review")
    assert queue.status_code == 200 and queue.headers["content-type"] == HTML
    assert f'<tr id="flag-{credit_id}" data-status="open">' in queue.text
    assert "<h1>Review queue</h1>" in queue.text
    page = await pages.get(f"/admin/review/{credit_id}")
    assert page.status_code == 200
    assert "<code>velocity</code>" in page.text  # the rule broken, with its figures
    assert "<code>trips</code> = 2" in page.text
    assert 'id="assign-me"' in page.text and 'id="reject"' in page.text
    token = csrf_of(page.text)

    assigned = await pages.post(
        f"/admin/review/{credit_id}/assign", data={"csrf_token": token, "to": "me"}
    )
    assert assigned.status_code == 303
    assert assigned.headers["location"] == f"/admin/review/{credit_id}?done=assigned"
    assert (await _flag_row(live, credit_id)).assignee == who.admin.id
    mine = await pages.get("/admin/review?assignee=me")
    assert f'id="flag-{credit_id}"' in mine.text
    unassigned = await pages.get("/admin/review?assignee=none")
    assert f'id="flag-{credit_id}"' not in unassigned.text

    # Bad input is a page saying so, and decides nothing.
    for fields in (
        {"reason": "because"},
        {"reason": ""},
        {"reason": "not_eligible", "note": "nul\x00byte"},
        {"reason": "not_eligible", "note": "x" * 501},
    ):
        refused = await pages.post(
            f"/admin/review/{credit_id}/reject", data={"csrf_token": token, **fields}
        )
        assert refused.status_code == 422, fields
        assert 'data-problem-type="validation-error"' in refused.text
    assert (await _flag_row(live, credit_id)).status == "open"

    rejected = await pages.post(
        f"/admin/review/{credit_id}/reject",
        data={"csrf_token": token, "reason": "implausible_trips", "note": "farmed 农场"},
    )
    assert rejected.status_code == 303, rejected.text
    shown = await pages.get(rejected.headers["location"])
    assert 'id="flag-status" data-status="rejected"' in shown.text
    assert "the trips reported are more than one person can make" in shown.text
    assert "farmed 农场" in shown.text
    assert 'id="reject"' not in shown.text  # decided: no more buttons
    flag = await _flag_row(live, credit_id)
    assert (flag.status, flag.reason, flag.note, flag.decided_by) == (
        "rejected",
        "implausible_trips",
        "farmed 农场",
        who.admin.id,
    )
    assert await _reversals(live) == 1

    # A second decision, either way, is refused and changes nothing.
    for act, fields in (("approve", {}), ("reject", {"reason": "partner_error"})):
        again = await pages.post(
            f"/admin/review/{credit_id}/{act}", data={"csrf_token": token, **fields}
        )
        assert again.status_code == 409, act
        assert 'data-problem-type="review-already-decided"' in again.text
    flag = await _flag_row(live, credit_id)
    assert (flag.status, flag.reason) == ("rejected", "implausible_trips")
    assert await _reversals(live) == 1

    async with live.sessionmaker() as session:
        acts = (
            await session.execute(
                select(AdminAuditEntry.action, AdminAuditEntry.admin_id, AdminAuditEntry.role)
                .where(AdminAuditEntry.target_id == str(credit_id))
                .order_by(AdminAuditEntry.id)
            )
        ).all()
    assert [tuple(a) for a in acts] == [
        ("review.assign", who.admin.id, "reviewer"),
        ("review.reject", who.admin.id, "reviewer"),
    ]

    # The open queue no longer shows it; the rejected one does.
    assert f'id="flag-{credit_id}"' not in (await pages.get("/admin/review")).text
    done = await pages.get("/admin/review?status=rejected")
    assert f'<tr id="flag-{credit_id}" data-status="rejected">' in done.text
    missing = await pages.get("/admin/review/999999999")
    assert (
        missing.status_code == 404 and 'data-problem-type="review-flag-not-found"' in missing.text
    )
    missing_act = await pages.post("/admin/review/999999999/approve", data={"csrf_token": token})
    assert missing_act.status_code == 404


async def test_an_approval_through_the_page_releases_the_points_and_is_audited(
    live: Live, pages: httpx.AsyncClient
) -> None:
    participant, credit_id = await _flag(live)
    before = await live.balance(participant)
    who = await _signed_in(live, pages, "reviewer")
    token = csrf_of((await pages.get(f"/admin/review/{credit_id}")).text)
    approved = await pages.post(
        f"/admin/review/{credit_id}/approve", data={"csrf_token": token, "note": "checked"}
    )
    assert approved.status_code == 303
    flag = await _flag_row(live, credit_id)
    assert (flag.status, flag.note, flag.decided_by) == ("approved", "checked", who.admin.id)
    assert await live.balance(participant) > before  # the held points are available now
    assert await _reversals(live) == 0
    async with live.sessionmaker() as session:
        acts = (
            await session.scalars(
                select(AdminAuditEntry.action).where(AdminAuditEntry.target_id == str(credit_id))
            )
        ).all()
    assert acts == ["review.approve"]


async def test_two_reviewers_deciding_at_once_through_the_pages_one_decision_wins(
    live: Live,
) -> None:
    _, credit_id = await _flag(live)
    transport = live.transport
    async with (
        httpx.AsyncClient(transport=transport, base_url="https://console.test") as first,
        httpx.AsyncClient(transport=transport, base_url="https://console.test") as second,
    ):
        await _signed_in(live, first, "reviewer")
        await _signed_in(live, second, "reviewer")
        tokens = [
            csrf_of((await c.get(f"/admin/review/{credit_id}")).text) for c in (first, second)
        ]
        answers = await asyncio.gather(
            first.post(f"/admin/review/{credit_id}/approve", data={"csrf_token": tokens[0]}),
            second.post(
                f"/admin/review/{credit_id}/reject",
                data={"csrf_token": tokens[1], "reason": "partner_error"},
            ),
        )
    assert sorted(a.status_code for a in answers) == [303, 409]
    flag = await _flag_row(live, credit_id)
    winner = "approved" if answers[0].status_code == 303 else "rejected"
    assert flag.status == winner
    assert await _reversals(live) == (1 if winner == "rejected" else 0)
    async with live.sessionmaker() as session:
        decisions = await session.scalar(
            select(func.count())
            .select_from(AdminAuditEntry)
            .where(
                AdminAuditEntry.target_id == str(credit_id),
                AdminAuditEntry.action.in_(("review.approve", "review.reject")),
            )
        )
    assert decisions == 1


@pytest.mark.parametrize("role", ["auditor", "program-admin"])
async def test_auditors_and_programme_administrators_read_but_do_not_decide(
    live: Live, pages: httpx.AsyncClient, role: str
) -> None:
    _, credit_id = await _flag(live)
    await _signed_in(live, pages, role)
    queue = await pages.get("/admin/review")
    assert queue.status_code == 200 and f'id="flag-{credit_id}"' in queue.text
    page = await pages.get(f"/admin/review/{credit_id}")
    assert page.status_code == 200
    assert 'id="reject"' not in page.text and 'id="assign-me"' not in page.text
    assert "Only reviewers decide flagged credits." in page.text
    token = csrf_of(page.text)
    for act, fields in (
        ("assign", {"to": "me"}),
        ("approve", {}),
        ("reject", {"reason": "not_eligible"}),
    ):
        refused = await pages.post(
            f"/admin/review/{credit_id}/{act}", data={"csrf_token": token, **fields}
        )
        assert refused.status_code == 403, act
        assert 'data-problem-type="role-required"' in refused.text
    assert (await _flag_row(live, credit_id)).status == "open"


async def test_the_queue_filters_and_pages(
    live: Live, pages: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, older = await _flag(live)
    _, newer = await _flag(live)
    partner = (await _flag_row(live, older)).partner_id
    await _signed_in(live, pages, "reviewer")
    monkeypatch.setattr(endpoints, "PAGE_SIZE", 1)
    first = await pages.get("/admin/review?rule=velocity")
    assert f'id="flag-{newer}"' in first.text and f'id="flag-{older}"' not in first.text
    assert 'id="next-page"' in first.text
    next_url = next(
        part.split('"', 1)[0]
        for part in first.text.split('href="')[1:]
        if part.startswith("/admin/review?") and "cursor=" in part
    )
    assert "rule=velocity" in next_url and "status=open" in next_url
    second = await pages.get(next_url.replace("&amp;", "&"))
    assert f'id="flag-{older}"' in second.text and f'id="flag-{newer}"' not in second.text
    monkeypatch.setattr(endpoints, "PAGE_SIZE", 50)

    by_partner = await pages.get(f"/admin/review?partner={partner}")
    assert f'id="flag-{older}"' in by_partner.text and f'id="flag-{newer}"' not in by_partner.text
    other_rule = await pages.get("/admin/review?rule=overlap")
    assert 'id="no-flags"' in other_rule.text
    # An empty form field is no filter; the range is in the programme's local days.
    everything = await pages.get(
        "/admin/review?status=any&rule=&partner=&assignee=&from=2000-01-01&to=2999-12-31"
    )
    assert f'id="flag-{older}"' in everything.text and f'id="flag-{newer}"' in everything.text
    long_ago = await pages.get("/admin/review?from=2001-01-01&to=2001-01-31")
    assert 'id="no-flags"' in long_ago.text
    for bad in (
        "status=maybe",
        "rule=nonsense",
        "partner=not-a-uuid",
        "assignee=someone",
        "from=2026-02-31",
        "to=9999-12-31",
        "from=0001-01-01",
        "cursor=abc",
    ):
        response = await pages.get(f"/admin/review?{bad}")
        assert response.status_code == 422, bad


async def test_the_queue_speaks_chinese_to_a_chinese_browser(
    live: Live, pages: httpx.AsyncClient
) -> None:
    _, credit_id = await _flag(live)
    await _signed_in(live, pages, "reviewer")
    headers = {"accept-language": "zh-CN,zh"}
    queue = await pages.get("/admin/review", headers=headers)
    assert "<h1>审核队列</h1>" in queue.text
    page = await pages.get(f"/admin/review/{credit_id}", headers=headers)
    assert "拒绝" in page.text and "Reject" not in page.text
