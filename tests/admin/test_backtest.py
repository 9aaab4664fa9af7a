"""Back-testing: the version in force reproduces the stored credits exactly; a draft's
difference is what its factor implies; nothing is written."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.cli import main as cli_main
from service.config import Settings
from service.methodologies.backtest import backtest
from service.methodologies.lifecycle import parse_draft
from service.methodologies.service import RegistryCache, library_sources
from service.models import Credit
from tests.admin.conftest import make_admin
from tests.admin.test_lifecycle import metro_v2
from tests.crediting.conftest import TRIP_AT, Live, metro


async def test_backtest_reproduces_stored_credits_and_measures_a_draft(
    live: Live,
    committed: AsyncEngine,
    test_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    metro_co = await live.partner("metro-co")
    riders = [await live.participant() for _ in range(3)]
    for i, rider in enumerate(riders):
        await live.link(rider, metro_co, f"62220200000000{i}")
    async with live.client(metro_co) as client:
        await client.submit_events(
            [
                metro(
                    f"t{i}",
                    card=f"62220200000000{i % 3}",
                    occurred_at=TRIP_AT + timedelta(minutes=i),
                    quantities={"distance_m": 3000 + 997 * i, "duration_s": 1200},
                )
                for i in range(12)
            ]
        )
    start, end = TRIP_AT - timedelta(hours=1), TRIP_AT + timedelta(hours=1)
    async with live.sessionmaker() as session:
        stored = (
            await session.execute(
                select(func.count(), func.sum(Credit.grams), func.sum(Credit.points))
            )
        ).one()
        registry = await RegistryCache(ttl=0).get(session)
        in_force = registry.get("transit.metro", 1)
        same = await backtest(
            session, parse_draft(dict(library_sources())["transit.metro.yaml"]), start, end
        )
        assert (
            in_force.content_hash
            == parse_draft(dict(library_sources())["transit.metro.yaml"]).content_hash
        )
        changed = await backtest(session, parse_draft(metro_v2()), start, end)
        # Streamed a page at a time: small pages give the same report, page by page.
        pages: list[int] = []
        paged = await backtest(
            session, parse_draft(metro_v2()), start, end, batch=5, progress=pages.append
        )
    assert stored[0] == 12
    assert same.events == 12 and same.mismatches == 0
    totals = [
        sum(b.grams_in_force for b in same.buckets.values()),
        sum(b.points_in_force for b in same.buckets.values()),
    ]
    assert totals == [stored[1], stored[2]]
    assert all(
        (b.grams_draft, b.points_draft) == (b.grams_in_force, b.points_in_force)
        for b in same.buckets.values()
    )
    assert same.participants == {}
    assert {k[2] for k in same.buckets} <= {"credited", "capped"}
    # 50 g/km instead of 46.7: more grams, within the daily cap of 2,000 g per rider.
    more = sum(b.grams_draft - b.grams_in_force for b in changed.buckets.values())
    assert more > 0
    assert len(changed.most_affected(10)) == 3
    assert pages == [5, 5, 2]
    assert paged.as_json(10) == changed.as_json(10)

    async with live.sessionmaker() as session, session.begin():
        author = await make_admin(live.app, session, "methodology-author")
    async with httpx.AsyncClient(transport=live.transport, base_url="http://test") as admin:
        draft = await admin.post(
            "/v1/admin/methodology-drafts", json={"source_yaml": metro_v2()}, headers=author.headers
        )
        report = await admin.post(
            f"/v1/admin/methodology-drafts/{draft.json()['id']}/backtest",
            json={"start": start.isoformat(), "end": end.isoformat(), "top": 2},
            headers=author.headers,
        )
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["events"] == 12 and body["mismatches"] == 0
    assert sum(g["grams_difference"] for g in body["groups"]) == more
    assert len(body["most_affected"]) == 2
    async with live.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Credit)) == 12

    # The CLI calls the same function, with a progress bar on standard error.
    monkeypatch.setenv("DATABASE_URL", test_settings.database_url or "")
    monkeypatch.setenv("REDIS_URL", test_settings.redis_url or "")
    argv = ["methodology", "backtest", str(draft.json()["id"])]
    argv += ["--start", start.isoformat(), "--end", end.isoformat(), "--top", "2"]
    assert await asyncio.to_thread(cli_main, argv) == 0
    printed = capsys.readouterr()
    assert "12 events, 0 mismatches" in printed.out
    assert "12/12" in printed.err  # the bar, finished
    assert await asyncio.to_thread(cli_main, [*argv, "--json", "--no-progress"]) == 0
    out = capsys.readouterr().out
    as_json = json.loads(out[out.index("{\n") :])  # after the log line naming the servers
    assert as_json == {**body, "draft_id": draft.json()["id"]}
