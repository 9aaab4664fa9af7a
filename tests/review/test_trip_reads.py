"""The stored trips the flag rules read: the statement works out each trip's end exactly as
`flagging.Trip` does from its `duration_s`, whatever form the stored inputs hold it in."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from service.crediting import repository as repo
from service.partners.credentials import subject_hash
from service.review.flagging import Trip, duration_of
from service.review.rules import FlagRules, OverlapParams
from tests.crediting.conftest import TRIP_AT, Live
from tests.crediting.test_set_based import _partner
from tests.review.test_review_queue import rider, send, trips

# Each a stored `duration_s` (as JSON), one credit each. The engine stores quantities as
# exact decimal text; integers and the odd forms stand for rows written by hand or by older
# code. (No JSON number past 2**53: the driver reads one back as a float, which neither side
# would take as a duration.)
FORMS: list[Any] = [
    300,
    "600",
    "600.7",
    "0",
    None,
    True,
    "-5",
    "abc",
    "",
    21_599,
    21_600,
    21_601,
    2**53,
    str(10**30) + ".5",
]


async def test_the_statement_ends_every_trip_where_the_rules_would(live: Live) -> None:
    credential, partner = await _partner(live, "metro-co")
    pid = await rider(live, credential, "6222000000000077")
    rules = FlagRules(overlap=OverlapParams())
    minutes = [-20 * i for i in range(len(FORMS))]
    outcomes = await send(live, partner, trips("d", "6222000000000077", minutes), rules)
    ids = [int(o.credit_id or 0) for o in outcomes]
    assert all(ids), [(o.status, o.reasons) for o in outcomes]
    # Credits are append-only (a trigger refuses UPDATE); this test sets the stored forms
    # directly, with triggers off for its own transaction.
    async with live.sessionmaker() as session, session.begin():
        await session.execute(text("SET LOCAL session_replication_role = replica"))
        for event_id, form in zip(ids, FORMS, strict=True):
            await session.execute(
                text(
                    "UPDATE credits SET inputs = CASE WHEN CAST(:d AS jsonb) = 'null'"
                    " THEN inputs - 'duration_s'"
                    " ELSE jsonb_set(inputs, '{duration_s}', CAST(:d AS jsonb)) END"
                    " WHERE event_id = :e"
                ),
                {"d": json.dumps(form), "e": event_id},
            )
    async with live.sessionmaker() as session, session.begin():
        _, _, found = await repo.load_state(
            session,
            [],
            [],
            [(pid, TRIP_AT - timedelta(days=1), TRIP_AT + timedelta(days=2))],
            ["transit.metro"],
        )
        stored = {
            row[0]: row[1]
            for row in await session.execute(
                text("SELECT event_id, inputs FROM credits WHERE participant_id = :p"),
                {"p": pid},
            )
        }
    ends = {int(row.event_id): row.ends_at for row in found}
    assert set(ends) == set(ids)
    for event_id, form in zip(ids, FORMS, strict=True):
        row = next(r for r in found if int(r.event_id) == event_id)
        expected = Trip(
            event_id, row.key, row.occurred_at, duration_of(stored[event_id]), row.region
        ).ends_at
        assert ends[event_id] == expected, (form, ends[event_id], expected)


async def test_duplicates_are_found_the_same_with_the_trip_rules_on(live: Live) -> None:
    """With the trip rules on, a duplicate window is answered from the trip rows: the
    outcomes must be those with the rules off (the flags aside). A duplicate is the same
    trip reported by another partner within the window."""
    metro_co, by_metro = await _partner(live, "metro-co")
    _, by_app = await _partner(live, "metro-app")
    pepper = live.app.state.secrets.identifier_pepper
    statuses: dict[bool, list[str]] = {}
    for on, card in ((False, "6222000000000081"), (True, "6222000000000082")):
        pid = await rider(live, metro_co, card)
        async with live.sessionmaker() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO identity_links (participant_id, partner_id, subject_hash)"
                    " VALUES (:p, :partner, :s)"
                ),
                {
                    "p": pid,
                    "partner": by_app.partner_id,
                    "s": subject_hash(pepper, by_app.partner_id, card),
                },
            )
        rules = FlagRules(overlap=OverlapParams()) if on else FlagRules()
        prefix = f"dup-{int(on)}"
        outcomes = [
            # Stored: a trip; then the other partner's report of it 2 minutes off (a
            # duplicate), and one 9 minutes off (not one); then a trip far outside every window.
            *await send(live, by_metro, trips(f"{prefix}-a", card, [-60]), rules),
            *await send(live, by_app, trips(f"{prefix}-b", card, [-58, -51]), rules),
            *await send(live, by_metro, trips(f"{prefix}-c", card, [-52]), rules),
            *await send(live, by_app, trips(f"{prefix}-d", card, [-300]), rules),
        ]
        statuses[on] = [o.status for o in outcomes]
    assert statuses[True] == statuses[False]
    assert statuses[True] == ["credited", "duplicate", "credited", "duplicate", "credited"]
