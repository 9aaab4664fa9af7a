"""Every error is problem+json with a stable type; request ids travel both ways."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from service.errors import PROBLEM_BASE, ConflictError

PROBLEM = "application/problem+json"


class _Body(BaseModel):
    card_number: str
    amount: int


@pytest.fixture(scope="module")
def probe_routes(app: FastAPI) -> None:
    """Routes that exist only in tests, to drive each kind of error through the real stack."""
    router = APIRouter(prefix="/v1/_probe")

    @router.post("/echo")
    async def echo(body: _Body) -> dict[str, int]:
        return {"amount": body.amount}

    @router.get("/conflict")
    async def conflict() -> None:
        raise ConflictError("that key was used with another body", field="amount")

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    app.include_router(router)


async def test_unknown_route_is_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == PROBLEM_BASE + "not-found"
    assert body["status"] == 404
    assert body["title"] == "Not found"
    assert body["request_id"] == response.headers["x-request-id"]


async def test_method_not_allowed_is_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.post("/healthz")
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == PROBLEM_BASE + "method-not-allowed"
    assert "GET" in response.headers["allow"]


@pytest.mark.usefixtures("probe_routes")
async def test_malformed_json_is_a_400_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/_probe/echo", content=b'{"amount": 1,', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == PROBLEM_BASE + "malformed-body"


@pytest.mark.usefixtures("probe_routes")
async def test_validation_errors_name_fields_but_never_echo_values(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/_probe/echo", json={"card_number": "6222021234567890", "amount": "lots"}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["type"] == PROBLEM_BASE + "validation-error"
    assert body["errors"][0]["location"] == ["body", "amount"]
    assert "6222021234567890" not in response.text
    assert "lots" not in response.text


@pytest.mark.usefixtures("probe_routes")
async def test_domain_errors_carry_their_type_and_extensions(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/_probe/conflict")
    assert response.status_code == 409
    body = response.json()
    assert body["type"] == PROBLEM_BASE + "conflict"
    assert body["field"] == "amount"


@pytest.mark.usefixtures("probe_routes")
async def test_server_errors_hide_internals(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/_probe/boom", headers={"x-request-id": "till-42.attempt-1"})
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["x-request-id"] == "till-42.attempt-1"
    body = response.json()
    assert body["type"] == PROBLEM_BASE + "internal-error"
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text


async def test_request_id_is_generated_or_sanitised(client: httpx.AsyncClient) -> None:
    generated = await client.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32
    hostile = await client.get("/healthz", headers={"x-request-id": "bad id\r\nx: y"})
    assert hostile.headers["x-request-id"] != "bad id\r\nx: y"


async def test_healthz_readyz_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {
        "postgresql": "ok",
        "migrations": "current",
        "redis": "ok",
        "methodologies": "ok",
    }
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert "carbon_points_http_requests_total" in metrics.text


async def test_openapi_is_served(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert schema["info"]["title"] == "carbon-points"
    docs = await client.get("/docs")
    assert docs.status_code == 200
