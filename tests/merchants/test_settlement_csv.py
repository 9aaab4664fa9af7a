"""The settlement CSV is for spreadsheets: times in the programme's timezone, and a UTF-8 BOM
so that Excel reads the file as UTF-8."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import ValidationError

from service.config import Settings
from tests.crediting.conftest import Live
from tests.merchants.test_redemption import _code, _setup, http

__all__ = ["http"]


async def test_settlement_csv_has_a_bom_and_local_times(
    live: Live, http: httpx.AsyncClient
) -> None:
    till, rider, _ = await _setup(live, http, points=100)
    sold = await till.call(
        "POST",
        "/v1/merchant/redemptions",
        {"redemption_token": await _code(live, rider), "points": 60},
    )
    await till.call("POST", f"/v1/merchant/redemptions/{sold.json()['id']}/capture", {})
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    end = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    response = await till.http.get(
        "/v1/merchant/settlement",
        params={"from": start, "to": end, "format": "csv"},
        headers={"authorization": f"Bearer {till.token}"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0] == ["at", "kind", "transaction_id", "points", "value_fen"]
    (capture,) = rows[1:-1]
    at = datetime.fromisoformat(capture[0])
    assert live.app.state.settings.program_timezone == "Asia/Shanghai"
    assert at.utcoffset() == timedelta(hours=8)  # Shanghai, not UTC
    assert abs(at - datetime.now(UTC)) < timedelta(minutes=5)
    assert rows[-1] == ["total", "", "", "60", "60"]


def test_the_programme_timezone_must_be_a_known_zone() -> None:
    assert Settings(program_timezone="Asia/Urumqi").program_timezone == "Asia/Urumqi"
    with pytest.raises(ValidationError, match="unknown timezone"):
        Settings(program_timezone="China/Nanchang")
