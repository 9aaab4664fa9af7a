"""Pooling runs: eligible grams moved through the ledger into a batch with kilogram serials,
provenance recorded once, reversals after issuance carried as a shortfall the next batch
makes good."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from sqlalchemy.exc import IntegrityError

from service.reductions import documents
from service.reductions import service as reductions
from service.reductions.errors import NothingToPoolError, PoolBelowMinimumError
from tests.reductions.conftest import Programme, grams_of


async def test_a_run_moves_the_grams_into_a_batch_with_serials(programme: Programme) -> None:
    a, b = await programme.rider(), await programme.rider()
    rides = await programme.rides([(a, 30000), (b, 25000), (a, 12000)])
    credited = [g for _, g in rides]
    assert credited == [grams_of(30000), grams_of(25000), grams_of(12000)]
    points_before = await programme.live.balance(a)
    await programme.pool(min_kilograms=1)

    batch = await programme.run()

    total = sum(credited)
    assert batch.pooled_grams == total
    assert batch.issued_grams == total // 1000 * 1000
    assert batch.closing_grams == total % 1000 and batch.opening_grams == 0
    assert (batch.serial_first, batch.serial_last) == (1, total // 1000)
    # The grams left the participants; their points did not.
    assert await programme.grams(a) == 0 and await programme.grams(b) == 0
    assert await programme.live.balance(a) == points_before
    async with programme.live.sessionmaker() as session:
        doc = await reductions.issuance(session, batch.id)
        position = await reductions.pool_position(session, "jx-metro")
        credits = await reductions.batch_credits(session, batch.id)
    assert position.balance == total and position.position == total % 1000
    data = documents.issuance_json(doc)
    assert data["kilograms"] == total // 1000
    assert data["serials"] == f"CP/CN-JX/transit.metro/{programme_vintage()}/0000000001-" + (
        f"{total // 1000:010d}"
    )
    assert data["provenance"]["credits"] == 3
    assert data["provenance"]["grams_by_action_type"] == [
        {"action_type": "transit.metro", "credits": 3, "grams": total}
    ]
    assert data["provenance"]["methodology_versions"] == [
        {"version": 1, "credits": 3, "grams": total}
    ]
    # The hash is of the credit list anyone can recompute from the batch's credits.
    listing = "".join(f"{c.credit_event_id},{c.grams}\n" for c in credits)
    assert data["provenance"]["credits_sha256"] == hashlib.sha256(listing.encode()).hexdigest()
    csv_bytes = documents.issuance_csv(doc)
    assert csv_bytes.startswith("\ufeff".encode())
    assert f"credits_sha256,{data['provenance']['credits_sha256']}" in csv_bytes.decode()
    assert (await programme.verify()).breaches == []

    # Nothing left to pool: refused, nothing written.
    with pytest.raises(NothingToPoolError):
        await programme.run()
    assert await programme.sql("SELECT count(*) FROM reduction_batches") == [(1,)]


def programme_vintage() -> str:
    from tests.reductions.conftest import VINTAGE

    return VINTAGE


async def test_only_eligible_credits_are_pooled(programme: Programme) -> None:
    rider = await programme.rider()
    await programme.rides([(rider, 30000)])
    other = await programme.rider()
    await programme.rides([(other, 20000)], region="CN-HB")  # another region
    await programme.pool(min_kilograms=1)
    async with programme.live.sessionmaker() as session, session.begin():
        # Settle window: credits received in the last 24 hours are not eligible yet.
        await reductions.create_pool(
            session,
            __import__("tests.reductions.conftest", fromlist=["ACTOR"]).ACTOR,
            code="jx-settled",
            methodology_id="transit.metro",
            version_min=1,
            version_max=100,
            region="CN-JX",
            vintage=programme_vintage(),
            min_kilograms=1,
            settle_hours=24,
            tz="Asia/Shanghai",
        )
    with pytest.raises(NothingToPoolError):
        await programme.run("jx-settled")
    batch = await programme.run()
    assert batch.pooled_grams == grams_of(30000)
    assert await programme.grams(rider) == 0
    assert await programme.grams(other) == grams_of(20000)  # the CN-HB ride stays


async def test_a_batch_below_the_minimum_is_refused_and_nothing_moves(
    programme: Programme,
) -> None:
    rider = await programme.rider()
    await programme.rides([(rider, 30000)])
    await programme.pool(min_kilograms=5)
    with pytest.raises(PoolBelowMinimumError):
        await programme.run()
    assert await programme.grams(rider) == grams_of(30000)
    assert await programme.sql("SELECT count(*) FROM ledger_pooled_credits") == [(0,)]


async def test_a_reversal_after_issuance_is_a_shortfall_the_next_batch_makes_good(
    programme: Programme,
) -> None:
    a, b = await programme.rider(), await programme.rider()
    first = await programme.rides([(a, 30000), (b, 30000)])  # 2 x 1401 g
    await programme.pool(min_kilograms=1)
    batch1 = await programme.run()
    assert (batch1.issued_grams, batch1.closing_grams) == (2000, 802)

    # A pooled credit is retracted: its grams come back from the pool account, the issued
    # batch is unchanged, and the pool now owes 1401 - 802 = 599 g.
    await programme.retract(first[0][0])
    async with programme.live.sessionmaker() as session:
        position = await reductions.pool_position(session, "jx-metro")
    assert position.position == 802 - 1401
    assert [c.grams for c in position.shortfall_credits] == [1401]
    assert await programme.grams(a) == 0  # not taken from the participant twice
    assert (await programme.verify()).breaches == []

    c = await programme.rider()
    await programme.rides([(c, 40000)])  # 1868 g
    batch2 = await programme.run()
    assert batch2.opening_grams == -599
    assert batch2.pooled_grams == 1868
    assert (batch2.issued_grams, batch2.closing_grams) == (1000, 269)
    assert batch2.serial_first == batch1.serial_last + 1
    assert (await programme.verify()).breaches == []


async def test_the_database_refuses_pooling_a_credit_twice(programme: Programme) -> None:
    rider = await programme.rider()
    await programme.rides([(rider, 30000)])
    await programme.pool()
    batch = await programme.run()
    row = await programme.sql(
        "SELECT credit_event_id, credit_transaction_id, grams FROM reduction_batch_credits"
    )
    event_id, tx_id, grams = row[0]
    with pytest.raises(IntegrityError, match="pk_reduction_batch_credits"):
        await programme.sql(
            "INSERT INTO reduction_batch_credits (credit_event_id, batch_id,"
            " credit_transaction_id, grams, action_type, methodology_version)"
            " VALUES (:e, :b, :t, :g, 'transit.metro', 1)",
            e=event_id,
            b=batch.id,
            t=tx_id,
            g=grams,
        )
    with pytest.raises(IntegrityError, match="pk_ledger_pooled_credits"):
        await programme.sql(
            "INSERT INTO ledger_pooled_credits (credit_transaction_id, pooling_transaction_id,"
            " pool_account_id, grams) SELECT credit_transaction_id, pooling_transaction_id,"
            " pool_account_id, grams FROM ledger_pooled_credits"
        )


async def test_two_racing_runs_pool_each_credit_once(programme: Programme) -> None:
    riders = [await programme.rider() for _ in range(6)]
    rides = await programme.rides([(r, 30000) for r in riders])
    await programme.pool("jx-a")
    await programme.pool("jx-b")  # the same definition: both want every credit

    async def run(code: str) -> object:
        try:
            return await programme.run(code)
        except NothingToPoolError as error:
            return error

    for _ in range(3):  # the race, from both sides
        outcomes = await asyncio.gather(run("jx-a"), run("jx-b"))
        batches = [o for o in outcomes if not isinstance(o, Exception)]
        assert len(batches) <= 1
        if batches:
            break
        riders = [await programme.rider() for _ in range(6)]
        rides += await programme.rides([(r, 30000) for r in riders])
    assert len(batches) == 1
    pooled = await programme.sql(
        "SELECT count(*), count(DISTINCT credit_event_id), sum(grams) FROM reduction_batch_credits"
    )
    assert pooled[0][0] == pooled[0][1] == len(rides)
    assert pooled[0][2] == sum(g for _, g in rides)
    assert all([await programme.grams(r) == 0 for r in programme.riders])
    assert (await programme.verify()).breaches == []


_NOT_THE_RUN = (
    "SELECT current_setting('jit')",
    "WITH RECURSIVE typeinfo_tree",
    "SELECT set_config('jit'",
)


async def test_a_run_is_a_fixed_number_of_statements(
    programme: Programme, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Set-based: a run of 2 credits and a run of 12 send the same statements (the pool's
    first run also creates its ledger account: two more)."""
    from tests.round_trips import round_trips

    await programme.pool()
    counts = []
    for riders in (2, 2, 12):
        people = [await programme.rider() for _ in range(riders)]
        await programme.rides([(p, 30000) for p in people])
        with round_trips(monkeypatch) as queries:
            await programme.run()
        counts.append([q for q in queries if not q.startswith(_NOT_THE_RUN)])
    # (The tests keep the programme's accounts between tests: the pool's may exist already.)
    assert len(counts[0]) in (len(counts[1]), len(counts[1]) + 2)
    assert len(counts[1]) == len(counts[2]), counts
    assert len(counts[2]) <= 20, counts[2]


