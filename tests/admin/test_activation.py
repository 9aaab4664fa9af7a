"""An activation at instant T under concurrent load: events at T-1 s credit under the old
version, events at T under the new one. Then the audit trail verifies, and a tampered row
is named by `audit verify`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.audit import verify_audit
from tests.admin.conftest import make_admin
from tests.admin.test_lifecycle import metro_v2
from tests.crediting.conftest import Live, metro


async def test_activation_at_t_splits_concurrent_events_exactly(
    live: Live, committed: AsyncEngine
) -> None:
    async with live.sessionmaker() as session, session.begin():
        author = await make_admin(live.app, session, "methodology-author")
        approver = await make_admin(live.app, session, "methodology-approver")
    lead = live.app.state.settings.methodology_min_lead_seconds
    switch = (datetime.now(UTC) + timedelta(seconds=lead + 5)).replace(microsecond=0)
    async with httpx.AsyncClient(transport=live.transport, base_url="http://test") as admin:
        draft = await admin.post(
            "/v1/admin/methodology-drafts",
            json={"source_yaml": metro_v2()},
            headers=author.headers,
        )
        draft_id = draft.json()["id"]
        await admin.post(
            f"/v1/admin/methodology-drafts/{draft_id}/approve", headers=approver.headers
        )
        scheduled = await admin.post(
            f"/v1/admin/methodology-drafts/{draft_id}/schedule",
            json={"activate_at": switch.isoformat()},
            headers=approver.headers,
        )
        assert scheduled.status_code == 200, scheduled.text

    metro_co = await live.partner("metro-co")
    riders = [await live.participant() for _ in range(4)]
    for i, rider in enumerate(riders):
        await live.link(rider, metro_co, f"622202000000000{i}")

    async def send(i: int) -> list[tuple[str, int | None, int]]:
        card = f"622202000000000{i % 4}"
        events = [
            metro(
                f"r{i}-{side}",
                card=card,
                occurred_at=switch + timedelta(seconds=offset),
                quantities={"distance_m": 2000, "duration_s": 600},
            )
            for side, offset in (("before", -1), ("at", 0))
        ]
        async with live.client(metro_co) as client:
            if i % 2:
                outcomes = await client.submit_events(events)
            else:
                outcomes = [await client.submit_event(e) for e in events]
        return [(o.external_id, o.methodology_version, o.grams) for o in outcomes]

    results = [row for rows in await asyncio.gather(*(send(i) for i in range(8))) for row in rows]
    assert len(results) == 16
    for external_id, version, grams in results:
        if external_id.endswith("before"):
            assert (version, grams) == (1, 93), external_id  # 2 km x 46.7 g/km
        else:
            assert (version, grams) == (2, 100), external_id  # 2 km x 50 g/km

    report = await verify_audit(committed)
    assert report.ok, report.problems
    assert report.entries == 3  # draft, approve, schedule
    async with committed.begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        tampered = await conn.scalar(
            text(
                "UPDATE admin_audit_log SET actor = 'someone-else' "
                "WHERE action = 'methodology.approve' RETURNING id"
            )
        )
    report = await verify_audit(committed)
    assert not report.ok
    assert report.problems == [f"audit entry {tampered}: content does not match its hash (edited)"]


async def test_the_audit_log_refuses_changes(live: Live, committed: AsyncEngine) -> None:
    async with live.sessionmaker() as session, session.begin():
        await make_admin(live.app, session, "program-admin")
    async with httpx.AsyncClient(transport=live.transport, base_url="http://test") as admin:
        async with live.sessionmaker() as session, session.begin():
            boss = await make_admin(live.app, session, "program-admin")
        created = await admin.post(
            "/v1/admin/administrators",
            json={
                "login": "aud",
                "display_name": "Aud",
                "password": "correct horse battery staple",
                "roles": ["auditor"],
            },
            headers=boss.headers,
        )
        assert created.status_code == 201
    for statement in (
        "UPDATE admin_audit_log SET actor = 'x'",
        "DELETE FROM admin_audit_log",
        "TRUNCATE admin_audit_log",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with committed.begin() as conn:
                await conn.execute(text(statement))
    assert (await verify_audit(committed)).entries == 1
