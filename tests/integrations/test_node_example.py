"""Partner tokens are standard JWTs: the README's test vectors verify, the Node example
(docs/examples/node/partner.mjs) reproduces them and the signing example, and the service
accepts the request, link token and voucher the Node example makes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import time
import warnings
from datetime import timedelta
from pathlib import Path

import httpx
import jwt
import orjson
import pytest

from integrations import TokenError, make_link_token, read_token, verify_token
from integrations._models import encode_json
from tests.accounts.helpers import bearer, register
from tests.crediting.conftest import TRIP_AT, Live, live, metro
from tests.integrations.fakes import KEY_ID, SECRET
from tests.integrations.test_signing import (
    EXAMPLE_BODY,
    EXAMPLE_SIGNATURE,
    EXAMPLE_TIMESTAMP,
    EXAMPLE_WEBHOOK_ID,
)

__all__ = ["live"]

ROOT = Path(__file__).resolve().parents[2]
NODE_EXAMPLE = ROOT / "docs" / "examples" / "node" / "partner.mjs"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed on this machine")


def _readme_vectors() -> dict[str, str]:
    """The `key: value` lines of the README's test-vector block."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Link tokens and vouchers: standard JWTs", 1)[1]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    vectors = {}
    for line in block.splitlines():
        name, value = line.split(":", 1)
        vectors[name.strip()] = value.strip()
    return vectors


def _node(*args: str, key_id: str, secret: str) -> str:
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(NODE_EXAMPLE), *args],
        env={**os.environ, "CARBON_POINTS_KEY_ID": key_id, "CARBON_POINTS_SECRET": secret},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_readme_vectors_verify() -> None:
    vectors = _readme_vectors()
    assert (vectors["key id"], vectors["secret"]) == (KEY_ID, SECRET)
    for kind, token_name, claims_name in [
        ("link", "link token", "link claims"),
        ("voucher", "voucher", "voucher claims"),
    ]:
        token = vectors[token_name]
        claims = json.loads(vectors[claims_name])
        assert read_token(token)[:2] == (KEY_ID, "jwt")
        assert jwt.get_unverified_header(token) == json.loads(vectors["header"])
        assert verify_token(token, SECRET, kind) == claims
        # Standard: PyJWT alone verifies it, and makes the very same bytes.
        assert jwt.decode(token, SECRET.encode(), algorithms=["HS256"]) == claims
        assert jwt.encode(claims, SECRET.encode(), algorithm="HS256", headers={"kid": KEY_ID}) == (
            token
        )
        with pytest.raises(TokenError, match="signature"):
            verify_token(token, SECRET + "x", kind)
        with pytest.raises(TokenError, match="expired"):
            verify_token(token, SECRET, kind, now=claims["exp"] + 1)


def _unsigned(header: dict[str, object], claims: dict[str, object]) -> str:
    def part(document: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(document)).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


def test_other_algorithms_and_missing_claims_are_refused() -> None:
    claims = {"typ": "link", "jti": "x", "sub": "c", "exp": int(time.time()) + 60}
    with pytest.raises(TokenError):
        verify_token(_unsigned({"alg": "none", "kid": KEY_ID}, claims), SECRET, "link")
    with warnings.catch_warnings():  # PyJWT warns that the key is short for HS512
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        hs512 = jwt.encode(claims, SECRET.encode(), algorithm="HS512", headers={"kid": KEY_ID})
    with pytest.raises(TokenError):
        verify_token(hs512, SECRET, "link")
    without_kid = jwt.encode(claims, SECRET.encode(), algorithm="HS256")
    with pytest.raises(TokenError, match="kid"):
        read_token(without_kid)
    for missing in ("exp", "jti"):
        partial = {k: v for k, v in claims.items() if k != missing}
        token = jwt.encode(partial, SECRET.encode(), algorithm="HS256", headers={"kid": KEY_ID})
        with pytest.raises(TokenError):
            verify_token(token, SECRET, "link")
    link = make_link_token(key_id=KEY_ID, secret=SECRET, subject_ref="c", token_id="t")
    with pytest.raises(TokenError, match="voucher"):
        verify_token(link, SECRET, "voucher")


