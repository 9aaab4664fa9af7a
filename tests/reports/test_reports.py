"""Programme reports on a programme seeded through the real services: crediting over signed
HTTP, a till's authorise, capture and refund, the ledger's expiry job and a retraction. Every
figure is asserted exactly, and the liability against the participants' own balances."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import ValidationError

from service.config import Settings
from service.ledger import service as ledger
from service.ledger.schemas import CreditRequest
from service.merchants import service as merchants
from service.merchants.auth import issue_key
from service.partners.credentials import issue_credential
from service.partners.service import create_partner
from service.redemption.service import create_token
from tests.admin.conftest import SignedIn, make_admin
from tests.crediting.conftest import TRIP_AT, Live, metro
from tests.round_trips import round_trips

SHANGHAI = ZoneInfo("Asia/Shanghai")
BOM = "\ufeff"


@dataclass
class Seeded:
    riders: list[uuid.UUID]
    issued: int
    grams_by_partner: dict[str, int]
    expired: int
    reversed: int
    merchant_code: str
    partner_codes: tuple[str, str]


@pytest.fixture
async def http(live: Live) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=live.transport, base_url="http://test") as client:
        yield client


@pytest.fixture
async def auditor(live: Live) -> SignedIn:
    async with live.sessionmaker() as session, session.begin():
        return await make_admin(live.app, session, "auditor")


async def _partner(live: Live, code: str, name: str, action_types: tuple[str, ...]) -> Any:
    async with live.sessionmaker() as session, session.begin():
        partner = await create_partner(
            session, code=code, name=name, kind="transit", action_types=action_types
        )
        return await issue_credential(
            session, live.app.state.secrets.partner_secret_key, partner.id
        )


async def _seed(live: Live, http: httpx.AsyncClient) -> Seeded:
    suffix = uuid.uuid4().hex[:6]
    metro_partner = await _partner(live, f"metro-{suffix}", "南昌地铁", ("transit.metro",))
    bus_partner = await _partner(live, f"bus-{suffix}", "Nanchang Bus", ("transit.bus",))
    riders = [await live.participant() for _ in range(3)]
    await live.link(riders[0], metro_partner, "card-0")
    await live.link(riders[1], metro_partner, "card-1")
    await live.link(riders[1], bus_partner, "bus-1")

    async with live.client(metro_partner) as client:
        metro_outcomes = await client.submit_events(
            [
                metro("m1", card="card-0", region="CN-JX"),
                metro(
                    "m2", card="card-0", region="CN-JX", occurred_at=TRIP_AT - timedelta(hours=1)
                ),
                metro("m3", card="card-1"),
                metro("m4", card="card-unlinked"),  # pending: nobody linked the card yet
                metro("m5", card="card-0", occurred_at=TRIP_AT - timedelta(days=90)),  # expired
            ]
        )
    assert [o.status for o in metro_outcomes] == [
        "credited",
        "credited",
        "credited",
        "pending",
        "expired",
    ]
    async with live.client(bus_partner) as client:
        bus_outcomes = await client.submit_events(
            [
                metro(
                    "b1",
                    card="bus-1",
                    action_type="transit.bus",
                    region="CN-JX",
                    quantities={"distance_m": 8000},
                )
            ]
        )
    assert [o.status for o in bus_outcomes] == ["credited"]
    credited = [o for o in [*metro_outcomes, *bus_outcomes] if o.status == "credited"]
    issued = sum(o.points for o in credited)

    # A retraction: m3's credit is reversed through the ledger (rider 1 still has it all).
    async with live.client(metro_partner) as client:
        retracted = await client.retract("m3", "wrong card")
    assert retracted.status == "retracted"
    reversed_points = metro_outcomes[2].points

    # Points with their own expiry, straight through the ledger: one lot expiring in a day
    # (then expired by the job), one in ten days, one in sixty.
    now = datetime.now(UTC)
    async with live.sessionmaker() as session, session.begin():
        await ledger.credit(
            session,
            [
                CreditRequest(
                    origin="tests.reports",
                    key=f"lot-{suffix}-{days}",
                    participant_id=riders[2],
                    points=points,
                    grams=0,
                    expires_at=now + timedelta(days=days),
                )
                for days, points in ((1, 70), (10, 30), (60, 20))
            ],
        )
    issued += 120
    async with live.sessionmaker() as session, session.begin():
        assert await ledger.expire_lots(session, now=now + timedelta(days=1, minutes=1)) == 1

    # A merchant: one captured redemption of 100 points, 40 refunded; one still authorised.
    async with live.sessionmaker() as session, session.begin():
        merchant = await merchants.create_merchant(
            session, code=f"cafe-{suffix}", name="绿色咖啡馆"
        )
        key = await issue_key(session, merchant.id, ["redeem", "refund"])
        offer = await merchants.create_offer(
            session,
            merchant.id,
            title="燕麦拿铁",
            points_price=100,
            face_value_fen=1500,
            valid_from=now - timedelta(days=1),
            valid_to=now + timedelta(days=30),
        )
    headers = {"authorization": f"Bearer {key.token}"}

    async def authorise() -> str:
        async with live.sessionmaker() as session, session.begin():
            token = (await create_token(session, riders[0], now=datetime.now(UTC))).token
        response = await http.post(
            "/v1/merchant/redemptions",
            json={"redemption_token": token, "offer_id": str(offer.id)},
            headers={**headers, "idempotency-key": uuid.uuid4().hex},
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    captured = await authorise()
    for path, body in ((f"{captured}/capture", {}), (f"{captured}/refunds", {"points": 40})):
        response = await http.post(
            f"/v1/merchant/redemptions/{path}",
            json=body,
            headers={**headers, "idempotency-key": uuid.uuid4().hex},
        )
        assert response.status_code in (200, 201), response.text
    await authorise()  # held, not captured

    return Seeded(
        riders=riders,
        issued=issued,
        grams_by_partner={
            f"metro-{suffix}": sum(o.grams for o in metro_outcomes[:2]),
            f"bus-{suffix}": bus_outcomes[0].grams,
        },
        expired=70,
        reversed=reversed_points,
        merchant_code=f"cafe-{suffix}",
        partner_codes=(f"metro-{suffix}", f"bus-{suffix}"),
    )


def _period(hours: int = 24) -> dict[str, str]:
    now = datetime.now(SHANGHAI)
    return {
        "from": (now - timedelta(hours=hours)).isoformat(),
        "to": (now + timedelta(hours=1)).isoformat(),
    }


def _csv(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.content.startswith(BOM.encode("utf-8"))
    text = response.content.decode("utf-8")
    return list(csv.DictReader(io.StringIO(text.removeprefix(BOM))))


async def test_every_report_adds_up_on_a_seeded_programme(
    live: Live, http: httpx.AsyncClient, auditor: SignedIn
) -> None:
    seeded = await _seed(live, http)
    period = _period()

    # --- points and the liability ---
    response = await http.get("/v1/admin/reports/points", params=period, headers=auditor.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    flows, liability = body["flows"], body["liability"]
    assert flows == {
        "issued": seeded.issued,
        "redeemed": 100,
        "refunded": 40,
        "expired": seeded.expired,
        "reversed": seeded.reversed,
        "debt_repaid": 0,
        "expired_reclaimed": 0,
        "participants_net": seeded.issued - 100 + 40 - seeded.expired - seeded.reversed,
    }
    balances = []
    async with live.sessionmaker() as session:
        for rider in seeded.riders:
            balances.append(await ledger.balance(session, rider))
    outstanding = flows["issued"] - flows["redeemed"] + flows["refunded"]
    outstanding -= flows["expired"] + flows["reversed"] + flows["debt_repaid"]
    assert liability["outstanding"] == outstanding == sum(b.posted for b in balances)
    assert liability["held"] == 100 == sum(b.held for b in balances)
    assert liability["available"] == sum(b.available for b in balances)
    assert liability["debt"] == 0
    assert liability["holders"] == 3
    # Rider 2's lots: 70 expired, 30 due in ten days, 20 in sixty; the credited events' in
    # two years (the default validity), beyond every horizon.
    assert (liability["overdue"], liability["expiring_30_days"]) == (0, 30)
    assert (liability["expiring_90_days"], liability["expiring_365_days"]) == (50, 50)
    assert body["as_of"].endswith("+08:00")
    assert body["period"]["from"].endswith("+08:00")
    assert body["period"]["timezone"] == "Asia/Shanghai"

    rows = _csv(
        await http.get(
            "/v1/admin/reports/points", params={**period, "format": "csv"}, headers=auditor.headers
        )
    )
    figures = {(row["section"], row["figure"]): int(row["points"]) for row in rows}
    assert figures[("flows", "issued")] == seeded.issued
    assert figures[("liability", "outstanding")] == outstanding
    assert rows[0]["from"].endswith("+08:00") and " " in rows[0]["from"]
    assert next(r for r in rows if r["section"] == "liability")["as_of"].endswith("+08:00")

    # --- reductions ---
    response = await http.get(
        "/v1/admin/reports/reductions",
        params={**period, "from": (TRIP_AT - timedelta(days=2)).isoformat()},
        headers=auditor.headers,
    )
    assert response.status_code == 200, response.text
    reductions = response.json()
    month = TRIP_AT.astimezone(SHANGHAI).strftime("%Y-%m")
    metro_code, bus_code = seeded.partner_codes
    by_key = {
        (r["partner_code"], r["action_type"], r["region"]): r
        for r in reductions["rows"]
        if r["month"] == month
    }
    metro_jx = by_key[(metro_code, "transit.metro", "CN-JX")]
    assert (metro_jx["credits"], metro_jx["partner_name"]) == (2, "南昌地铁")
    assert metro_jx["grams"] == seeded.grams_by_partner[metro_code]
    retracted = by_key[(metro_code, "transit.metro", None)]
    assert (retracted["credits"], retracted["grams"], retracted["retracted"]) == (0, 0, 1)
    assert retracted["retracted_grams"] > 0
    bus = by_key[(bus_code, "transit.bus", "CN-JX")]
    assert bus["grams"] == seeded.grams_by_partner[bus_code]
    assert reductions["totals"]["grams"] == sum(seeded.grams_by_partner.values())
    assert all(isinstance(r["grams"], int) for r in reductions["rows"])
    rows = _csv(
        await http.get(
            "/v1/admin/reports/reductions",
            params={**period, "from": (TRIP_AT - timedelta(days=2)).isoformat(), "format": "csv"},
            headers=auditor.headers,
        )
    )
    assert {r["partner_name"] for r in rows} == {"南昌地铁", "Nanchang Bus"}
    assert sum(int(r["grams"]) for r in rows) == reductions["totals"]["grams"]
    assert all(r["month"] == month and r["to"].endswith("+08:00") for r in rows)

    # --- settlement ---
    response = await http.get(
        "/v1/admin/reports/settlement", params=period, headers=auditor.headers
    )
    assert response.status_code == 200, response.text
    settlement = response.json()
    (cafe,) = settlement["merchants"]
    assert cafe["merchant_code"] == seeded.merchant_code
    assert cafe["merchant_name"] == "绿色咖啡馆"
    assert (cafe["redemptions"], cafe["points_redeemed"]) == (1, 100)
    assert (cafe["refunds"], cafe["points_refunded"]) == (1, 40)
    assert (cafe["net_points"], cafe["value_fen"]) == (60, 60)
    assert settlement["totals"]["net_points"] == 60
    response = await http.get(
        "/v1/admin/reports/settlement",
        params={**period, "format": "csv"},
        headers=auditor.headers,
    )
    rows = _csv(response)
    assert [r["merchant_name"] for r in rows] == ["绿色咖啡馆", ""]
    assert (rows[0]["net_points"], rows[1]["merchant_code"], rows[1]["value_fen"]) == (
        "60",
        "total",
        "60",
    )
    assert rows[0]["from"].endswith("+08:00")
    # A spreadsheet program reading the bytes as UTF-8 with a BOM sees the Chinese name.
    assert "绿色咖啡馆".encode() in response.content

    # --- partners' health ---
    response = await http.get(
        "/v1/admin/reports/partner-health", params=period, headers=auditor.headers
    )
    assert response.status_code == 200, response.text
    health = {p["partner_code"]: p for p in response.json()["partners"]}
    metro_health = health[metro_code]
    assert metro_health["events"] == 5
    assert metro_health["outcomes"] == {
        "credited": 2,
        "expired": 1,
        "pending": 1,
        "retracted": 1,
    }
    assert metro_health["rejected"] == 1
    assert sum(h["events"] for h in metro_health["hours"]) == 5
    assert metro_health["peak_hour_events"] == max(h["events"] for h in metro_health["hours"])
    for hour in metro_health["hours"]:
        at = datetime.fromisoformat(hour["hour"])
        assert hour["hour"].endswith("+08:00") and (at.minute, at.second) == (0, 0)
    assert health[bus_code]["outcomes"] == {"credited": 1}
    rows = _csv(
        await http.get(
            "/v1/admin/reports/partner-health",
            params={**period, "format": "csv"},
            headers=auditor.headers,
        )
    )
    metro_rows = [r for r in rows if r["partner_code"] == metro_code]
    assert sum(int(r["events"]) for r in metro_rows) == 5
    assert sum(int(r["expired"]) for r in metro_rows) == 1
    assert metro_rows[0]["partner_name"] == "南昌地铁"
    assert metro_rows[0]["hour"].endswith("+08:00")


async def test_each_report_is_a_fixed_number_of_statements(
    live: Live, http: httpx.AsyncClient, auditor: SignedIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Set-based: the statements do not grow with the rows (seeded once, then twice)."""
    await _seed(live, http)
    counts = await _statement_counts(http, auditor, monkeypatch)
    await _seed(live, http)
    assert await _statement_counts(http, auditor, monkeypatch) == counts
    # The administrator's roles, then the report: one or two set-based reads and one for the
    # names of the partners or merchants it mentions.
    assert counts == {"reductions": 3, "points": 3, "settlement": 3, "partner-health": 3}