async def test_reversals_racing_a_run_leave_every_gram_accounted_for(
    programme: Programme,
) -> None:
    """Retractions sent while a run pools the same credits: each credit ends either reversed
    before it was pooled (skipped, its grams back from the participant) or pooled and then
    reversed (its grams back from the pool: a shortfall). Neither ledger nor reductions
    verify finds anything, and no participant keeps a gram of a reversed credit."""
    from service.ledger.verify import verify_ledger

    riders = [await programme.rider() for _ in range(8)]
    rides = await programme.rides([(r, 30000) for r in riders])
    await programme.pool()

    async def run() -> object:
        try:
            return await programme.run()
        except (NothingToPoolError, PoolBelowMinimumError) as error:
            return error

    retracted = rides[::2]
    await asyncio.gather(run(), *(programme.retract(external_id) for external_id, _ in retracted))
    assert (await programme.verify()).breaches == []
    engine = programme.live.sessionmaker.kw["bind"]
    assert (await verify_ledger(engine)).violations == []
    async with programme.live.sessionmaker() as session:
        position = await reductions.pool_position(session, "jx-metro")
    pooled = await programme.sql("SELECT coalesce(sum(grams), 0) FROM reduction_batch_credits")
    reversed_after = sum(c.grams for c in position.shortfall_credits)
    assert position.balance == int(pooled[0][0]) - reversed_after  # type: ignore[call-overload]
    for rider in riders:
        assert await programme.grams(rider) == 0  # pooled, or reversed: never both, never left


