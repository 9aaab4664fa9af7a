"""The set-based crediting path: constant statements per batch, the in-batch conflict rule,
and group-committed single events."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from integrations import ConflictError
from service.crediting import group_commit
from service.crediting import service as crediting
from service.crediting.group_commit import GroupCommitter
from service.crediting.schemas import EventIn
from service.ledger.verify import verify_ledger
from service.models import Credit, LedgerTransaction
from service.partners.auth import PartnerContext
from service.partners.credentials import IssuedCredential, subject_hash
from tests.crediting.conftest import Live, metro


@contextmanager
def counting(engine: AsyncEngine) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(str(args[2]).split(None, 1)[0])

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def _partner(live: Live, code: str) -> tuple[IssuedCredential, PartnerContext]:
    credential = await live.partner(code)
    cached = await live.app.state.partner_credentials.get(
        live.sessionmaker, live.app.state.secrets.partner_secret_key, credential.key_id
    )
    assert cached is not None
    return credential, cached.partner


async def _riders(live: Live, partner_id: uuid.UUID, cards: list[str]) -> None:
    """Participants linked to `cards`, written in bulk (the path under test is crediting)."""
    pepper = live.app.state.secrets.identifier_pepper
    ids = [uuid.uuid4() for _ in cards]
    async with live.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO participants (id, kind, display_name) "
                "SELECT id, 'citizen', 'Rider' FROM unnest(CAST(:ids AS uuid[])) AS id"
            ),
            {"ids": ids},
        )
        await session.execute(
            text(
                "INSERT INTO identity_links (participant_id, partner_id, subject_hash) "
                "SELECT p, CAST(:partner AS uuid), s "
                "FROM unnest(CAST(:ids AS uuid[]), CAST(:subjects AS bytea[])) AS x(p, s)"
            ),
            {
                "ids": ids,
                "partner": partner_id,
                "subjects": [subject_hash(pepper, partner_id, card) for card in cards],
            },
        )


def _events(prefix: str, cards: list[str]) -> list[EventIn]:
    return [
        EventIn.model_validate(metro(f"{prefix}-{i}", card=card).to_json())
        for i, card in enumerate(cards)
    ]


async def _ingest(
    live: Live, partner: PartnerContext, events: list[EventIn]
) -> tuple[list[crediting.OutcomeOut], list[str]]:
    engine = live.sessionmaker.kw["bind"]
    async with live.sessionmaker() as session:
        registry = await live.app.state.registry_cache.get(session)
    with counting(engine) as statements:
        async with live.sessionmaker() as session, session.begin():
            outcomes = await crediting.ingest(
                session, registry, live.settings(), partner, list(events), datetime.now(UTC)
            )
    return outcomes, statements


async def test_a_batch_costs_the_same_statements_whatever_its_size(live: Live) -> None:
    credential, partner = await _partner(live, "metro-co")
    cards = [f"6222{i:012d}" for i in range(510)]
    await _riders(live, credential.partner_id, cards)

    small, small_statements = await _ingest(live, partner, _events("small", cards[:10]))
    large, large_statements = await _ingest(live, partner, _events("large", cards[10:510]))
    assert {o.status for o in small} == {o.status for o in large} == {"credited"}
    assert len(small_statements) == len(large_statements)
    assert len(large_statements) <= 8, large_statements
    print("statements per batch:", large_statements)

    # Re-sends add one look-up of the stored events, whatever their number.
    resent_small, resent_small_statements = await _ingest(
        live, partner, _events("small", cards[:10])
    )
    resent_large, resent_large_statements = await _ingest(
        live, partner, _events("large", cards[10:510])
    )
    assert [o.credit_id for o in resent_large] == [o.credit_id for o in large]
    assert [o.credit_id for o in resent_small] == [o.credit_id for o in small]
    assert len(resent_small_statements) == len(resent_large_statements) <= 3

    async with live.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Credit)) == 510
        assert await session.scalar(select(func.count()).select_from(LedgerTransaction)) == 510
    assert (await verify_ledger(live.sessionmaker.kw["bind"])).ok


async def test_each_copy_of_an_external_id_is_compared_with_the_stored_event(
    live: Live,
) -> None:
    credential, partner = await _partner(live, "metro-co")
    await _riders(live, credential.partner_id, ["6222020000000001"])
    (stored,), _ = await _ingest(live, partner, [EventIn.model_validate(metro("e100").to_json())])
    assert stored.status == "credited"

    changed = EventIn.model_validate(
        metro("e100", quantities={"distance_m": 999, "duration_s": 100}).to_json()
    )
    exact = EventIn.model_validate(metro("e100").to_json())
    outcomes, _ = await _ingest(live, partner, [changed, exact, changed, exact])
    assert [o.status for o in outcomes] == ["conflict", "credited", "conflict", "credited"]
    assert outcomes[1].credit_id == outcomes[3].credit_id == stored.credit_id

    # A new id: the first copy is the event; later copies are compared with it.
    fresh = EventIn.model_validate(metro("e200", occurred_at=stored.received_at).to_json())
    other = EventIn.model_validate(metro("e200", quantities={"distance_m": 1}).to_json())
    outcomes, _ = await _ingest(live, partner, [fresh, other, fresh])
    assert [o.status for o in outcomes][1] == "conflict"
    assert outcomes[0].status == outcomes[2].status
    assert outcomes[0].credit_id == outcomes[2].credit_id


async def test_concurrent_single_events_share_commits_and_each_gets_its_own_outcome(
    live: Live,
) -> None:
    credential, _ = await _partner(live, "metro-co")
    cards = [f"6222{i:012d}" for i in range(60)]
    await _riders(live, credential.partner_id, cards)
    committer: GroupCommitter = live.app.state.single_events
    groups_before, events_before = committer.groups, committer.events
    # Every request refreshes the methodology cache (it takes a connection to check): a
    # request must not keep that connection while it waits for its group, or 60 waiting
    # requests would starve the group commit of the pool's 20.
    cache = live.app.state.registry_cache
    ttl, cache.ttl = cache.ttl, 0.0
    started = time.monotonic()
    async with live.client(credential) as client:
        await client.submit_event(metro("seed", card=cards[0]))
        # One conflicting re-use of an id among the rides: only that request fails.
        results = await asyncio.gather(
            *(client.submit_event(metro(f"ride-{i}", card=cards[i])) for i in range(1, 60)),
            client.submit_event(metro("seed", card=cards[0], quantities={"distance_m": 5})),
            return_exceptions=True,
        )
    cache.ttl = ttl
    assert time.monotonic() - started < 20, "requests waited for the pool"
    outcomes, conflict = results[:-1], results[-1]
    assert isinstance(conflict, ConflictError)
    assert all(not isinstance(o, BaseException) and o.status == "credited" for o in outcomes)
    assert len({o.credit_id for o in outcomes if not isinstance(o, BaseException)}) == 59
    groups = committer.groups - groups_before
    assert committer.events - events_before == 61  # the conflict is decided in a group too
    assert groups < 60, "concurrent single events were not grouped"
    async with live.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Credit)) == 60
    assert (await verify_ledger(live.sessionmaker.kw["bind"])).ok


async def test_a_failing_group_is_retried_event_by_event(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    credential, partner = await _partner(live, "metro-co")
    cards = [f"6222{i:012d}" for i in range(8)]
    await _riders(live, credential.partner_id, cards)
    async with live.sessionmaker() as session:
        registry = await live.app.state.registry_cache.get(session)
    real = crediting.ingest_prepared
    sizes: list[int] = []

    async def flaky(session: Any, settings: Any, items: Any) -> Any:
        sizes.append(len(items))
        if len(items) > 1:
            raise RuntimeError("the group's transaction fails")
        if items[0].event.external_id == "poison":
            raise RuntimeError("this one event's transaction fails")
        return await real(session, settings, items)

    monkeypatch.setattr(group_commit, "ingest_prepared", flaky)
    committer = GroupCommitter(live.sessionmaker, live.settings, concurrency=1, window=0.05)
    now = datetime.now(UTC)
    items = [
        crediting.prepare(
            registry,
            live.settings(),
            partner,
            EventIn.model_validate(metro(x, card=c).to_json()),
            now,
        )
        for x, c in [*((f"ok-{i}", cards[i]) for i in range(7)), ("poison", cards[7])]
    ]
    assert all(isinstance(i, crediting.Prepared) for i in items)
    # The first starts alone; the rest gather behind it into one group, which fails.
    results = await asyncio.gather(
        *(committer.submit(i) for i in items if isinstance(i, crediting.Prepared)),
        return_exceptions=True,
    )
    assert max(sizes) > 1
    assert [type(r).__name__ for r in results[:7]] == ["OutcomeOut"] * 7
    assert isinstance(results[7], RuntimeError)
    async with live.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Credit)) == 7


async def test_a_group_does_not_wait_behind_a_lock_one_of_its_riders_is_under(
    live: Live,
) -> None:
    credential, partner = await _partner(live, "metro-co")
    cards = ["6222000000000001", "6222000000000002", "6222000000000003"]
    await _riders(live, credential.partner_id, cards)
    async with live.sessionmaker() as session:
        registry = await live.app.state.registry_cache.get(session)
    now = datetime.now(UTC)

    def prepared(external_id: str, card: str) -> crediting.Prepared:
        item = crediting.prepare(
            registry,
            live.settings(),
            partner,
            EventIn.model_validate(metro(external_id, card=card).to_json()),
            now,
        )
        assert isinstance(item, crediting.Prepared)
        return item

    committer = GroupCommitter(live.sessionmaker, live.settings, concurrency=1, window=0.05)
    await committer.submit(prepared("first", cards[0]))  # the rider's accounts exist now
    # A long batch holds the first rider's accounts.
    batch = live.sessionmaker()
    try:
        await batch.begin()
        await batch.execute(
            text(
                "SELECT 1 FROM ledger_accounts WHERE owner_id = ("
                "SELECT participant_id FROM identity_links WHERE subject_hash = :s) FOR UPDATE"
            ),
            {
                "s": subject_hash(
                    live.app.state.secrets.identifier_pepper, partner.partner_id, cards[0]
                )
            },
        )
        blocked = asyncio.ensure_future(committer.submit(prepared("blocked", cards[0])))
        others = [
            asyncio.ensure_future(committer.submit(prepared(f"free-{i}", card)))
            for i, card in enumerate(cards[1:])
        ]
        done = await asyncio.wait_for(asyncio.gather(*others), timeout=10)
        assert {o.status for o in done} == {"credited"}
        assert not blocked.done()
    finally:
        await batch.rollback()
        await batch.close()
    assert (await asyncio.wait_for(blocked, timeout=10)).status == "credited"
