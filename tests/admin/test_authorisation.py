"""The authorisation matrix: every admin endpoint against every role, and without a token."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import ADMIN_ROLES
from tests.admin.conftest import PASSWORD, make_admin

ALL = set(ADMIN_ROLES)
METHODOLOGY_READERS = {"methodology-author", "methodology-approver", "auditor", "program-admin"}
NO_SUCH = "999999999"

# (method, path template, concrete path, body, roles allowed)
MATRIX: list[tuple[str, str, str, Any, set[str]]] = [
    ("GET", "/v1/admin/me", "/v1/admin/me", None, ALL),
    (
        "GET",
        "/v1/admin/administrators",
        "/v1/admin/administrators",
        None,
        {"program-admin", "auditor"},
    ),
    (
        "POST",
        "/v1/admin/administrators",
        "/v1/admin/administrators",
        {"login": "new-admin", "display_name": "New", "password": PASSWORD, "roles": ["reviewer"]},
        {"program-admin"},
    ),
    (
        "PATCH",
        "/v1/admin/administrators/{admin_id}",
        f"/v1/admin/administrators/{uuid.uuid4()}",
        {"status": "disabled"},
        {"program-admin"},
    ),
    ("GET", "/v1/admin/audit", "/v1/admin/audit", None, {"auditor"}),
    ("GET", "/v1/admin/audit/export", "/v1/admin/audit/export", None, {"auditor"}),
    ("GET", "/v1/admin/methodologies", "/v1/admin/methodologies", None, METHODOLOGY_READERS),
    (
        "POST",
        "/v1/admin/methodologies/{methodology_id}/versions/{version}/retire",
        "/v1/admin/methodologies/no.such/versions/1/retire",
        {"at": "2099-01-01T00:00:00+08:00"},
        {"methodology-approver"},
    ),
    (
        "GET",
        "/v1/admin/methodology-drafts",
        "/v1/admin/methodology-drafts",
        None,
        METHODOLOGY_READERS,
    ),
    (
        "POST",
        "/v1/admin/methodology-drafts",
        "/v1/admin/methodology-drafts",
        {"source_yaml": "id: x\n"},
        {"methodology-author"},
    ),
    (
        "GET",
        "/v1/admin/methodology-drafts/{draft_id}",
        f"/v1/admin/methodology-drafts/{NO_SUCH}",
        None,
        METHODOLOGY_READERS,
    ),
    (
        "GET",
        "/v1/admin/methodology-drafts/{draft_id}/diff",
        f"/v1/admin/methodology-drafts/{NO_SUCH}/diff",
        None,
        METHODOLOGY_READERS,
    ),
    (
        "POST",
        "/v1/admin/methodology-drafts/{draft_id}/approve",
        f"/v1/admin/methodology-drafts/{NO_SUCH}/approve",
        None,
        {"methodology-approver"},
    ),
    (
        "POST",
        "/v1/admin/methodology-drafts/{draft_id}/schedule",
        f"/v1/admin/methodology-drafts/{NO_SUCH}/schedule",
        {"activate_at": "2099-01-01T00:00:00+08:00"},
        {"methodology-approver"},
    ),
]
MATRIX.append(
    (
        "POST",
        "/v1/admin/methodology-drafts/{draft_id}/unschedule",
        f"/v1/admin/methodology-drafts/{NO_SUCH}/unschedule",
        None,
        {"methodology-approver"},
    )
)
MATRIX.append(
    (
        "POST",
        "/v1/admin/methodology-drafts/{draft_id}/backtest",
        f"/v1/admin/methodology-drafts/{NO_SUCH}/backtest",
        {"start": "2026-01-01T00:00:00+08:00", "end": "2026-01-02T00:00:00+08:00"},
        METHODOLOGY_READERS,
    )
)
PA = {"program-admin"}
ORGANISATION_READERS = {"program-admin", "auditor"}
_PARTNER = {"code": "matrix-metro", "name": "M", "kind": "transit", "action_types": ["transit.bus"]}
_PK = "pk_000000000000000000000000"
_MK = "mk_00000000000000000000"
MATRIX += [
    ("GET", "/v1/admin/partners", "/v1/admin/partners", None, ORGANISATION_READERS),
    ("POST", "/v1/admin/partners", "/v1/admin/partners", _PARTNER, PA),
    ("POST", "/v1/admin/partners/{code}/keys", "/v1/admin/partners/no-such/keys", None, PA),
    (
        "POST",
        "/v1/admin/partners/{code}/keys/{key_id}/rotate",
        f"/v1/admin/partners/no-such/keys/{_PK}/rotate",
        {"overlap_hours": 1},
        PA,
    ),
    (
        "POST",
        "/v1/admin/partners/{code}/keys/{key_id}/revoke",
        f"/v1/admin/partners/no-such/keys/{_PK}/revoke",
        None,
        PA,
    ),
    ("POST", "/v1/admin/partners/{code}/suspend", "/v1/admin/partners/no-such/suspend", None, PA),
    (
        "POST",
        "/v1/admin/partners/{code}/reinstate",
        "/v1/admin/partners/no-such/reinstate",
        None,
        PA,
    ),
    ("GET", "/v1/admin/merchants", "/v1/admin/merchants", None, ORGANISATION_READERS),
    ("POST", "/v1/admin/merchants", "/v1/admin/merchants", {"code": "mx-shop", "name": "S"}, PA),
    (
        "POST",
        "/v1/admin/merchants/{code}/keys",
        "/v1/admin/merchants/no-such/keys",
        {"scopes": ["redeem"]},
        PA,
    ),
    (
        "POST",
        "/v1/admin/merchants/{code}/keys/{key_id}/rotate",
        f"/v1/admin/merchants/no-such/keys/{_MK}/rotate",
        None,
        PA,
    ),
    (
        "POST",
        "/v1/admin/merchants/{code}/keys/{key_id}/revoke",
        f"/v1/admin/merchants/no-such/keys/{_MK}/revoke",
        None,
        PA,
    ),
    (
        "POST",
        "/v1/admin/merchants/{code}/suspend",
        "/v1/admin/merchants/no-such/suspend",
        None,
        PA,
    ),
    (
        "POST",
        "/v1/admin/merchants/{code}/reinstate",
        "/v1/admin/merchants/no-such/reinstate",
        None,
        PA,
    ),
]
REPORT_READERS = {"auditor", "program-admin"}
_PERIOD = "from=2026-11-01T00:00:00%2B08:00&to=2026-12-01T00:00:00%2B08:00"
MATRIX += [
    (
        "GET",
        f"/v1/admin/reports/{name}",
        f"/v1/admin/reports/{name}?{_PERIOD}",
        None,
        REPORT_READERS,
    )
    for name in ("reductions", "points", "settlement", "partner-health")
]
REDUCTION_READERS = {"program-admin", "auditor"}
_POOL = {
    "code": "matrix-pool",
    "methodology_id": "transit.metro",
    "version_min": 1,
    "version_max": 1,
    "region": "CN-JX",
    "vintage": "2026",
    "min_kilograms": 1,
    "settle_hours": 0,
}
_R = "/v1/admin/reductions"
MATRIX += [
    ("POST", f"{_R}/pools", f"{_R}/pools", _POOL, PA),
    ("GET", f"{_R}/pools/{{code}}", f"{_R}/pools/no-such", None, REDUCTION_READERS),
    ("POST", f"{_R}/pools/{{code}}/runs", f"{_R}/pools/no-such/runs", None, PA),
    ("GET", f"{_R}/batches/{{batch_id}}", f"{_R}/batches/{NO_SUCH}", None, REDUCTION_READERS),
    ("POST", f"{_R}/holders", f"{_R}/holders", {"code": "matrix-holder", "name": "M"}, PA),
    ("GET", f"{_R}/blocks/{{block_id}}", f"{_R}/blocks/{NO_SUCH}", None, REDUCTION_READERS),
    (
        "POST",
        f"{_R}/blocks/{{block_id}}/transfer",
        f"{_R}/blocks/{NO_SUCH}/transfer",
        {"to_holder": "matrix-holder"},
        PA,
    ),
    (
        "POST",
        f"{_R}/blocks/{{block_id}}/retire",
        f"{_R}/blocks/{NO_SUCH}/retire",
        {"beneficiary": "b", "reason": "r"},
        PA,
    ),
    (
        "GET",
        f"{_R}/retirements/{{retirement_id}}",
        f"{_R}/retirements/{NO_SUCH}",
        None,
        REDUCTION_READERS,
    ),
]
REVIEWERS = {"reviewer"}
QUEUE_READERS = {"reviewer", "program-admin", "auditor"}
MATRIX += [
    ("GET", "/v1/admin/review/flags", "/v1/admin/review/flags", None, QUEUE_READERS),
    (
        "GET",
        "/v1/admin/review/flags/{credit_id}",
        f"/v1/admin/review/flags/{NO_SUCH}",
        None,
        QUEUE_READERS,
    ),
    (
        "POST",
        "/v1/admin/review/flags/{credit_id}/assign",
        f"/v1/admin/review/flags/{NO_SUCH}/assign",
        {"assignee": None},
        REVIEWERS,
    ),
    (
        "POST",
        "/v1/admin/review/flags/{credit_id}/approve",
        f"/v1/admin/review/flags/{NO_SUCH}/approve",
        {},
        REVIEWERS,
    ),
    (
        "POST",
        "/v1/admin/review/flags/{credit_id}/reject",
        f"/v1/admin/review/flags/{NO_SUCH}/reject",
        {"reason": "partner_error"},
        REVIEWERS,
    ),
    ("GET", "/v1/admin/review/rules", "/v1/admin/review/rules", None, QUEUE_READERS),
    (
        "PUT",
        "/v1/admin/review/rules/{rule}",
        "/v1/admin/review/rules/velocity",
        {"enabled": False},
        {"program-admin"},
    ),
]
PUBLIC = {("POST", "/v1/admin/login")}


def test_the_matrix_covers_every_admin_endpoint(app: FastAPI) -> None:
    routes = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/v1/admin")
        for method in operations
    }
    assert routes - PUBLIC == {(method, template) for method, template, *_ in MATRIX}


@pytest.mark.parametrize("role", ADMIN_ROLES)
@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"),
    [pytest.param(m, p, b, a, id=f"{m} {t}") for m, t, p, b, a in MATRIX],
)
async def test_each_role_reaches_only_its_endpoints(
    app: FastAPI,
    client: httpx.AsyncClient,
    db: AsyncSession,
    role: str,
    method: str,
    path: str,
    body: Any,
    allowed: set[str],
) -> None:
    caller = await make_admin(app, db, role)
    response = await client.request(method, path, json=body, headers=caller.headers)
    if role in allowed:
        assert response.status_code not in (401, 403), response.text
    else:
        assert response.status_code == 403
        assert response.json()["type"].endswith("/role-required")
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [pytest.param(m, p, b, id=f"{m} {t}") for m, t, p, b, _ in MATRIX],
)
async def test_no_token_or_a_citizen_token_is_refused(
    client: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    missing = await client.request(method, path, json=body)
    assert missing.status_code == 401
    assert missing.json()["type"].endswith("/admin-token-missing")
    citizen = await client.post(
        "/v1/app/register",
        json={"login": "13812345678", "password": PASSWORD, "display_name": "Rider"},
    )
    token = citizen.json()["access_token"]
    refused = await client.request(
        method, path, json=body, headers={"authorization": f"Bearer {token}"}
    )
    assert refused.status_code == 401
    assert refused.json()["type"].endswith("/admin-token-invalid")