# The admin check's transaction, and asyncpg's one-off type introspection on a connection
# that meets a column type for the first time (the partners' array column).
_NOT_THE_REPORTS = (
    "BEGIN",
    "COMMIT",
    "SELECT current_setting('jit')",
    "WITH RECURSIVE typeinfo_tree",
    "SELECT set_config('jit'",
)


async def _statement_counts(
    http: httpx.AsyncClient, auditor: SignedIn, monkeypatch: pytest.MonkeyPatch
) -> dict[str, int]:
    counts = {}
    for name in ("reductions", "points", "settlement", "partner-health"):
        with round_trips(monkeypatch) as queries:
            response = await http.get(
                f"/v1/admin/reports/{name}", params=_period(), headers=auditor.headers
            )
        assert response.status_code == 200, response.text
        counts[name] = sum(1 for q in queries if not q.startswith(_NOT_THE_REPORTS))
    return counts


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"to": "2026-12-01T00:00:00+08:00"}, "from"),
        ({"from": "2026-12-01T00:00:00+08:00"}, "to"),
        ({"from": "2026-12-01T00:00:00", "to": "2026-12-02T00:00:00+08:00"}, "from"),
        ({"from": "2026-12-02T00:00:00+08:00", "to": "2026-12-01T00:00:00+08:00"}, "to"),
        ({"from": "2026-12-01T00:00:00+08:00", "to": "2026-12-01T00:00:00+08:00"}, "to"),
        ({"from": "2025-01-01T00:00:00+08:00", "to": "2026-12-01T00:00:00+08:00"}, "to"),
        ({"from": "tomorrow", "to": "2026-12-01T00:00:00+08:00"}, "from"),
        (
            {
                "from": "2026-11-01T00:00:00+08:00",
                "to": "2026-12-01T00:00:00+08:00",
                "format": "xlsx",
            },
            "format",
        ),
    ],
)
@pytest.mark.parametrize("name", ["reductions", "points", "settlement", "partner-health"])
async def test_a_bad_period_or_format_is_a_422_naming_the_parameter(
    live: Live,
    http: httpx.AsyncClient,
    auditor: SignedIn,
    name: str,
    params: dict[str, str],
    where: str,
) -> None:
    response = await http.get(f"/v1/admin/reports/{name}", params=params, headers=auditor.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/validation-error")
    assert [e["location"][-1] for e in problem["errors"]] == [where]


async def test_partner_health_reads_at_most_a_month_of_hours(
    live: Live, http: httpx.AsyncClient, auditor: SignedIn
) -> None:
    period = {"from": "2026-10-01T00:00:00+08:00", "to": "2026-11-15T00:00:00+08:00"}
    health = await http.get(
        "/v1/admin/reports/partner-health", params=period, headers=auditor.headers
    )
    assert health.status_code == 422
    assert "31 days" in health.json()["detail"]
    points = await http.get("/v1/admin/reports/points", params=period, headers=auditor.headers)
    assert points.status_code == 200


async def test_points_flows_name_debt_and_reclaimed_expiry(
    live: Live, http: httpx.AsyncClient, auditor: SignedIn
) -> None:
    """Reversals of expired and of spent points: the expiry account gives back, debt is owed,
    then repaid by points coming back; the flows still add up to the participant's balance."""
    rider = await live.participant()
    now = datetime.now(UTC)

    def points(key: str, amount: int, days: int) -> CreditRequest:
        return CreditRequest(
            origin="tests.reports",
            key=key,
            participant_id=rider,
            points=amount,
            grams=0,
            expires_at=now + timedelta(days=days),
        )

    async with live.sessionmaker() as session, session.begin():
        kept, short = await ledger.credit(
            session, [points("kept", 100, 400), points("short", 50, 1)]
        )
    async with live.sessionmaker() as session, session.begin():
        assert await ledger.expire_lots(session, now=now + timedelta(days=1, minutes=1)) == 1
    async with live.sessionmaker() as session, session.begin():
        # The expired credit reversed: its 50 points come back from the expiry account.
        assert short.transaction_id is not None and kept.transaction_id is not None
        await ledger.reverse_credit(
            session,
            origin="tests.reports",
            key="r-short",
            credit_id=short.transaction_id,
            reason="x",
        )
        merchant = await merchants.create_merchant(session, code=f"m-{rider.hex[:8]}", name="店")
    async with live.sessionmaker() as session, session.begin():
        hold = await ledger.place_hold(
            session,
            origin="tests.reports",
            key="h",
            participant_id=rider,
            merchant_id=merchant.id,
            amount=100,
            now=datetime.now(UTC),
            hold_for=timedelta(minutes=10),
        )
    async with live.sessionmaker() as session, session.begin():
        # All 100 are held: the reversal claws back nothing and leaves a debt of 100 ...
        reversal = await ledger.reverse_credit(
            session, origin="tests.reports", key="r-kept", credit_id=kept.transaction_id, reason="x"
        )
        assert (reversal.amount, reversal.unrecovered) == (0, 100)
    async with live.sessionmaker() as session, session.begin():
        # ... repaid by the points the voided hold gives back.
        await ledger.void_hold(session, origin="tests.reports", key="v", hold_id=hold.hold_id)
    async with live.sessionmaker() as session, session.begin():
        await ledger.credit(session, [points("later", 30, 400)])

    response = await http.get("/v1/admin/reports/points", params=_period(), headers=auditor.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["flows"] == {
        "issued": 180,
        "redeemed": 0,
        "refunded": 0,
        "expired": 50,
        "reversed": 0,
        "debt_repaid": 100,
        "expired_reclaimed": 50,
        "participants_net": 30,
    }
    async with live.sessionmaker() as session:
        balance = await ledger.balance(session, rider)
    assert (balance.posted, balance.debt) == (30, 0)
    liability = body["liability"]
    assert (liability["outstanding"], liability["held"], liability["debt"]) == (30, 0, 0)
    assert liability["expiring_365_days"] == 0


def test_the_programme_time_zone_must_be_a_real_one() -> None:
    """A misspelt zone stops the service at start-up, not the first report with a 500."""
    assert Settings(program_timezone="Asia/Urumqi").program_timezone == "Asia/Urumqi"
    with pytest.raises(ValidationError, match="unknown timezone"):
        Settings(program_timezone="Asia/Nanchang")
