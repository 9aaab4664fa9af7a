"""Undoing a schedule: before its instant the filed version goes, the draft is approved again
and the previous version's period is back exactly as it was; audited; refused (409) once the
instant has passed or is too near, and the database refuses it too."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service.cli import main as cli_main
from service.config import Settings
from service.methodologies import lifecycle
from service.methodologies.service import sync_library
from service.models import AdminAuditEntry, MethodologyDraft, MethodologyVersion
from tests.admin.conftest import make_admin
from tests.admin.test_lifecycle import metro_v2
from tests.crediting.conftest import Live

LEAD = timedelta(seconds=60)


async def _metro_rows(db: AsyncSession) -> dict[int, dict[str, Any]]:
    rows = (
        await db.execute(
            select(MethodologyVersion.__table__).where(
                MethodologyVersion.methodology_id == "transit.metro"
            )
        )
    ).all()
    return {row.version: dict(row._mapping) for row in rows}


async def _approved_v2(app: FastAPI, db: AsyncSession) -> tuple[int, Any, Any]:
    author = await make_admin(app, db, "methodology-author")
    approver = await make_admin(app, db, "methodology-approver")
    draft = await lifecycle.create_draft(db, author.admin_actor, metro_v2())
    await lifecycle.approve(db, approver.admin_actor, draft.id)
    return draft.id, author, approver


async def test_unschedule_restores_the_previous_period_exactly_and_is_audited(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await sync_library(db)
    draft_id, _, approver = await _approved_v2(app, db)
    untouched = await _metro_rows(db)
    assert untouched[1]["effective_to"] is None
    at = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    scheduled = await client.post(
        f"/v1/admin/methodology-drafts/{draft_id}/schedule",
        json={"activate_at": at.isoformat()},
        headers=approver.headers,
    )
    assert scheduled.status_code == 200, scheduled.text
    assert (await _metro_rows(db))[1]["effective_to"] == at

    undone = await client.post(
        f"/v1/admin/methodology-drafts/{draft_id}/unschedule", headers=approver.headers
    )
    assert undone.status_code == 200, undone.text
    assert undone.json()["reopens"] == "transit.metro@v1"
    assert undone.json()["draft"]["status"] == "approved"
    assert undone.json()["draft"]["activate_at"] is None
    assert await _metro_rows(db) == untouched  # v2 unfiled, v1 exactly as it was
    entry = await db.scalar(
        select(AdminAuditEntry).where(AdminAuditEntry.action == "methodology.unschedule")
    )
    assert entry is not None
    assert (entry.actor, entry.role, entry.target_id) == (
        approver.admin.login,
        "methodology-approver",
        str(draft_id),
    )
    assert entry.before_digest != entry.after_digest
    assert entry.detail["reopens"] == "transit.metro v1"
    again = await client.post(
        f"/v1/admin/methodology-drafts/{draft_id}/unschedule", headers=approver.headers
    )
    assert again.status_code == 409
    assert again.json()["type"].endswith("/methodology-lifecycle-conflict")

    # Approved again, it can be scheduled again, at another instant.
    later = at + timedelta(days=1)
    rescheduled = await client.post(
        f"/v1/admin/methodology-drafts/{draft_id}/schedule",
        json={"activate_at": later.isoformat()},
        headers=approver.headers,
    )
    assert rescheduled.status_code == 200, rescheduled.text
    rows = await _metro_rows(db)
    assert rows[1]["effective_to"] == later == rows[2]["effective_from"]


async def test_unschedule_is_refused_once_the_instant_has_passed_or_is_too_near(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await sync_library(db)
    draft_id, _, approver = await _approved_v2(app, db)
    # Scheduled an hour ago (for an instant half an hour ago): in force now.
    past = datetime.now(UTC) - timedelta(minutes=30)
    await lifecycle.schedule(
        db, approver.admin_actor, draft_id, past, min_lead=LEAD, now=past - timedelta(hours=1)
    )
    before = await _metro_rows(db)
    refused = await client.post(
        f"/v1/admin/methodology-drafts/{draft_id}/unschedule", headers=approver.headers
    )
    assert refused.status_code == 409
    body = refused.json()
    assert body["type"].endswith("/unschedule-too-late")
    assert "came into force" in body["detail"]
    assert refused.headers["content-type"] == "application/problem+json"
    assert await _metro_rows(db) == before
    assert (
        await db.scalar(
            select(AdminAuditEntry.id).where(AdminAuditEntry.action == "methodology.unschedule")
        )
    ) is None

    # The database refuses it as well: a version in force is never removed, a past closing
    # never withdrawn.
    with pytest.raises(DBAPIError, match="never removed"):
        async with db.begin_nested():
            await db.execute(text("DELETE FROM methodology_versions WHERE version = 2"))
    with pytest.raises(DBAPIError, match="immutable"):
        async with db.begin_nested():
            await db.execute(
                text("UPDATE methodology_versions SET effective_to = NULL WHERE version = 1")
            )
    with pytest.raises(DBAPIError, match="never change"):
        async with db.begin_nested():
            await db.execute(text("UPDATE methodology_drafts SET activate_at = NULL"))


async def test_unschedule_is_refused_within_the_lead_and_the_clock_skew(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await sync_library(db)
    draft_id, _, approver = await _approved_v2(app, db)
    # Two minutes ahead: beyond the 60 s lead, within the metro's 300 s allowed clock skew
    # (an event dated at the instant may have been accepted already).
    soon = datetime.now(UTC) + timedelta(minutes=2)
    await lifecycle.schedule(db, approver.admin_actor, draft_id, soon, min_lead=LEAD)
    refused = await client.post(
        f"/v1/admin/methodology-drafts/{draft_id}/unschedule", headers=approver.headers
    )
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("/unschedule-too-late")
    assert "too near" in refused.json()["detail"]


async def test_unschedule_reopens_only_what_the_schedule_closed_and_not_under_a_successor(
    app: FastAPI, db: AsyncSession
) -> None:
    await sync_library(db)
    draft_id, author, approver = await _approved_v2(app, db)
    at = datetime.now(UTC) + timedelta(days=2)
    # v1 retired at T first; v2 then scheduled at T closes nothing.
    await lifecycle.retire(db, approver.admin_actor, "transit.metro", 1, at, min_lead=LEAD)
    done = await lifecycle.schedule(db, approver.admin_actor, draft_id, at, min_lead=LEAD)
    assert done.previous is None
    undone = await lifecycle.unschedule(db, approver.admin_actor, draft_id, min_lead=LEAD)
    assert undone.reopened is None
    assert (await _metro_rows(db))[1]["effective_to"] == at  # the retirement stands
    assert 2 not in await _metro_rows(db)

    # A version scheduled after it: that one must be undone first.
    await lifecycle.schedule(
        db, approver.admin_actor, draft_id, at + timedelta(days=1), min_lead=LEAD
    )
    v3 = await lifecycle.create_draft(
        db, author.admin_actor, metro_v2().replace("version: 2", "version: 3", 1)
    )
    await lifecycle.approve(db, approver.admin_actor, v3.id)
    await lifecycle.schedule(db, approver.admin_actor, v3.id, at + timedelta(days=5), min_lead=LEAD)
    with pytest.raises(lifecycle.LifecycleConflictError, match="unschedule that one first"):
        await lifecycle.unschedule(db, approver.admin_actor, draft_id, min_lead=LEAD)
    await lifecycle.unschedule(db, approver.admin_actor, v3.id, min_lead=LEAD)
    await lifecycle.unschedule(db, approver.admin_actor, draft_id, min_lead=LEAD)
    assert set(await _metro_rows(db)) == {1}


async def test_the_cli_unschedules_with_the_same_function(
    live: Live,
    committed: AsyncEngine,
    test_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with live.sessionmaker() as session, session.begin():
        draft_id, _, approver = await _approved_v2(live.app, session)
        at = datetime.now(UTC) + timedelta(days=2)
        await lifecycle.schedule(session, approver.admin_actor, draft_id, at, min_lead=LEAD)
    monkeypatch.setenv("DATABASE_URL", test_settings.database_url or "")
    monkeypatch.setenv("REDIS_URL", test_settings.redis_url or "")
    argv = ["methodology", "unschedule", str(draft_id), "--as", approver.admin.login]
    assert await asyncio.to_thread(cli_main, argv) == 0
    assert "transit.metro@v1 open again" in capsys.readouterr().out
    async with live.sessionmaker() as session:
        draft = await session.get(MethodologyDraft, draft_id)
        assert draft is not None and draft.activate_at is None
        rows = await _metro_rows(session)
        assert rows[1]["effective_to"] is None and 2 not in rows
        entry = await session.scalar(
            select(AdminAuditEntry).where(AdminAuditEntry.action == "methodology.unschedule")
        )
        assert entry is not None and entry.request_id == "cli"
    assert await asyncio.to_thread(cli_main, argv) == 1
    assert "not scheduled" in capsys.readouterr().err
