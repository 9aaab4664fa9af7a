"""The app speaks zh-CN unless asked otherwise; every API honours Accept-Language."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from integrations import make_link_token, make_voucher
from tests.accounts.helpers import bearer, register
from tests.crediting.conftest import Live, metro

PROBLEMS = "https://carbon-points.dev/problems/"


@pytest.fixture
async def http(live: Live) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=live.transport, base_url="http://test") as client:
        yield client


async def _citizen_with_a_trip(
    live: Live, http: httpx.AsyncClient, **trip: object
) -> tuple[dict[str, str], str]:
    partner = await live.partner(f"metro-{uuid.uuid4().hex[:8]}")
    user = await register(http)
    card = f"card-{uuid.uuid4().hex[:6]}"
    token = make_link_token(
        key_id=partner.key_id, secret=partner.secret, subject_ref=card, token_id=f"lt-{card}"
    )
    linked = await http.post(
        "/v1/app/identity-links", json={"token": token}, headers=bearer(user.access_token)
    )
    assert linked.status_code == 201, linked.text
    async with live.client(partner) as client:
        outcome = await client.submit_event(metro(f"trip-{card}", card=card, **trip))
    return bearer(user.access_token), str(outcome.credit_id)


async def test_app_problems_are_in_chinese_by_default_and_english_on_request(
    live: Live, http: httpx.AsyncClient
) -> None:
    auth, _ = await _citizen_with_a_trip(live, http)
    path = "/v1/app/credits/987654321/explanation"

    default = await http.get(path, headers=auth)
    assert default.status_code == 404
    assert default.headers["content-language"] == "zh-CN"
    body = default.json()
    assert body["type"] == PROBLEMS + "credit-not-found"  # never translated
    assert body["title"] == "未找到该笔积分记录"
    assert body["detail"] == "本账号没有编号为 987654321 的积分记录"

    english = await http.get(path, headers={**auth, "accept-language": "en"})
    assert english.headers["content-language"] == "en"
    assert english.json()["type"] == body["type"]
    assert english.json()["title"] == "Credit not found"
    assert english.json()["detail"] == "no credit 987654321 on this account"

    weighted = await http.get(path, headers={**auth, "accept-language": "en;q=0.5, zh-CN;q=0.9"})
    assert weighted.json()["title"] == "未找到该笔积分记录"
    preferred_en = await http.get(path, headers={**auth, "accept-language": "zh;q=0.5, en"})
    assert preferred_en.json()["title"] == "Credit not found"
    unknown = await http.get(path, headers={**auth, "accept-language": "fr-FR, de;q=0.8"})
    assert unknown.headers["content-language"] == "zh-CN"
    assert unknown.json()["title"] == "未找到该笔积分记录"

    # A problem raised before any endpoint runs (no bearer token), and a validation error.
    anonymous = await http.get("/v1/app/balance")
    assert anonymous.json()["title"] == "需要访问令牌"
    invalid = await http.get("/v1/app/history?limit=0", headers=auth)
    assert invalid.status_code == 422
    assert invalid.json()["title"] == "请求未通过校验"
    assert invalid.json()["detail"] == "1 个字段未通过校验"
    bad_voucher = await http.post("/v1/app/vouchers", json={"token": "x" * 20}, headers=auth)
    assert bad_voucher.json()["title"] == "合作方令牌无效或已过期"


async def test_partner_and_merchant_apis_default_to_english_and_honour_the_header(
    http: httpx.AsyncClient,
) -> None:
    body = {"redemption_token": "rt_" + "x" * 30, "points": 10}
    headers = {"authorization": "Bearer cpmk_nope", "idempotency-key": uuid.uuid4().hex}
    english = await http.post("/v1/merchant/redemptions", json=body, headers=headers)
    assert english.status_code == 401
    assert english.headers["content-language"] == "en"
    assert english.json()["title"] == "Missing, unknown or revoked merchant key"
    chinese = await http.post(
        "/v1/merchant/redemptions", json=body, headers={**headers, "accept-language": "zh-CN"}
    )
    assert chinese.headers["content-language"] == "zh-CN"
    assert chinese.json()["title"] == "商户密钥缺失、未知或已吊销"
    assert chinese.json()["detail"] == "商户密钥格式错误"
    unsigned = await http.post("/v1/partner/events", json={}, headers={"accept-language": "zh"})
    assert unsigned.json()["title"] == "请求未签名"


async def test_the_explanation_and_history_read_in_chinese(
    live: Live, http: httpx.AsyncClient
) -> None:
    auth, credit_id = await _citizen_with_a_trip(live, http)
    explained = await http.get(f"/v1/app/credits/{credit_id}/explanation", headers=auth)
    assert explained.headers["content-language"] == "zh-CN"
    body = explained.json()
    assert body["trace"]["methodology"]["title"] == "地铁出行（全国默认）"
    assert body["trace"]["methodology"]["description"].startswith("地铁每人公里")
    text = body["text"]
    assert text.splitlines()[0] == "地铁出行（全国默认）"
    assert "参数：" in text and "输入：" in text and "计算公式：" in text
    assert "结果：已计入" in text
    # Times in the programme's time zone (Asia/Shanghai): the same instant, read locally.
    assert body["trace"]["occurred_at"].endswith("+08:00")
    english = await http.get(
        f"/v1/app/credits/{credit_id}/explanation", headers={**auth, "accept-language": "en"}
    )
    assert english.json()["trace"]["methodology"]["title"] == "Metro trip (national default)"
    assert "parameters:" in english.json()["text"]
    assert english.json()["grams"] == body["grams"]

    history = await http.get("/v1/app/history", headers=auth)
    assert history.headers["content-language"] == "zh-CN"
    (item,) = history.json()["items"]
    assert (item["reason"], item["reason_text"]) == ("action_credited", "低碳行为获得积分")
    assert item["at"].endswith("+08:00")
    english_history = await http.get("/v1/app/history", headers={**auth, "accept-language": "en"})
    assert english_history.json()["items"][0]["reason_text"] == "a low-carbon action was credited"


async def test_outcome_reasons_in_an_explanation_are_in_chinese(
    live: Live, http: httpx.AsyncClient
) -> None:
    # 50 km of metro is 2,335 g: more than the daily cap of 2,000 g, and the reason says so.
    long_trip = {"distance_m": 50000, "duration_s": 3600}
    auth, credit_id = await _citizen_with_a_trip(live, http, quantities=long_trip)
    explained = await http.get(f"/v1/app/credits/{credit_id}/explanation", headers=auth)
    assert explained.json()["trace"]["outcome"]["status"] == "capped"
    (reason,) = explained.json()["trace"]["outcome"]["reasons"]
    assert reason["code"] == "cap_partial"
    assert reason["message"].endswith("：上限 2000 克，剩余 2000 克")
    assert "cap_partial: " + reason["message"] in explained.json()["text"]
    english = await http.get(
        f"/v1/app/credits/{credit_id}/explanation", headers={**auth, "accept-language": "en"}
    )
    (reason,) = english.json()["trace"]["outcome"]["reasons"]
    assert reason["message"].endswith(": 2000 of 2000 g left")


async def test_a_claimed_vouchers_reasons_are_in_chinese(
    live: Live, http: httpx.AsyncClient
) -> None:
    user = await register(http)
    shop = await live.partner(f"shop-{uuid.uuid4().hex[:6]}", ("transit.metro",))
    short = metro(f"receipt-{uuid.uuid4().hex[:6]}", quantities={"distance_m": 100})
    voucher = make_voucher(key_id=shop.key_id, secret=shop.secret, event=short)
    claimed = await http.post(
        "/v1/app/vouchers", json={"token": voucher}, headers=bearer(user.access_token)
    )
    assert claimed.status_code == 200, claimed.text
    assert claimed.headers["content-language"] == "zh-CN"
    assert claimed.json()["status"] == "ineligible"
    assert claimed.json()["reasons"] == [
        {"code": "trip_too_short", "message": "出行距离不足 500 米的不计减排量"}
    ]
