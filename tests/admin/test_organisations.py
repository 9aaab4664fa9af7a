"""Partners and merchants through the admin API (program-admin): create with a first key,
issue, rotate and revoke keys, suspend and reinstate; each act in the audit trail with
digests of before and after; and each takes effect where partners and merchants call."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from integrations import APIError
from service.models import AdminAuditEntry, Merchant, Partner
from service.partners.credentials import IssuedCredential
from tests.admin.conftest import make_admin
from tests.crediting.conftest import Live, metro

PARTNER = {
    "code": "nanchang-metro",
    "name": "Nanchang Metro",
    "kind": "transit",
    "action_types": ["transit.metro", "transit.bus"],
    "region": "CN-JX",
}


async def _trail(db: AsyncSession) -> list[AdminAuditEntry]:
    return list((await db.execute(select(AdminAuditEntry).order_by(AdminAuditEntry.id))).scalars())


async def test_partner_create_keys_suspend_each_audited(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession
) -> None:
    boss = await make_admin(app, db, "program-admin")
    auditor = await make_admin(app, db, "auditor")
    created = await client.post("/v1/admin/partners", json=PARTNER, headers=boss.headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "active" and body["action_types"] == ["transit.bus", "transit.metro"]
    first = body["key"]
    assert first["key_id"].startswith("pk_") and first["secret"].startswith("cpsk_")
    again = await client.post("/v1/admin/partners", json=PARTNER, headers=boss.headers)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"

    issued = await client.post("/v1/admin/partners/nanchang-metro/keys", headers=boss.headers)
    assert issued.status_code == 201, issued.text
    rotated = await client.post(
        f"/v1/admin/partners/nanchang-metro/keys/{first['key_id']}/rotate",
        json={"overlap_hours": 2},
        headers=boss.headers,
    )
    assert rotated.status_code == 201, rotated.text
    ends = datetime.fromisoformat(rotated.json()["previous"]["expires_at"])
    assert abs(ends - (datetime.now(UTC) + timedelta(hours=2))) < timedelta(minutes=1)
    revoked = await client.post(
        f"/v1/admin/partners/nanchang-metro/keys/{issued.json()['key_id']}/revoke",
        headers=boss.headers,
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    twice = await client.post(
        f"/v1/admin/partners/nanchang-metro/keys/{issued.json()['key_id']}/revoke",
        headers=boss.headers,
    )
    assert twice.status_code == 409
    suspended = await client.post("/v1/admin/partners/nanchang-metro/suspend", headers=boss.headers)
    assert suspended.json()["status"] == "suspended"
    reinstated = await client.post(
        "/v1/admin/partners/nanchang-metro/reinstate", headers=boss.headers
    )
    assert reinstated.json()["status"] == "active"
    listed = await client.get("/v1/admin/partners", headers=auditor.headers)
    assert [p["code"] for p in listed.json()["items"]] == ["nanchang-metro"]

    trail = await _trail(db)
    assert [(e.action, e.target_id, e.role) for e in trail] == [
        ("partner.create", "nanchang-metro", "program-admin"),
        ("partner.key.issue", issued.json()["key_id"], "program-admin"),
        ("partner.key.rotate", first["key_id"], "program-admin"),
        ("partner.key.revoke", issued.json()["key_id"], "program-admin"),
        ("partner.suspend", "nanchang-metro", "program-admin"),
        ("partner.reinstate", "nanchang-metro", "program-admin"),
    ]
    assert trail[0].before_digest is None and trail[0].after_digest is not None
    for entry in trail[2:]:
        assert entry.before_digest is not None and entry.after_digest is not None
        assert entry.before_digest != entry.after_digest
    assert trail[2].detail["successor"] == rotated.json()["key"]["key_id"]
    # No secret reaches the trail.
    assert all(first["secret"] not in str(e.detail) for e in trail)


async def test_merchant_create_keys_suspend_each_audited(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession
) -> None:
    boss = await make_admin(app, db, "program-admin")
    created = await client.post(
        "/v1/admin/merchants",
        json={"code": "green-grocer", "name": "Green Grocer", "region": "CN-JX"},
        headers=boss.headers,
    )
    assert created.status_code == 201, created.text
    first = created.json()["key"]
    assert first["token"].startswith(f"cpmk_{first['key_id']}_")
    assert first["scopes"] == ["redeem", "refund", "settlement"]
    settlement = await client.post(
        "/v1/admin/merchants/green-grocer/keys",
        json={"scopes": ["settlement"]},
        headers=boss.headers,
    )
    assert settlement.status_code == 201 and settlement.json()["scopes"] == ["settlement"]
    rotated = await client.post(
        f"/v1/admin/merchants/green-grocer/keys/{first['key_id']}/rotate", headers=boss.headers
    )
    assert rotated.status_code == 201, rotated.text
    assert rotated.json()["key"]["scopes"] == ["redeem", "refund", "settlement"]
    assert rotated.json()["previous"]["revoked_at"] is not None
    revoked = await client.post(
        f"/v1/admin/merchants/green-grocer/keys/{settlement.json()['key_id']}/revoke",
        headers=boss.headers,
    )
    assert revoked.status_code == 200
    suspended = await client.post("/v1/admin/merchants/green-grocer/suspend", headers=boss.headers)
    assert suspended.json()["status"] == "suspended"
    assert [(e.action, e.target_id) for e in await _trail(db)] == [
        ("merchant.create", "green-grocer"),
        ("merchant.key.issue", settlement.json()["key_id"]),
        ("merchant.key.issue", rotated.json()["key"]["key_id"]),
        ("merchant.key.rotate", first["key_id"]),
        ("merchant.key.revoke", settlement.json()["key_id"]),
        ("merchant.suspend", "green-grocer"),
    ]
    assert all(first["token"] not in str(e.detail) for e in await _trail(db))


BAD: list[tuple[str, str, Any, int, str]] = [
    ("POST", "/v1/admin/partners", {**PARTNER, "code": "Bad Code"}, 422, "validation-error"),
    ("POST", "/v1/admin/partners", {**PARTNER, "kind": "ferry"}, 422, "validation-error"),
    ("POST", "/v1/admin/partners", {**PARTNER, "action_types": []}, 422, "validation-error"),
    ("POST", "/v1/admin/partners", {**PARTNER, "name": "x" * 201}, 422, "validation-error"),
    ("POST", "/v1/admin/partners", {**PARTNER, "region": "jiangxi"}, 422, "validation-error"),
    ("POST", "/v1/admin/merchants", {"code": "ok-code", "name": ""}, 422, "validation-error"),
    ("POST", "/v1/admin/merchants/no-such/keys", {"scopes": ["all"]}, 422, "validation-error"),
    ("POST", "/v1/admin/partners/no-such/keys", None, 404, "partner-not-found"),
    ("POST", "/v1/admin/partners/no-such/suspend", None, 404, "partner-not-found"),
    ("POST", "/v1/admin/merchants/no-such/suspend", None, 404, "merchant-not-found"),
    (
        "POST",
        "/v1/admin/merchants/no-such/keys/mk_00/revoke",
        None,
        404,
        "merchant-not-found",
    ),
    ("POST", "/v1/admin/partners/no-such/keys/not-a-key/revoke", None, 422, "validation-error"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "problem"), BAD)
async def test_bad_input_is_a_problem_and_writes_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    db: AsyncSession,
    method: str,
    path: str,
    body: Any,
    status: int,
    problem: str,
) -> None:
    boss = await make_admin(app, db, "program-admin")
    response = await client.request(method, path, json=body, headers=boss.headers)
    assert response.status_code == status, response.text
    assert response.json()["type"].endswith(f"/{problem}")
    assert await db.scalar(select(func.count()).select_from(AdminAuditEntry)) == 0
    assert await db.scalar(select(func.count()).select_from(Partner)) == 0
    assert await db.scalar(select(func.count()).select_from(Merchant)) == 0


async def test_another_partners_key_is_not_found(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession
) -> None:
    boss = await make_admin(app, db, "program-admin")
    one = await client.post("/v1/admin/partners", json=PARTNER, headers=boss.headers)
    await client.post(
        "/v1/admin/partners", json={**PARTNER, "code": "other-metro"}, headers=boss.headers
    )
    response = await client.post(
        f"/v1/admin/partners/other-metro/keys/{one.json()['key']['key_id']}/revoke",
        headers=boss.headers,
    )
    assert response.status_code == 404
    assert response.json()["type"].endswith("/partner-key-not-found")


async def test_suspension_and_revocation_take_effect_where_partners_and_merchants_call(
    live: Live, committed: AsyncEngine
) -> None:
    async with live.sessionmaker() as session, session.begin():
        boss = await make_admin(live.app, session, "program-admin")
    async with httpx.AsyncClient(transport=live.transport, base_url="http://test") as admin:
        made = await admin.post("/v1/admin/partners", json=PARTNER, headers=boss.headers)
        created = made.json()
        credential = IssuedCredential(
            created["key"]["key_id"], created["key"]["secret"], uuid.UUID(created["id"])
        )
        async with live.client(credential) as partner:
            await partner.submit_events([metro("trip-1")])  # accepted
            await admin.post("/v1/admin/partners/nanchang-metro/suspend", headers=boss.headers)
            with pytest.raises(APIError) as suspended:
                await partner.submit_events([metro("trip-2")])
            assert suspended.value.status_code == 403
            assert suspended.value.type.endswith("/partner-suspended")
            await admin.post("/v1/admin/partners/nanchang-metro/reinstate", headers=boss.headers)
            await partner.submit_events([metro("trip-3")])
            await admin.post(
                f"/v1/admin/partners/nanchang-metro/keys/{credential.key_id}/revoke",
                headers=boss.headers,
            )
            with pytest.raises(APIError) as revoked:
                await partner.submit_events([metro("trip-4")])
            assert revoked.value.status_code == 401
            assert revoked.value.type.endswith("/revoked-key")

        merchant = (
            await admin.post(
                "/v1/admin/merchants",
                json={"code": "green-grocer", "name": "Green Grocer"},
                headers=boss.headers,
            )
        ).json()
        statement = {"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}
        till = {"authorization": f"Bearer {merchant['key']['token']}"}
        served = await admin.get("/v1/merchant/settlement", params=statement, headers=till)
        assert served.status_code == 200, served.text
        await admin.post("/v1/admin/merchants/green-grocer/suspend", headers=boss.headers)
        refused = await admin.get("/v1/merchant/settlement", params=statement, headers=till)
        assert refused.status_code == 403
        assert refused.json()["type"].endswith("/merchant-suspended")
        await admin.post("/v1/admin/merchants/green-grocer/reinstate", headers=boss.headers)
        await admin.post(
            f"/v1/admin/merchants/green-grocer/keys/{merchant['key']['key_id']}/revoke",
            headers=boss.headers,
        )
        gone = await admin.get("/v1/merchant/settlement", params=statement, headers=till)
        assert gone.status_code == 401
