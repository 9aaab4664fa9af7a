"""The methodology lifecycle over the admin API: draft, diff, four eyes, schedule, retire;
every act in the audit trail, which auditors page through and export."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import orjson
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.methodologies.service import library_sources, sync_library
from service.models import AdminAuditEntry, MethodologyVersion
from tests.admin.conftest import make_admin


def metro_v2() -> str:
    source = dict(library_sources())["transit.metro.yaml"]
    return (
        source.replace("version: 1", "version: 2", 1)
        .replace("    value: 46.7\n", "    value: 50\n", 1)
        .replace(
            'source: "Shenzhen methodology (citysz.net 2022-09-23): metro saving vs the '
            'general travel mix, 46.7 g CO2e per passenger-km"',
            'source: "program choice: test figure for a version switch"',
            1,
        )
        .replace("claim_window_days: 7", "claim_window_days: 10", 1)
    )


async def test_an_invalid_draft_names_line_and_column(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession
) -> None:
    author = await make_admin(app, db, "methodology-author")
    broken = metro_v2().replace(
        "distance_m >= min_distance", "distance_m >= min_distance + saving_per_km"
    )
    response = await client.post(
        "/v1/admin/methodology-drafts", json={"source_yaml": broken}, headers=author.headers
    )
    assert response.status_code == 422
    body = response.json()
    assert body["type"].endswith("/methodology-invalid")
    problem = body["problems"][0]
    assert problem["path"] == "eligibility[0].require"
    line = broken.splitlines()[problem["line"] - 1]
    assert line[problem["column"] - 1 :].startswith("+ saving_per_km")
    assert (await db.scalar(select(AdminAuditEntry.id))) is None


async def test_draft_diff_four_eyes_schedule_retire_and_the_audit_trail(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await sync_library(db)
    author = await make_admin(app, db, "methodology-author", "methodology-approver")
    approver = await make_admin(app, db, "methodology-approver")
    auditor = await make_admin(app, db, "auditor")

    created = await client.post(
        "/v1/admin/methodology-drafts", json={"source_yaml": metro_v2()}, headers=author.headers
    )
    assert created.status_code == 201, created.text
    draft_id = created.json()["id"]
    again = await client.post(
        "/v1/admin/methodology-drafts", json={"source_yaml": metro_v2()}, headers=author.headers
    )
    assert again.status_code == 409

    diff = (
        await client.get(f"/v1/admin/methodology-drafts/{draft_id}/diff", headers=author.headers)
    ).json()
    assert diff["against"] == "transit.metro@v1"
    texts = {c["text"] for c in diff["changes"]}
    assert "~ parameters.saving_per_km.value: 46.7 -> 50" in texts
    assert any(t.startswith("~ parameters.saving_per_km.source: Shenzhen") for t in texts)
    assert "~ claim_window_days: 7 -> 10" in texts
    assert len(diff["changes"]) == 3  # value, source, claim window: nothing else

    # Four eyes: the author holds the approver role, and still cannot approve their draft.
    own = await client.post(
        f"/v1/admin/methodology-drafts/{draft_id}/approve", headers=author.headers
    )
    assert own.status_code == 403
    assert own.json()["type"].endswith("/four-eyes")
    early = await client.post(
        f"/v1/admin/methodology-drafts/{draft_id}/schedule",
        json={"activate_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()},
        headers=approver.headers,
    )
    assert early.status_code == 409  # not approved yet
    approved = await client.post(
        f"/v1/admin/methodology-drafts/{draft_id}/approve", headers=approver.headers
    )
    assert approved.json()["status"] == "approved"

    too_soon = await client.post(
        f"/v1/admin/methodology-drafts/{draft_id}/schedule",
        json={"activate_at": (datetime.now(UTC) + timedelta(seconds=5)).isoformat()},
        headers=approver.headers,
    )
    assert too_soon.status_code == 422
    assert too_soon.json()["type"].endswith("/activation-refused")
    at = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    scheduled = await client.post(
        f"/v1/admin/methodology-drafts/{draft_id}/schedule",
        json={"activate_at": at.isoformat()},
        headers=approver.headers,
    )
    assert scheduled.status_code == 200, scheduled.text
    assert scheduled.json()["closes"] == "transit.metro@v1"
    rows = {
        r.version: r
        for r in (
            await db.execute(
                select(MethodologyVersion).where(
                    MethodologyVersion.methodology_id == "transit.metro"
                )
            )
        ).scalars()
    }
    assert rows[1].effective_to == at == rows[2].effective_from  # no overlap, no gap

    retired = await client.post(
        "/v1/admin/methodologies/transit.metro/versions/2/retire",
        json={"at": (at + timedelta(days=30)).isoformat()},
        headers=approver.headers,
    )
    assert retired.status_code == 200, retired.text
    closed_twice = await client.post(
        "/v1/admin/methodologies/transit.metro/versions/1/retire",
        json={"at": (at + timedelta(days=30)).isoformat()},
        headers=approver.headers,
    )
    assert closed_twice.status_code == 409

    # Every act is in the trail, with who, which role, the target and the digests.
    items: list[dict[str, object]] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"after": cursor} if cursor else {})}
        page = (await client.get("/v1/admin/audit", params=params, headers=auditor.headers)).json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    acts = [(i["action"], i["actor"], i["role"]) for i in items]
    assert acts == [
        ("methodology.draft", author.admin.login, "methodology-author"),
        ("methodology.approve", approver.admin.login, "methodology-approver"),
        ("methodology.schedule", approver.admin.login, "methodology-approver"),
        ("methodology.retire", approver.admin.login, "methodology-approver"),
    ]
    schedule_entry = items[2]
    assert schedule_entry["target_id"] == str(draft_id)
    assert schedule_entry["before_digest"] != schedule_entry["after_digest"]
    assert all(i["request_id"] for i in items)
    assert [i["prev_hash"] for i in items[1:]] == [i["hash"] for i in items[:-1]]
    exported = await client.get("/v1/admin/audit/export", headers=auditor.headers)
    assert exported.headers["content-type"] == "application/x-ndjson"
    lines = [orjson.loads(line) for line in exported.content.splitlines()]
    assert [line["id"] for line in lines] == [i["id"] for i in items]
