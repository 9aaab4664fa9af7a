"""The methodology lifecycle over the admin API: draft, diff, four eyes, schedule, retire;
every act in the audit trail, which auditors page through and export."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.methodologies.service import library_sources, sync_library
from service.models import AdminAuditEntry, MethodologyDraft, MethodologyVersion
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


# Documents the YAML parser accepts but the service cannot file, or cannot even read: each
# used to be a 500 (or an endless expansion). Each is a 422 naming where, and writes nothing.
UNFILEABLE = {
    "an impossible date": (
        lambda s: s.replace("effective_from: 2025-01-01", "effective_from: 2025-02-30", 1),
        "effective_from",
        "day is out of range",
    ),
    "a year zero": (
        lambda s: s.replace("effective_from: 2025-01-01", "effective_from: 0000-01-01", 1),
        "effective_from",
        "year 0",
    ),
    "a claim window beyond any date": (
        lambda s: s.replace("claim_window_days: 10", "claim_window_days: 99999999999999999999", 1),
        "claim_window_days",
        "less than or equal to 36500",
    ),
    "a version beyond the integer column": (
        lambda s: s.replace("version: 2", "version: 2147483648", 1),
        "version",
        "at most 2147483647",
    ),
    "an id longer than its column": (
        lambda s: s.replace("id: transit.metro", "id: transit." + "m" * 100, 1),
        "id",
        "at most 80 characters",
    ),
    "a region longer than its column": (
        lambda s: s.replace("region: null", "region: CN-JX-ABCDEF-GHIJKL", 1),
        "region",
        "region code",
    ),
    "a region no event can carry": (
        lambda s: s.replace("region: null", "region: jiangxi", 1),
        "region",
        "region code",
    ),
    "nesting without end": (lambda s: "[" * 20_000, "", "nested too deeply"),
    "a factor beyond any range": (
        lambda s: s.replace("value: 50\n", "value: 1e999999999\n", 1),
        "parameters.saving_per_km.value",
        "a number between",
    ),
    "an alias of itself": (lambda s: "a: &x [*x]\n" + s, "", "aliases"),
    "aliases that expand": (
        lambda s: 'a: &a ["x", "x", "x"]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n',
        "",
        "aliases",
    ),
}


@pytest.mark.parametrize("case", list(UNFILEABLE))
async def test_an_unfileable_draft_is_a_422_naming_where_and_writes_nothing(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession, case: str
) -> None:
    change, path, message = UNFILEABLE[case]
    author = await make_admin(app, db, "methodology-author")
    source = change(metro_v2())
    response = await client.post(
        "/v1/admin/methodology-drafts", json={"source_yaml": source}, headers=author.headers
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["type"].endswith("/methodology-invalid")
    (problem,) = body["problems"]
    assert problem["path"] == path
    assert message in problem["message"]
    if path:  # a field: its line and column point at the value
        line = source.splitlines()[problem["line"] - 1]
        name = path.rsplit(".", 1)[-1]
        assert line.lstrip().startswith(f"{name}: ")
        assert problem["column"] == len(line) - len(line.lstrip()) + len(name) + 3
    assert (await db.scalar(select(MethodologyDraft.id))) is None
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
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
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


# Instants without a UTC equivalent (PostgreSQL cannot store them) and windows that are not
# windows: each a 422 naming its field, before anything is read or written.
BAD_INSTANTS = [
    (
        "POST",
        "/v1/admin/methodology-drafts/1/schedule",
        {"activate_at": "9999-12-31T23:00:00-05:00"},
        "activate_at",
    ),
    (
        "POST",
        "/v1/admin/methodologies/transit.metro/versions/1/retire",
        {"at": "0001-01-01T00:00:00+05:00"},
        "at",
    ),
    (
        "POST",
        "/v1/admin/methodology-drafts/1/backtest",
        {"start": "0001-01-01T00:00:00+05:00", "end": "2026-01-01T00:00:00Z"},
        "start",
    ),
    (
        "POST",
        "/v1/admin/methodology-drafts/1/backtest",
        {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
        "end",
    ),
    (
        "POST",
        "/v1/admin/methodology-drafts/1/backtest",
        {"start": "2025-01-01T00:00:00Z", "end": "2026-01-03T00:00:00Z"},
        "end",
    ),
    ("GET", "/v1/admin/audit/export?since=9999-12-31T23:00:00-05:00", None, "since"),
    ("GET", "/v1/admin/audit/export?until=2026-01-01T00:00:00", None, "until"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), BAD_INSTANTS)
async def test_an_instant_out_of_range_or_a_bad_window_is_a_422_naming_the_field(
    app: FastAPI,
    client: httpx.AsyncClient,
    db: AsyncSession,
    method: str,
    path: str,
    body: dict[str, str] | None,
    field: str,
) -> None:
    admin = await make_admin(app, db, "methodology-approver", "auditor")
    response = await client.request(method, path, json=body, headers=admin.headers)
    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith("/validation-error")
    assert [e["location"][-1] for e in response.json()["errors"]] == [field]
    assert (await db.scalar(select(AdminAuditEntry.id))) is None


async def test_lists_page_with_cursor_and_a_draft_shows_its_yaml(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await sync_library(db)
    boss = await make_admin(app, db, "program-admin", "methodology-author", login="a-boss")
    for name in ("b-one", "c-two", "d-three"):
        await make_admin(app, db, "auditor", login=name)
    logins: list[str] = []
    cursor = None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = await client.get("/v1/admin/administrators", params=params, headers=boss.headers)
        assert page.status_code == 200, page.text
        logins += [a["login"] for a in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert logins == ["a-boss", "b-one", "c-two", "d-three"]

    # Filed versions page by keyset (an opaque cursor): every version once, in scope order.
    listed: list[tuple[str, str, str, str, int]] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await client.get("/v1/admin/methodologies", params=params, headers=boss.headers)
        assert page.status_code == 200, page.text
        listed += [
            (
                v["action_type"],
                v["region"] or "",
                v["effective_from"],
                v["methodology_id"],
                v["version"],
            )
            for v in page.json()["items"]
        ]
        assert len(page.json()["items"]) <= 2
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert len(listed) == len(library_sources()) == len(set(listed))
    assert listed == sorted(listed)
    forged = await client.get(
        "/v1/admin/methodologies", params={"cursor": "bm90LWpzb24"}, headers=boss.headers
    )
    assert forged.status_code == 400
    assert forged.headers["content-type"] == "application/problem+json"
    source = metro_v2()
    created = await client.post(
        "/v1/admin/methodology-drafts", json={"source_yaml": source}, headers=boss.headers
    )
    draft_id = created.json()["id"]
    drafts = await client.get("/v1/admin/methodology-drafts", headers=boss.headers)
    assert [d["id"] for d in drafts.json()["items"]] == [draft_id]
    assert drafts.json()["next_cursor"] is None
    newer = await client.post(
        "/v1/admin/methodology-drafts",
        json={"source_yaml": source.replace("version: 2", "version: 3", 1)},
        headers=boss.headers,
    )
    first = await client.get(
        "/v1/admin/methodology-drafts", params={"limit": "1"}, headers=boss.headers
    )
    assert [d["id"] for d in first.json()["items"]] == [newer.json()["id"]]
    rest = await client.get(
        "/v1/admin/methodology-drafts",
        params={"limit": "1", "cursor": first.json()["next_cursor"]},
        headers=boss.headers,
    )
    assert [d["id"] for d in rest.json()["items"]] == [draft_id]
    assert rest.json()["next_cursor"] is None
    one = await client.get(f"/v1/admin/methodology-drafts/{draft_id}", headers=boss.headers)
    assert one.json()["source_yaml"] == source


async def test_the_audit_export_streams_page_by_page(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession
) -> None:
    from service import audit

    actor = audit.Actor(None, "ops", "program-admin", "test")
    for n in range(5):
        await audit.record(db, actor, action="test.act", target_type="test", target_id=str(n))
    streamed = [e.target_id async for e in audit.stream_entries(db, since=None, until=None, page=2)]
    assert streamed == ["0", "1", "2", "3", "4"]
    auditor = await make_admin(app, db, "auditor")
    exported = await client.get("/v1/admin/audit/export", headers=auditor.headers)
    assert exported.status_code == 200
    assert [orjson.loads(line)["target_id"] for line in exported.content.splitlines()] == [
        "0",
        "1",
        "2",
        "3",
        "4",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (bytes(range(256)), "2:118: <document>: not UTF-8 text"),
        (b"[" * 20_000, "1:65: <document>: the document is nested too deeply"),
        (b"a: &x [*x]\n", "1:4: <document>: anchors and aliases"),
    ],
)
def test_a_hostile_draft_file_at_the_cli_is_a_clean_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    from service.admin.cli import cmd_lifecycle
    from service.config import Settings

    path = tmp_path / "draft.yaml"
    path.write_bytes(content)
    # Read and refused before any server is reached: no database, no stack trace.
    code = cmd_lifecycle(["draft", str(path), "--as", "bob"], Settings(environment="test"))
    err = capsys.readouterr().err
    assert code == 1
    assert f"{path}:{message}" in err
    assert "Traceback" not in err