async def test_a_credit_under_review_is_not_pooled_until_approved(programme: Programme) -> None:
    flagged, clean = await programme.rider(), await programme.rider()
    rides = await programme.rides([(flagged, 30000), (clean, 25000)])
    await programme.pool(min_kilograms=1)
    # An open flag on the first ride's credit, as the crediting path writes it.
    await programme.sql(
        """
        INSERT INTO review_flags (event_id, participant_id, partner_id, action_type,
            occurred_at, flagged_at, rules, details, points, grams, transaction_id)
        SELECT c.event_id, c.participant_id, e.partner_id, c.action_type, c.occurred_at,
               now(), ARRAY['velocity'], '[]'::jsonb, c.points, c.grams, c.transaction_id
        FROM credits AS c JOIN partner_events AS e ON e.id = c.event_id
        WHERE e.external_id = :external_id
        RETURNING event_id
        """,
        external_id=rides[0][0],
    )

    first = await programme.run()
    assert first.pooled_grams == rides[1][1]
    assert await programme.grams(flagged) == rides[0][1]  # held back with its flag

    await programme.sql(
        "UPDATE review_flags SET status = 'approved', decided_at = now() RETURNING event_id"
    )
    second = await programme.run()
    assert second.pooled_grams == rides[0][1]
    assert await programme.grams(flagged) == 0
    assert (await programme.verify()).breaches == []
