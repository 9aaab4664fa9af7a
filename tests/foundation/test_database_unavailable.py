"""PostgreSQL unreachable: every caller gets `503 service-unavailable` with `Retry-After`, never a
500, and the partner SDK waits as told and retries until the database is back.

The app reaches PostgreSQL through a TCP proxy the test can cut (open connections dropped, new
ones refused) and restore, which is what a failover or a restart looks like from the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from integrations import AsyncCarbonPointsClient, ServerError
from service.app import create_app
from service.config import Settings
from service.db import create_sessionmaker
from service.methodologies.service import sync_library
from service.models import Base, PartnerEvent
from service.partners.credentials import IssuedCredential, issue_credential
from service.partners.service import create_partner
from tests.accounts.helpers import bearer, register
from tests.crediting.conftest import metro

RETRY_AFTER = "2"


@dataclass
class Proxy:
    """Forwards 127.0.0.1:port to PostgreSQL until cut: to `upstream` (host, port), or to
    the Unix socket `socket_path` (the embedded server)."""

    upstream: tuple[str, int]
    socket_path: str | None = None
    port: int = 0
    server: asyncio.Server | None = None
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.close()
        await self.server.wait_closed()
        self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.socket_path is not None:
            up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        else:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}


@dataclass
class Outage:
    app: FastAPI
    proxy: Proxy
    engine: AsyncEngine
    http: httpx.AsyncClient
    credential: IssuedCredential

    async def rows(self) -> dict[str, int]:
        union = " UNION ALL ".join(
            f"SELECT '{t.name}', count(*) FROM \"{t.name}\"" for t in Base.metadata.sorted_tables
        )
        async with self.engine.connect() as conn:
            return {name: int(n) for name, n in await conn.execute(text(union))}

    def sdk(self, **options: object) -> AsyncCarbonPointsClient:
        return AsyncCarbonPointsClient(
            "http://test",
            key_id=self.credential.key_id,
            secret=self.credential.secret,
            transport=httpx.ASGITransport(app=self.app, raise_app_exceptions=False),
            **options,  # type: ignore[arg-type]
        )


@pytest.fixture
async def outage(
    test_settings: Settings, committed: AsyncEngine, redis: Redis
) -> AsyncIterator[Outage]:
    assert test_settings.database_url is not None
    url = make_url(test_settings.database_url)
    # The embedded server is reached through a Unix socket named in the URL's query (which
    # wins over its host and port): proxy that socket, and drop it from the proxied URL.
    socket_dir = url.query.get("host")
    socket_path = (
        f"{socket_dir}/.s.PGSQL.{url.query.get('port', url.port or 5432)}"
        if isinstance(socket_dir, str) and socket_dir.startswith("/")
        else None
    )
    host = socket.gethostbyname(url.host or "127.0.0.1")
    proxy = Proxy((host, url.port or 5432), socket_path)
    await proxy.start()
    proxied = (
        url.difference_update_query(["host", "port"])
        .set(host="127.0.0.1", port=proxy.port)
        .render_as_string(hide_password=False)
    )
    app = create_app(test_settings.model_copy(update={"database_url": proxied}))
    async with committed.begin() as conn:
        await conn.execute(text("SELECT 1"))
    sessionmaker = create_sessionmaker(committed)
    async with sessionmaker() as session, session.begin():
        await sync_library(session)
    async with app.router.lifespan_context(app):
        async with sessionmaker() as session, session.begin():
            partner = await create_partner(
                session,
                code="metro-co",
                name="Metro",
                kind="transit",
                action_types=["transit.metro"],
            )
            credential = await issue_credential(
                session, app.state.secrets.partner_secret_key, partner.id
            )
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield Outage(app, proxy, committed, http, credential)
        if proxy.server is None:
            await proxy.start()
    if proxy.server is not None:
        await proxy.cut()


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == RETRY_AFTER
    problem = response.json()
    assert problem["type"] == "https://carbon-points.dev/problems/service-unavailable"
    assert problem["request_id"] == response.headers["x-request-id"]
    assert "Error" not in problem["detail"]  # no exception text reaches a client


async def test_app_and_public_calls_get_503_while_the_database_is_down(outage: Outage) -> None:
    user = await register(outage.http)  # through the proxy, while it is up
    assert (await outage.http.get("/v1/app/balance", headers=bearer(user.access_token))).is_success
    await outage.proxy.cut()
    before_outage = await outage.rows()
    for method, path, body in [
        ("GET", "/v1/app/balance", None),
        ("GET", "/v1/app/history", None),
        ("POST", "/v1/app/organisations", {"name": "Green Cafe"}),
        ("GET", "/v1/app/offers", None),
        ("POST", "/v1/app/login", {"login": user.login, "password": user.password}),
    ]:
        response = await outage.http.request(
            method, path, json=body, headers=bearer(user.access_token)
        )
        assert_unavailable(response)
    assert await outage.rows() == before_outage
    await outage.proxy.start()
    assert (await outage.http.get("/v1/app/balance", headers=bearer(user.access_token))).is_success


async def test_partner_calls_get_503_and_the_sdk_reports_it_retryable(outage: Outage) -> None:
    async with outage.sdk(max_retries=0) as client:
        await outage.proxy.cut()
        before_outage = await outage.rows()
        with pytest.raises(ServerError) as raised:
            await client.submit_event(metro("trip-1"))
    error = raised.value
    assert error.status_code == 503
    assert error.retryable
    assert error.retry_after == float(RETRY_AFTER)
    assert error.problem.type.endswith("/service-unavailable")
    assert await outage.rows() == before_outage


async def test_the_sdk_waits_retry_after_and_succeeds_once_the_database_is_back(
    outage: Outage,
) -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:  # the database comes back during the second wait
            await outage.proxy.start()

    await outage.proxy.cut()
    async with outage.sdk(max_retries=4, sleep=sleep) as client:
        outcome = await client.submit_event(metro("trip-1"))
    assert sleeps == [float(RETRY_AFTER)] * 2
    assert outcome.status == "pending"  # no one linked the card yet: accepted, kept
    async with outage.engine.connect() as conn:
        stored = await conn.scalar(select(func.count()).select_from(PartnerEvent))
    assert stored == 1