def _legacy_token(secret: str, claims: dict[str, object]) -> str:
    """The two-part format made before issue 17, as the old SDK made it."""
    payload = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    digest = hmac.new(secret.encode(), b"cp-token." + payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def test_tokens_made_before_jwts_still_verify_as_before() -> None:
    claims = {"typ": "link", "kid": KEY_ID, "jti": "x", "sub": "c", "exp": int(time.time()) + 60}
    legacy = _legacy_token(SECRET, claims)
    assert read_token(legacy)[:2] == (KEY_ID, "legacy")
    assert verify_token(legacy, SECRET, "link") == claims
    with pytest.raises(TokenError, match="signature"):
        verify_token(_legacy_token("cpsk_other", claims), SECRET, "link")
    with pytest.raises(TokenError, match="expired"):
        verify_token(legacy, SECRET, "link", now=claims["exp"] + 1)  # type: ignore[operator]


@needs_node
def test_node_reproduces_the_readme_vectors_and_the_signing_example() -> None:
    vectors = _readme_vectors()
    for token_name, claims_name in [("link token", "link claims"), ("voucher", "voucher claims")]:
        made = _node("token", vectors[claims_name], key_id=KEY_ID, secret=SECRET)
        assert made == vectors[token_name]
    headers = json.loads(
        _node(
            "sign",
            "POST",
            "/v1/partner/events",
            EXAMPLE_BODY.decode(),
            EXAMPLE_WEBHOOK_ID,
            str(EXAMPLE_TIMESTAMP),
            key_id=KEY_ID,
            secret=SECRET,
        )
    )
    assert headers["webhook-signature"] == EXAMPLE_SIGNATURE
    assert re.fullmatch(
        r"msg_[a-z2-7]{26}",
        json.loads(_node("sign", "GET", "/x", key_id=KEY_ID, secret=SECRET))["webhook-id"],
    )


@needs_node
async def test_the_service_accepts_what_the_node_example_makes(live: Live) -> None:
    partner = await live.partner("node-metro", ("transit.metro",))
    keys = {"key_id": partner.key_id, "secret": partner.secret}
    body = encode_json(metro("node-trip-1", card="node-card-1").to_json())
    headers = json.loads(_node("sign", "POST", "/v1/partner/events", body.decode(), **keys))
    async with httpx.AsyncClient(transport=live.transport, base_url="http://test") as http:
        submitted = await http.post(
            "/v1/partner/events",
            content=body,
            headers={**headers, "content-type": "application/json"},
        )
        assert submitted.status_code == 200, submitted.text
        assert submitted.json()["status"] == "pending"  # the card is not linked yet
        # The same headers again: a replay, refused (the signature was checked, not skipped).
        replayed = await http.post(
            "/v1/partner/events",
            content=body,
            headers={**headers, "content-type": "application/json"},
        )
        assert replayed.status_code == 401

        user = await register(http)
        token = _node("link-token", "node-card-1", "node-lt-1", **keys)
        assert jwt.get_unverified_header(token)["kid"] == partner.key_id
        linked = await http.post(
            "/v1/app/identity-links", json={"token": token}, headers=bearer(user.access_token)
        )
        assert linked.status_code == 201, linked.text
        assert [o["status"] for o in linked.json()["released"]] == ["credited"]
        again = await http.post(
            "/v1/app/identity-links", json={"token": token}, headers=bearer(user.access_token)
        )
        assert again.status_code == 409  # a link token is used once

        event = metro("node-receipt-1", occurred_at=TRIP_AT + timedelta(hours=2)).to_json()
        voucher = _node("voucher", json.dumps(event), **keys)
        claimed = await http.post(
            "/v1/app/vouchers", json={"token": voucher}, headers=bearer(user.access_token)
        )
        assert claimed.status_code in (200, 201), claimed.text
        assert claimed.json()["status"] == "credited"

        forged = _node("voucher", json.dumps(event), key_id=partner.key_id, secret="cpsk_forged")
        refused = await http.post(
            "/v1/app/vouchers", json={"token": forged}, headers=bearer(user.access_token)
        )
        assert refused.status_code == 422
        assert refused.json()["type"].endswith("/partner-token-invalid")
        # The app's default language is Chinese; English on request.
        assert refused.json()["detail"] == "令牌签名与合作方的密钥不符"
        in_english = await http.post(
            "/v1/app/vouchers",
            json={"token": forged},
            headers={**bearer(user.access_token), "accept-language": "en"},
        )
        assert in_english.json()["detail"] == (
            "the token's signature does not match its partner's key"
        )
    assert await live.balance(user.participant_id) == 2 * 576
