"""The reductions admin API and the public registry over HTTP: roles, documents, refusals as
problems, bad input as 422s."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.admin.conftest import SignedIn, make_admin
from tests.reductions.conftest import VINTAGE, Programme

R = "/v1/admin/reductions"


@pytest.fixture
async def http(programme: Programme) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=programme.live.transport, base_url="http://test"
    ) as client:
        yield client


async def _admin(programme: Programme, role: str) -> SignedIn:
    async with programme.live.sessionmaker() as session, session.begin():
        return await make_admin(programme.live.app, session, role)


POOL = {
    "code": "jx-metro",
    "methodology_id": "transit.metro",
    "version_min": 1,
    "version_max": 9,
    "region": "CN-JX",
    "vintage": VINTAGE,
    "min_kilograms": 2,
    "settle_hours": 0,
}


async def test_pool_issue_transfer_retire_and_the_public_registry(
    programme: Programme, http: httpx.AsyncClient
) -> None:
    admin = (await _admin(programme, "program-admin")).headers
    auditor = (await _admin(programme, "auditor")).headers
    riders = [await programme.rider() for _ in range(3)]
    await programme.rides([(r, 40000) for r in riders])  # 3 x 1868 g = 5604 g

    created = await http.post(f"{R}/pools", json=POOL, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["min_grams"] == 2000
    again = await http.post(f"{R}/pools", json=POOL, headers=admin)
    assert again.status_code == 409 and again.json()["type"].endswith("/pool-exists")
    assert (await http.post(f"{R}/pools/jx-metro/runs", headers=auditor)).status_code == 403

    run = await http.post(f"{R}/pools/jx-metro/runs", headers=admin)
    assert run.status_code == 201, run.text
    issued = run.json()
    assert (issued["kilograms"], issued["carried_out_grams"]) == (5, 604)
    assert issued["serials"] == f"CP/CN-JX/transit.metro/{VINTAGE}/0000000001-0000000005"
    nothing = await http.post(f"{R}/pools/jx-metro/runs", headers=admin)
    assert nothing.status_code == 409 and nothing.json()["type"].endswith("/nothing-to-pool")

    batch = await http.get(f"{R}/batches/{issued['batch_id']}", headers=auditor)
    assert batch.json() == issued
    csv = await http.get(f"{R}/batches/{issued['batch_id']}?format=csv", headers=auditor)
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.content.startswith(b"\xef\xbb\xbf")
    position = (await http.get(f"{R}/pools/jx-metro", headers=auditor)).json()
    assert (position["balance_grams"], position["position_grams"]) == (5604, 604)

    holder = await http.post(
        f"{R}/holders", json={"code": "acme", "name": "Acme 绿色科技"}, headers=admin
    )
    assert holder.status_code == 201
    block_id = 1
    moved = await http.post(
        f"{R}/blocks/{block_id}/transfer", json={"to_holder": "acme", "kilograms": 2}, headers=admin
    )
    assert moved.status_code == 200, moved.text
    acme, rest = moved.json()
    assert (acme["holder"], acme["kilograms"], rest["holder"], rest["kilograms"]) == (
        "acme",
        2,
        None,
        3,
    )
    retire = {"holder": "acme", "beneficiary": "Acme travel 2026", "reason": "offset"}
    retired = await http.post(f"{R}/blocks/{acme['id']}/retire", json=retire, headers=admin)
    assert retired.status_code == 201, retired.text
    certificate = retired.json()
    assert certificate["kilograms"] == 2 and certificate["beneficiary"] == "Acme travel 2026"
    twice = await http.post(f"{R}/blocks/{acme['id']}/retire", json=retire, headers=admin)
    assert twice.status_code == 409
    assert twice.json()["type"].endswith("/block-already-retired")
    not_held = await http.post(f"{R}/blocks/{rest['id']}/retire", json=retire, headers=admin)
    assert not_held.status_code == 409 and not_held.json()["type"].endswith("/block-not-held")
    page = await http.get(
        f"{R}/retirements/{certificate['retirement_id']}?format=html", headers=auditor
    )
    assert page.headers["content-type"].startswith("text/html")
    assert "Acme travel 2026" in page.text

    public = await http.get("/v1/app/registry")  # no token: public
    assert public.status_code == 200
    body = public.json()
    assert body["totals"] == [
        {
            "vintage": VINTAGE,
            "methodology_id": "transit.metro",
            "issued_kg": 5,
            "transferred_kg": 2,
            "retired_kg": 2,
        }
    ]
    assert [(b["kilograms"], b["status"], b["holder"]) for b in body["blocks"]] == [
        (2, "retired", "Acme 绿色科技"),
        (3, "active", None),
    ]
    first = (await http.get("/v1/app/registry?limit=1")).json()
    assert len(first["blocks"]) == 1 and first["next_cursor"] == "1"
    second = (await http.get(f"/v1/app/registry?limit=1&cursor={first['next_cursor']}")).json()
    assert second["blocks"] == body["blocks"][1:] and second["next_cursor"] is None
    html = await http.get("/v1/app/registry?format=html")
    assert "Certified reductions registry" in html.text
    for text in (public.text, html.text):
        assert "Acme travel 2026" not in text
        assert all(
            str(pid) not in text and card not in text for pid, card in programme.riders.items()
        )

    audit = (await http.get("/v1/admin/audit", headers=auditor)).json()
    actions = [entry["action"] for entry in audit["items"]]
    for action in (
        "reductions.pool.create",
        "reductions.batch.issue",
        "reductions.holder.create",
        "reductions.block.transfer",
        "reductions.block.retire",
    ):
        assert action in actions


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (f"{R}/pools", {**POOL, "vintage": "2026-Q5"}, "vintage"),
        (f"{R}/pools", {**POOL, "min_kilograms": 1.5}, "min_kilograms"),
        (f"{R}/pools", {**POOL, "min_kilograms": 2.0}, "min_kilograms"),
        (f"{R}/pools", {**POOL, "version_min": 2**70}, "version_min"),
        (f"{R}/pools", {**POOL, "region": "CN-JX\u0000"}, "region"),
        (f"{R}/holders", {"code": "acme", "name": "Acme\u0000"}, "name"),
        (f"{R}/blocks/1/retire", {"beneficiary": "b\u0007", "reason": "r"}, "beneficiary"),
        (f"{R}/blocks/1/retire", {"beneficiary": "b", "reason": "r", "kilograms": 0}, "kilograms"),
        (f"{R}/blocks/1/transfer", {"to_holder": "acme", "kilograms": "3"}, "kilograms"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    programme: Programme, http: httpx.AsyncClient, path: str, body: dict[str, object], field: str
) -> None:
    admin = (await _admin(programme, "program-admin")).headers
    response = await http.post(path, json=body, headers=admin)
    assert response.status_code == 422, response.text
    assert field in {e["location"][-1] for e in response.json()["errors"]}


async def test_a_huge_block_id_is_a_422_not_a_500(
    programme: Programme, http: httpx.AsyncClient
) -> None:
    auditor = (await _admin(programme, "auditor")).headers
    response = await http.get(f"{R}/blocks/{2**64}", headers=auditor)
    assert response.status_code == 422
