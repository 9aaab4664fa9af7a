"""A client generated from the document by `openapi-python-client` drives the running service:
a citizen's flow and a till's flow, and its typed errors (the Problem model) work on real
problem+json answers."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import orjson
import pytest

from integrations import CarbonPointsClient, make_link_token
from service.app import create_app
from service.config import Settings
from tests.accounts.helpers import unique_phone
from tests.contract.conftest import RunningService
from tests.crediting.conftest import metro

PACKAGE = "carbon_points_generated"
TRIP_POINTS = 576


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The client package, generated from the app's document into a temporary folder."""
    folder = tmp_path_factory.mktemp("generated")
    settings = Settings(
        database_url="postgresql://nobody@127.0.0.1:1/none", redis_url="redis://127.0.0.1:1/0"
    )
    spec = folder / "openapi.json"
    spec.write_bytes(orjson.dumps(create_app(settings).openapi()))
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(spec),
            "--meta",
            "none",
            "--output-path",
            str(folder / PACKAGE),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Unable to" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def api(package: ModuleType, tag: str, operation: str) -> Any:
    return importlib.import_module(f"{package.__name__}.api.{tag.replace('-', '_')}.{operation}")


def model(package: ModuleType, name: str) -> Any:
    return getattr(importlib.import_module(f"{package.__name__}.models"), name)


def test_a_citizen_and_a_till_through_the_generated_client(
    generated: ModuleType, running_service: RunningService
) -> None:
    Client = generated.Client
    AuthenticatedClient = generated.AuthenticatedClient
    Problem = model(generated, "Problem")
    service = running_service
    public = Client(base_url=service.url, raise_on_unexpected_status=True)

    # A typed error: a region longer than its column is a Problem naming the field.
    register = api(generated, "app-accounts", "register")
    RegisterIn = model(generated, "RegisterIn")
    refused = register.sync_detailed(
        client=public,
        body=RegisterIn(
            login=unique_phone(),
            password="correct horse battery staple",
            display_name="小明",
            region="CN-AAAAAA-BBBBBB-CCCCCC",
        ),
    )
    assert refused.status_code == 422
    assert isinstance(refused.parsed, Problem)
    assert refused.parsed.type_.endswith("/validation-error")
    assert [e.location for e in refused.parsed.errors] == [["body", "region"]]

    # The citizen: register, link a card, get a trip credited, read the balance.
    tokens = register.sync(
        client=public,
        body=RegisterIn(
            login=unique_phone(),
            password="correct horse battery staple",
            display_name="小明",
            region="CN-JX",
        ),
    )
    assert tokens is not None and not isinstance(tokens, Problem)
    app = AuthenticatedClient(
        base_url=service.url, token=tokens.access_token, raise_on_unexpected_status=True
    )
    link = api(generated, "app-points", "link_identity").sync(
        client=app,
        body=model(generated, "TokenIn")(
            token=make_link_token(
                key_id=service.partner.key_id,
                secret=service.partner.secret,
                subject_ref="6222029999990001",
                token_id=f"lt-{uuid.uuid4().hex}",
            )
        ),
    )
    assert link.link.partner_code == service.partner_code
    with CarbonPointsClient(
        service.url, key_id=service.partner.key_id, secret=service.partner.secret
    ) as partner:
        outcome = partner.submit_event(metro("contract-trip-1", card="6222029999990001"))
    assert outcome.status == "credited"
    balance = api(generated, "app-points", "get_balance").sync(client=app)
    assert balance.available == TRIP_POINTS
    history = api(generated, "app-points", "list_history").sync(client=app, limit=10)
    assert [item.points for item in history.items] == [TRIP_POINTS]
    assert history.next_cursor is None
    offers = api(generated, "app-offers", "list_offers").sync(
        client=public, merchant=service.merchant_code
    )
    assert [str(o.id) for o in offers.items] == [service.offer_id]
    code = api(generated, "app-points", "create_redemption_token").sync(client=app)

    # The till: authorise the offer with the customer's code, capture, refund part.
    till = AuthenticatedClient(
        base_url=service.url, token=service.merchant_key, raise_on_unexpected_status=True
    )
    authorise = api(generated, "merchant-redemptions", "authorise_redemption")
    redemption = authorise.sync(
        client=till,
        body=model(generated, "AuthoriseIn")(
            redemption_token=code.token, offer_id=uuid.UUID(service.offer_id)
        ),
        idempotency_key="contract-till-1",
    )
    assert redemption.status == "authorised"
    assert redemption.points_authorised == 100
    capture = api(generated, "merchant-redemptions", "capture_redemption")
    captured = capture.sync(
        redemption_id=redemption.id,
        client=till,
        body=model(generated, "CaptureIn")(),
        idempotency_key="contract-till-1-capture",
    )
    assert captured.status == "captured"
    refunded = api(generated, "merchant-redemptions", "refund_redemption").sync(
        redemption_id=redemption.id,
        client=till,
        body=model(generated, "RefundIn")(points=40),
        idempotency_key="contract-till-1-refund",
    )
    assert (refunded.status, refunded.points_refunded) == ("partially_refunded", 40)
    assert api(generated, "app-points", "get_balance").sync(client=app).available == (
        TRIP_POINTS - 100 + 40
    )

    # Typed errors from the till: a second capture conflicts; a wrong key is unauthenticated.
    again = capture.sync_detailed(
        redemption_id=redemption.id,
        client=till,
        body=model(generated, "CaptureIn")(),
        idempotency_key="contract-till-1-capture-again",
    )
    assert again.status_code == 409
    assert isinstance(again.parsed, Problem)
    stranger = AuthenticatedClient(base_url=service.url, token="cpmk_mk_nobody_secret")
    denied = api(generated, "merchant-redemptions", "get_redemption").sync_detailed(
        redemption_id=redemption.id, client=stranger
    )
    assert denied.status_code == 401
    assert isinstance(denied.parsed, Problem)
    assert denied.parsed.type_.endswith("/merchant-key-invalid")
    assert denied.parsed.request_id == denied.headers["x-request-id"]


def test_the_document_the_service_serves_is_the_one_the_client_was_built_from(
    running_service: RunningService,
) -> None:
    served = httpx.get(running_service.url + "/openapi.json", timeout=10).json()
    settings = Settings(
        database_url="postgresql://nobody@127.0.0.1:1/none", redis_url="redis://127.0.0.1:1/0"
    )
    assert served == orjson.loads(orjson.dumps(create_app(settings).openapi()))
