"""`carbon-points webhooks …` against the test database (the receiver stays in-process)."""

from __future__ import annotations

import argparse
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from service.cli import build_parser
from service.config import Settings
from service.webhooks import cli as webhooks_cli
from service.webhooks.retry import RetryPolicy
from tests.webhooks.conftest import PARTNER_KEY, Env, Receiver


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["webhooks", *argv])


async def _run(settings: Settings, *argv: str) -> list[str]:
    assert settings.database_url is not None
    output = await webhooks_cli._administer(settings.database_url, PARTNER_KEY, _args(*argv))
    return list(output.lines)


async def _merchant(env: Env) -> uuid.UUID:
    from service.merchants.service import create_merchant

    async with env.sessionmaker() as session, session.begin():
        merchant = await create_merchant(session, code=f"m{uuid.uuid4().hex[:8]}", name="茶铺")
    return merchant.id


def test_the_webhooks_command_is_wired() -> None:
    args = _args("replay", "msg_01")
    assert args.handler is webhooks_cli.run
    assert args.message_id == "msg_01"
    assert _args("deliver").webhooks_command == "deliver"
    assert _args("list-dead", "--limit", "5").limit == 5


async def test_create_list_rotate_disable_and_deliver_from_the_cli(
    env: Env, test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await _merchant(env)
    created = await _run(
        test_settings,
        "create",
        "--owner-type=merchant",
        f"--owner-id={owner}",
        "--url=https://till.example/hooks",
        "--events=redemption.captured,credit.created",
    )
    endpoint_id = created[0].removeprefix("endpoint: ")
    secret = created[1].removeprefix("secret: ")
    assert secret.startswith("whsec_")
    (listed,) = await _run(test_settings, "list", "--owner-type=merchant", f"--owner-id={owner}")
    assert listed.split("\t") == [
        endpoint_id,
        "https://till.example/hooks",
        "credit.created,redemption.captured",
    ]

    env.owner_id = owner
    (message_id,) = await env.enqueue("redemption.captured", {"redemption_id": "r-1"})

    # `deliver` builds its own client; here it talks to the in-process receiver.
    receiver = Receiver()
    real_client = httpx.AsyncClient

    def in_process_client(**kwargs: Any) -> httpx.AsyncClient:
        return real_client(transport=httpx.MockTransport(receiver), **kwargs)

    monkeypatch.setattr(httpx, "AsyncClient", in_process_client)
    assert test_settings.database_url is not None
    await webhooks_cli._deliver(test_settings.database_url, PARTNER_KEY, 100, None)
    (request,) = receiver.requests
    assert request.headers["webhook-id"] == message_id
    Webhook(secret).verify(request.content, dict(request.headers))

    rotated = await _run(test_settings, "rotate-secret", endpoint_id, "--overlap-hours=1")
    assert rotated[1].removeprefix("secret: ") != secret
    assert await _run(test_settings, "disable", endpoint_id) == [f"{endpoint_id} disabled"]
    assert await _run(test_settings, "list", "--owner-type=merchant", f"--owner-id={owner}") == []


async def test_list_dead_and_replay_from_the_cli(env: Env, test_settings: Settings) -> None:
    env.receiver.behaviour = lambda receiver, request, seen: 500
    await env.endpoint()
    (message_id,) = await env.enqueue()
    once = RetryPolicy(base=timedelta(seconds=1), cap=timedelta(seconds=1), max_attempts=1)
    await env.deliver(retry=once)

    (line,) = await _run(test_settings, "list-dead")
    assert line.split("\t")[0] == message_id
    assert line.endswith("HTTP 500")
    assert await _run(test_settings, "replay", message_id) == [
        f"{message_id} pending again (endpoint {(await env.message(message_id)).endpoint_id})"
    ]
    assert await _run(test_settings, "list-dead") == []
    assert (await env.message(message_id)).status == "pending"


async def test_create_refuses_an_owner_that_does_not_exist(
    env: Env, test_settings: Settings
) -> None:
    from service.errors import NotFoundError

    for owner_type in ("merchant", "partner"):
        nobody = uuid.uuid4()
        with pytest.raises(NotFoundError, match=f"no {owner_type} {nobody}"):
            await _run(
                test_settings,
                "create",
                f"--owner-type={owner_type}",
                f"--owner-id={nobody}",
                "--url=https://till.example/hooks",
                "--events=redemption.captured",
            )
        assert (
            await _run(test_settings, "list", f"--owner-type={owner_type}", f"--owner-id={nobody}")
            == []
        )


async def test_json_output_of_create_and_list(env: Env, test_settings: Settings) -> None:
    assert test_settings.database_url is not None
    owner = await _merchant(env)
    created = await webhooks_cli._administer(
        test_settings.database_url,
        PARTNER_KEY,
        _args("create", "--owner-type=merchant", f"--owner-id={owner}",
              "--url=https://till.example/hooks", "--events=redemption.expired", "--json"),
    )  # fmt: skip
    assert created.data["secret"].startswith("whsec_")
    listed = await webhooks_cli._administer(
        test_settings.database_url,
        PARTNER_KEY,
        _args("list", "--owner-type=merchant", f"--owner-id={owner}", "--json"),
    )
    assert listed.data == [
        {
            "id": created.data["endpoint_id"],
            "url": "https://till.example/hooks",
            "event_types": ["redemption.expired"],
            "disabled_at": None,
        }
    ]
