"""The ledger's business counters (`carbon_points_points_total{flow}`,
`carbon_points_holds_resolved_total{outcome}`) move when, and only when, the transaction that
moved the points commits: a redemption, a refund, an expiry, a reversal, a hold timeout."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from service import metrics
from service.ledger import service as ledger
from service.ledger.errors import HoldAlreadyResolvedError
from service.ledger.jobs import run_expiry, run_hold_timeouts
from tests.crediting.conftest import Live, live, metro
from tests.ledger.conftest import NOW, Ledger
from tests.ledger.test_holds_refunds_reversals import hold, post, reverse, void

__all__ = ["live"]


def flows() -> dict[str, float]:
    return {
        flow: REGISTRY.get_sample_value("carbon_points_points_total", {"flow": flow}) or 0.0
        for flow in metrics.POINT_FLOWS
    }


def holds() -> dict[str, float]:
    return {
        outcome: REGISTRY.get_sample_value(
            "carbon_points_holds_resolved_total", {"outcome": outcome}
        )
        or 0.0
        for outcome in metrics.HOLD_OUTCOMES
    }


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


async def test_a_redemption_a_refund_and_a_void_move_their_counters(ledger_env: Ledger) -> None:
    alice = uuid.uuid4()
    before, held_before = flows(), holds()
    credited = await ledger_env.credit(alice, 1000)
    assert moved(before, flows()) == {"issued": 1000}

    before = flows()
    captured = await hold(ledger_env, alice, 400)
    assert moved(before, flows()) == {}  # a hold reserves points; nothing moved yet
    resolution = await post(ledger_env, captured.hold_id, 300, key="capture-1")
    assert moved(before, flows()) == {"redeemed": 300}
    assert moved(held_before, holds()) == {"posted": 1}

    # A retry of the same capture replays: counted once.
    await post(ledger_env, captured.hold_id, 300, key="capture-1")
    assert moved(before, flows()) == {"redeemed": 300}

    before = flows()
    assert resolution.transaction_id is not None
    await ledger_env.run(
        lambda s: ledger.refund(
            s, origin="till", key="refund-1", redemption_id=resolution.transaction_id, amount=120
        )
    )
    assert moved(before, flows()) == {"refunded": 120}

    voided = await hold(ledger_env, alice, 50)
    await void(ledger_env, voided.hold_id)
    assert moved(held_before, holds()) == {"posted": 1, "voided": 1}
    assert credited.transaction_id is not None


async def test_expiry_reversal_and_hold_timeouts_move_their_counters(ledger_env: Ledger) -> None:
    people = [uuid.uuid4() for _ in range(3)]
    for person in people:
        await ledger_env.credit(person, 10, expires_at=NOW + timedelta(days=1))
    before = flows()
    assert await run_expiry(ledger_env.sessionmaker, now=NOW + timedelta(days=2)) == 3
    assert moved(before, flows()) == {"expired": 30}
    assert await run_expiry(ledger_env.sessionmaker, now=NOW + timedelta(days=2)) == 0
    assert moved(before, flows()) == {"expired": 30}

    bob = uuid.uuid4()
    credit = await ledger_env.credit(bob, 100)
    spent = await hold(ledger_env, bob, 70)
    await post(ledger_env, spent.hold_id, 70)
    before = flows()
    result = await reverse(ledger_env, credit.transaction_id)
    assert (result.amount, result.unrecovered) == (30, 70)
    # Reversed: what was taken back from the balance; the 70 already spent became debt.
    assert moved(before, flows()) == {"reversed": 30}

    carol = uuid.uuid4()
    await ledger_env.credit(carol, 100)
    await hold(ledger_env, carol, 40, minutes=5)
    held_before = holds()
    assert await run_hold_timeouts(ledger_env.sessionmaker, now=NOW + timedelta(minutes=6)) == 1
    assert moved(held_before, holds()) == {"expired": 1}


async def test_rolled_back_work_is_never_counted(ledger_env: Ledger) -> None:
    alice = uuid.uuid4()
    await ledger_env.credit(alice, 500)
    placed = await hold(ledger_env, alice, 200)
    before, held_before = flows(), holds()

    # The whole transaction rolls back after the capture was written.
    async def capture_then_fail() -> None:
        async with ledger_env.sessionmaker() as session, session.begin():
            await ledger.post_hold(
                session,
                origin="till",
                key="rolled-back",
                hold_id=placed.hold_id,
                amount=200,
                now=NOW + timedelta(minutes=1),
            )
            raise RuntimeError("something after the capture fails: the request rolls back")

    with pytest.raises(RuntimeError):
        await capture_then_fail()
    assert moved(before, flows()) == {}
    assert moved(held_before, holds()) == {}

    # A savepoint rolled back inside a transaction that commits: only what is outside it.
    async with ledger_env.sessionmaker() as session, session.begin():
        savepoint = await session.begin_nested()
        await ledger.post_hold(
            session,
            origin="till",
            key="in-savepoint",
            hold_id=placed.hold_id,
            amount=200,
            now=NOW + timedelta(minutes=1),
        )
        await savepoint.rollback()
        async with session.begin_nested():  # released, then committed with the outer one
            metrics.count_points(session, "issued", 7)
        assert moved(before, flows()) == {}  # not yet: the outer transaction is open
    assert moved(before, flows()) == {"issued": 7}
    assert moved(held_before, holds()) == {}

    # Two tills capture the same hold at once: one commits, one is refused; counted once.
    async def capture(key: str) -> object:
        try:
            return await ledger_env.run(
                lambda s: ledger.post_hold(
                    s,
                    origin="till",
                    key=key,
                    hold_id=placed.hold_id,
                    amount=200,
                    now=NOW + timedelta(minutes=1),
                )
            )
        except HoldAlreadyResolvedError as exc:
            return exc

    before = flows()
    results = await asyncio.gather(*(capture(f"till-{i}") for i in range(4)))
    assert sum(not isinstance(r, HoldAlreadyResolvedError) for r in results) == 1
    assert moved(before, flows()) == {"redeemed": 200}
    assert moved(held_before, holds()) == {"posted": 1}
    posted = await ledger_env.run(
        lambda s: s.scalar(
            text("SELECT count(*) FROM ledger_hold_resolutions WHERE hold_id = :h"),
            {"h": placed.hold_id},
        )
    )
    assert posted == 1


def test_unknown_flows_and_outcomes_are_refused() -> None:
    with pytest.raises(ValueError, match="flow"):
        metrics.count_points(None, "minted", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outcome"):
        metrics.count_hold(None, "lost")  # type: ignore[arg-type]


async def test_a_partner_retraction_shows_on_the_scrape(live: Live) -> None:
    partner = await live.partner("metro-retract-metrics")
    rider = await live.participant()
    await live.link(rider, partner, "card-r")
    async with live.client(partner) as client:
        outcome = await client.submit_event(metro("r1", card="card-r"))
        assert outcome.status == "credited"

        async with httpx.AsyncClient(transport=live.transport, base_url="http://test") as http:

            async def reversed_on_scrape() -> float:
                text_ = (await http.get("/metrics")).text
                for family in text_string_to_metric_families(text_):
                    for sample in family.samples:
                        if sample.name == "carbon_points_points_total" and sample.labels == {
                            "flow": "reversed"
                        }:
                            return sample.value
                return 0.0

            before = await reversed_on_scrape()
            retracted = await client.retract("r1", "ticket_refunded")
            assert retracted.status == "retracted"
            assert await reversed_on_scrape() - before == outcome.points
