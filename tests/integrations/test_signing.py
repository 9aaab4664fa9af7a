"""Partner request signing: the README's worked example, pinned, and the header's format."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest

from integrations import new_webhook_id, sign_request, signed_content
from integrations._models import encode_json
from tests.integrations.fakes import KEY_ID, SECRET, make_event

# The README's worked example. Change these only together with the README.
EXAMPLE_WEBHOOK_ID = "msg_mnqxeytpnywxa33jnz2hgljqge"
EXAMPLE_TIMESTAMP = 1767225600
EXAMPLE_BODY = (
    b'{"external_id":"metro-2026-000123","action_type":"transit.metro",'
    b'"occurred_at":"2026-01-01T08:30:00+08:00","subject_ref":"card-8888-0001",'
    b'"quantities":{"distance_m":12345,"duration_s":1500},"region":"CN-44-0300"}'
)
EXAMPLE_SIGNED_CONTENT = (
    b"pk_2f6c0d9e4b1a7c3e5f8d0a2b.msg_mnqxeytpnywxa33jnz2hgljqge.1767225600.POST."
    b"/v1/partner/events." + EXAMPLE_BODY
)
EXAMPLE_SIGNATURE = "v1,6uU9TunutgFVTdQO85e2950i0Jme9bN3dsRtnQe40sM="


def test_example_inputs_are_well_formed() -> None:
    assert re.fullmatch(r"pk_[0-9a-f]{24}", KEY_ID)
    assert re.fullmatch(r"cpsk_[A-Za-z0-9_-]{43}", SECRET)
    assert re.fullmatch(r"msg_[a-z2-7]{26}", EXAMPLE_WEBHOOK_ID)


def test_example_body_is_what_the_sdk_sends_for_the_example_event() -> None:
    event = make_event(123, region="CN-44-0300")
    assert encode_json(event.to_json()) == EXAMPLE_BODY


def test_worked_example_signed_content_and_signature() -> None:
    content = signed_content(
        key_id=KEY_ID,
        webhook_id=EXAMPLE_WEBHOOK_ID,
        timestamp=EXAMPLE_TIMESTAMP,
        method="post",
        path="/v1/partner/events",
        body=EXAMPLE_BODY,
    )
    assert content == EXAMPLE_SIGNED_CONTENT

    signature = sign_request(
        key_id=KEY_ID,
        secret=SECRET,
        webhook_id=EXAMPLE_WEBHOOK_ID,
        timestamp=EXAMPLE_TIMESTAMP,
        method="POST",
        path="/v1/partner/events",
        body=EXAMPLE_BODY,
    )
    # Independently: HMAC-SHA256 keyed by the secret's UTF-8 bytes, standard base64 with padding.
    digest = hmac.new(SECRET.encode("utf-8"), EXAMPLE_SIGNED_CONTENT, hashlib.sha256).digest()
    assert signature == "v1," + base64.b64encode(digest).decode("ascii")
    # And pinned, so the README example cannot drift silently.
    assert signature == EXAMPLE_SIGNATURE


def test_get_signs_the_query_and_an_empty_body() -> None:
    content = signed_content(
        key_id=KEY_ID,
        webhook_id=EXAMPLE_WEBHOOK_ID,
        timestamp=EXAMPLE_TIMESTAMP,
        method="GET",
        path="/v1/partner/outcomes?after=c_1&limit=2",
        body=b"",
    )
    assert content == (
        b"pk_2f6c0d9e4b1a7c3e5f8d0a2b.msg_mnqxeytpnywxa33jnz2hgljqge.1767225600.GET."
        b"/v1/partner/outcomes?after=c_1&limit=2."
    )


def test_signature_header_format() -> None:
    signature = sign_request(
        key_id=KEY_ID,
        secret=SECRET,
        webhook_id=new_webhook_id(),
        timestamp=EXAMPLE_TIMESTAMP,
        method="GET",
        path="/v1/partner/events/x",
        body=b"",
    )
    version, _, value = signature.partition(",")
    assert version == "v1"
    assert re.fullmatch(r"[A-Za-z0-9+/]{43}=", value)  # 32 bytes, standard alphabet, padded
    assert len(base64.b64decode(value, validate=True)) == 32


def test_every_input_changes_the_signature() -> None:
    base = {
        "key_id": KEY_ID,
        "secret": SECRET,
        "webhook_id": EXAMPLE_WEBHOOK_ID,
        "timestamp": EXAMPLE_TIMESTAMP,
        "method": "POST",
        "path": "/v1/partner/events",
        "body": EXAMPLE_BODY,
    }
    variants = {
        "key_id": "pk_000000000000000000000000",
        "secret": SECRET[:-1] + "A",
        "webhook_id": "msg_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "timestamp": EXAMPLE_TIMESTAMP + 1,
        "method": "PUT",
        "path": "/v1/partner/events?x=1",
        "body": EXAMPLE_BODY + b" ",
    }
    original = sign_request(**base)  # type: ignore[arg-type]
    for name, value in variants.items():
        assert sign_request(**{**base, name: value}) != original, name  # type: ignore[arg-type]


def test_webhook_ids_are_fresh_and_well_formed() -> None:
    ids = {new_webhook_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"msg_[a-z2-7]{26}", i) for i in ids)


@pytest.mark.parametrize(
    ("name", "value"),
    [("key_id", ""), ("key_id", "pk.1"), ("webhook_id", "msg.1"), ("path", "v1/partner")],
)
def test_ambiguous_parts_are_refused(name: str, value: str) -> None:
    kwargs = {
        "key_id": KEY_ID,
        "webhook_id": EXAMPLE_WEBHOOK_ID,
        "timestamp": EXAMPLE_TIMESTAMP,
        "method": "GET",
        "path": "/v1/partner/events",
        "body": b"",
        name: value,
    }
    with pytest.raises(ValueError, match=name):
        signed_content(**kwargs)  # type: ignore[arg-type]


def test_timestamp_must_be_integer_seconds() -> None:
    with pytest.raises(TypeError):
        signed_content(
            key_id=KEY_ID,
            webhook_id=EXAMPLE_WEBHOOK_ID,
            timestamp=1767225600.5,  # type: ignore[arg-type]
            method="GET",
            path="/",
            body=b"",
        )
