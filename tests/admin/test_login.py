"""Administrator login: password and a TOTP code, each code once; bootstrap only once."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from service.admin import service as admins
from service.admin import totp
from service.admin.errors import AlreadyBootstrappedError
from tests.admin.conftest import PASSWORD, make_admin


def _code(app: FastAPI, admin: object) -> str:
    secret = totp.derive_secret(
        app.state.secrets.partner_secret_key,
        admin.id,  # type: ignore[attr-defined]
        admin.totp_salt,  # type: ignore[attr-defined]
    )
    return totp.code_at(secret, datetime.now(UTC))


async def test_login_needs_the_password_and_a_fresh_code(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession
) -> None:
    signed = await make_admin(app, db, "auditor", login="carol")
    code = _code(app, signed.admin)
    wrong_code = f"{(int(code) + 1) % 1_000_000:06d}"
    for body in (
        {"login": "carol", "password": PASSWORD, "totp": wrong_code},
        {"login": "carol", "password": "not the password", "totp": code},
        {"login": "nobody", "password": PASSWORD, "totp": code},
    ):
        refused = await client.post("/v1/admin/login", json=body)
        assert refused.status_code == 401
        assert refused.json()["type"].endswith("/admin-login-failed")
    ok = await client.post(
        "/v1/admin/login", json={"login": "carol", "password": PASSWORD, "totp": code}
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["roles"] == ["auditor"]
    token = ok.json()["access_token"]
    me = await client.get("/v1/admin/me", headers={"authorization": f"Bearer {token}"})
    assert me.json()["login"] == "carol"
    # The same code a second time is refused (replay).
    again = await client.post(
        "/v1/admin/login", json={"login": "carol", "password": PASSWORD, "totp": code}
    )
    assert again.status_code == 401
    # An admin token is not a citizen token.
    app_call = await client.get("/v1/app/me", headers={"authorization": f"Bearer {token}"})
    assert app_call.status_code == 401


async def test_disabling_an_administrator_ends_their_tokens(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession
) -> None:
    boss = await make_admin(app, db, "program-admin")
    other = await make_admin(app, db, "auditor")
    assert (await client.get("/v1/admin/me", headers=other.headers)).status_code == 200
    changed = await client.patch(
        f"/v1/admin/administrators/{other.admin.id}",
        json={"status": "disabled"},
        headers=boss.headers,
    )
    assert changed.status_code == 200
    assert (await client.get("/v1/admin/me", headers=other.headers)).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"login": "Bad Login", "display_name": "x", "password": PASSWORD, "roles": ["auditor"]},
        {"login": "ok", "display_name": "a\x00b", "password": PASSWORD, "roles": ["auditor"]},
        {"login": "ok", "display_name": "x" * 121, "password": PASSWORD, "roles": ["auditor"]},
        {"login": "ok", "display_name": "x", "password": PASSWORD, "roles": ["root"]},
        {"login": "ok", "display_name": "x", "password": PASSWORD, "roles": []},
    ],
)
async def test_bad_administrator_input_is_a_problem_and_writes_nothing(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession, body: dict[str, object]
) -> None:
    boss = await make_admin(app, db, "program-admin")
    response = await client.post("/v1/admin/administrators", json=body, headers=boss.headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    listed = await client.get("/v1/admin/administrators", headers=boss.headers)
    assert [a["login"] for a in listed.json()["items"]] == [boss.admin.login]


async def test_bootstrap_works_once(app: FastAPI, db: AsyncSession) -> None:
    key = app.state.secrets.partner_secret_key
    first = await admins.bootstrap(
        db, key, login="root", display_name="Root", password=PASSWORD, roles=["program-admin"]
    )
    assert first.provisioning_uri.startswith("otpauth://totp/carbon-points:root?secret=")
    with pytest.raises(AlreadyBootstrappedError):
        await admins.bootstrap(
            db, key, login="root2", display_name="R", password=PASSWORD, roles=["auditor"]
        )
