"""Reductions tests: credits made through the real partner API, pooled through the service."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from integrations import Event
from service import audit
from service.ledger import service as ledger
from service.models import ReductionBatch, ReductionPool
from service.partners.credentials import IssuedCredential
from service.reductions import service as reductions
from service.reductions.verify import ReductionsReport, verify_reductions
from tests.crediting.conftest import TRIP_AT, Live, live

__all__ = ["live"]

REGION = "CN-JX"
ACTOR = audit.Actor(None, "tests", "program-admin", "tests")
# The vintage the rides fall in: the year of TRIP_AT in the programme's zone.
VINTAGE = str(TRIP_AT.astimezone(ZoneInfo("Asia/Shanghai")).year)


def grams_of(distance_m: int) -> int:
    """What transit.metro v1 credits for a ride of `distance_m` (46.7 g/km, rounded down)."""
    return distance_m * 467 // 10000


@dataclass
class Programme:
    live: Live
    partner: IssuedCredential
    riders: dict[uuid.UUID, str] = field(default_factory=dict)
    sent: int = 0

    async def rider(self) -> uuid.UUID:
        pid = await self.live.participant()
        card = f"card-{uuid.uuid4().hex[:12]}"
        await self.live.link(pid, self.partner, card)
        self.riders[pid] = card
        return pid

    async def rides(
        self, rides: list[tuple[uuid.UUID, int]], *, region: str = REGION
    ) -> list[tuple[str, int]]:
        """One metro ride per (rider, distance in m); returns (external id, grams) each."""
        events = []
        for pid, distance in rides:
            self.sent += 1
            events.append(
                Event(
                    external_id=f"ride-{self.sent}-{uuid.uuid4().hex[:6]}",
                    action_type="transit.metro",
                    # Distinct times (de-duplication looks for the same action near in time).
                    occurred_at=TRIP_AT - timedelta(minutes=7 * self.sent),
                    subject_ref=self.riders[pid],
                    region=region,
                    quantities={"distance_m": distance, "duration_s": 3600},
                )
            )
        async with self.live.client(self.partner) as client:
            outcomes = await client.submit_events(events)
        assert [o.status for o in outcomes] == ["credited"] * len(events), outcomes
        return [(e.external_id, o.grams) for e, o in zip(events, outcomes, strict=True)]

    async def retract(self, external_id: str) -> None:
        async with self.live.client(self.partner) as client:
            assert (await client.retract(external_id, "wrong card")).status == "retracted"

    async def pool(self, code: str = "jx-metro", min_kilograms: int = 1) -> ReductionPool:
        async with self.live.sessionmaker() as session, session.begin():
            return await reductions.create_pool(
                session,
                ACTOR,
                code=code,
                methodology_id="transit.metro",
                version_min=1,
                version_max=100,
                region=REGION,
                vintage=VINTAGE,
                min_kilograms=min_kilograms,
                settle_hours=0,
                tz="Asia/Shanghai",
            )

    async def run(self, code: str = "jx-metro") -> ReductionBatch:
        async with self.live.sessionmaker() as session, session.begin():
            return await reductions.run_pool(session, ACTOR, code, now=datetime.now(UTC))

    async def grams(self, pid: uuid.UUID) -> int:
        async with self.live.sessionmaker() as session:
            return (await ledger.balance(session, pid)).grams

    async def verify(self) -> ReductionsReport:
        async with self.live.sessionmaker() as session, session.begin():
            return await verify_reductions(session)

    async def sql(self, statement: str, **params: object) -> list[tuple[object, ...]]:
        async with self.live.sessionmaker() as session, session.begin():
            result = await session.execute(text(statement), params)
            return [tuple(row) for row in result] if result.returns_rows else []


@pytest.fixture
async def programme(live: Live) -> Programme:
    partner = await live.partner(f"metro-{uuid.uuid4().hex[:6]}", ("transit.metro",))
    return Programme(live, partner)
