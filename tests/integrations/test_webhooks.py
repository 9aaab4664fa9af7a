"""Verifying outbound webhooks (Standard Webhooks): good, tampered, stale, rotated."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from integrations import WebhookVerificationError, sign_webhook, verify_webhook
from tests.integrations.fakes import NOW, SECRET

BODY = b'{"type":"credit.created","data":{"credit_id":"cr_1","points":3}}'
WEBHOOK_ID = "msg_mnqxeytpnywxa33jnz2hgljqge"


def _sig(secret: str = SECRET, *, webhook_id: str = WEBHOOK_ID, ts: int = NOW) -> str:
    content = f"{webhook_id}.{ts}.".encode() + BODY
    digest = hmac.new(secret.encode(), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _headers(signature: str, *, ts: int = NOW) -> dict[str, str]:
    return {"webhook-id": WEBHOOK_ID, "webhook-timestamp": str(ts), "webhook-signature": signature}


def test_sign_webhook_matches_an_independent_hmac() -> None:
    assert sign_webhook(secret=SECRET, webhook_id=WEBHOOK_ID, timestamp=NOW, body=BODY) == _sig()


def test_good_signature_passes() -> None:
    verify_webhook(secret=SECRET, headers=_headers(_sig()), body=BODY, now=NOW + 10)


def test_header_names_are_case_insensitive() -> None:
    headers = {k.title(): v for k, v in _headers(_sig()).items()}
    verify_webhook(secret=SECRET, headers=headers, body=BODY, now=NOW)


def test_rotation_any_matching_signature_passes() -> None:
    header = f"v1,{'A' * 43}= v1a,whatever {_sig('cpsk_old')} {_sig()}"
    verify_webhook(secret=SECRET, headers=_headers(header), body=BODY, now=NOW)
    verify_webhook(secret="cpsk_old", headers=_headers(header), body=BODY, now=NOW)


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        pytest.param(_headers(_sig()), BODY + b" ", id="tampered body"),
        pytest.param(_headers(_sig("cpsk_other")), BODY, id="other secret"),
        pytest.param(_headers(_sig(webhook_id="msg_other")), BODY, id="other webhook-id"),
        pytest.param(_headers(_sig(ts=NOW - 1)), BODY, id="other timestamp"),
        pytest.param(_headers("v2," + _sig()[3:]), BODY, id="unknown version only"),
        pytest.param(_headers(_sig()[3:]), BODY, id="no version prefix"),
        pytest.param(_headers(""), BODY, id="empty signature"),
        pytest.param({"webhook-id": WEBHOOK_ID, "webhook-signature": _sig()}, BODY, id="no ts"),
        pytest.param(
            {"webhook-timestamp": str(NOW), "webhook-signature": _sig()}, BODY, id="no id"
        ),
        pytest.param(_headers(_sig()) | {"webhook-timestamp": "17e8"}, BODY, id="bad ts"),
    ],
)
def test_bad_webhooks_are_rejected(headers: dict[str, str], body: bytes) -> None:
    with pytest.raises(WebhookVerificationError) as caught:
        verify_webhook(secret=SECRET, headers=headers, body=body, now=NOW)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("skew", [301, -301, 10_000])
def test_stale_or_future_timestamps_are_rejected(skew: int) -> None:
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_webhook(secret=SECRET, headers=_headers(_sig()), body=BODY, now=NOW + skew)


def test_tolerance_is_configurable_and_inclusive() -> None:
    verify_webhook(secret=SECRET, headers=_headers(_sig()), body=BODY, now=NOW + 300)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(
            secret=SECRET, headers=_headers(_sig()), body=BODY, now=NOW + 60, tolerance=59
        )


def test_standard_whsec_secrets_are_base64_decoded() -> None:
    key = b"\x00\x01standard-webhooks-key\xff"
    secret = "whsec_" + base64.b64encode(key).decode()
    digest = hmac.new(key, f"{WEBHOOK_ID}.{NOW}.".encode() + BODY, hashlib.sha256).digest()
    signature = "v1," + base64.b64encode(digest).decode()
    assert sign_webhook(secret=secret, webhook_id=WEBHOOK_ID, timestamp=NOW, body=BODY) == signature
    verify_webhook(secret=secret, headers=_headers(signature), body=BODY, now=NOW)
