"""One realistic exchange per operation, for the OpenAPI document (`service.openapi`).

Keyed by operation id: `request` is the body sent, `parameters` example path and query values,
`response` the success status and body (None for 204). `tests/contract/` checks that every
operation has one and that each validates against its schema.
"""

from __future__ import annotations

from typing import Any

from service.reductions.examples import REDUCTION_EXAMPLES

_USER = "6f1c2a4e-8b7d-4c3e-9a1f-2d5e6b7c8a90"
_PARTICIPANT = "0b7e3f52-1c4d-4a8e-b6f9-3e2d1c0b9a87"
_ORGANISATION = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
_REDEMPTION = "9a7f3c2e-1b4d-4e6f-8a0b-2c3d4e5f6a7b"
_OFFER = "5c1e8d2a-3b4f-4c6d-9e0f-1a2b3c4d5e6f"
_AT = "2026-11-30T08:05:00+08:00"
_MERCHANT = "3e5d7c9b-2a4f-4b6d-8c1e-5f7a9b2c4d6e"
_REPORT_PERIOD = {
    "from": "2026-11-01T00:00:00+08:00",
    "to": "2026-12-01T00:00:00+08:00",
    "format": "json",
}
_REPORT_PERIOD_OUT = {
    "from": "2026-11-01T00:00:00+08:00",
    "to": "2026-12-01T00:00:00+08:00",
    "timezone": "Asia/Shanghai",
}

_EVENT: dict[str, Any] = {
    "external_id": "metro-2026-11-30-000123",
    "action_type": "transit.metro",
    "occurred_at": _AT,
    "subject_ref": "6222021234567890",
    "quantities": {"distance_m": 12345, "duration_s": 1500},
    "region": "CN-JX",
    "place_ids": ["station:NC-01", "station:NC-17"],
}
_OUTCOME: dict[str, Any] = {
    "external_id": "metro-2026-11-30-000123",
    "status": "credited",
    "grams": 576,
    "points": 576,
    "credit_id": "1",
    "methodology_id": "cn-transit-metro",
    "methodology_version": 1,
    "duplicate_of": None,
    "reasons": [],
    "problem": None,
    "received_at": "2026-11-30T00:05:01Z",
}
_TOKENS: dict[str, Any] = {
    "user_id": _USER,
    "participant_id": _PARTICIPANT,
    "token_type": "Bearer",
    "access_token": "eyJhbGciOiJIUzI1NiIsImtpZCI6Imsx...",
    "expires_in": 600,
    "refresh_token": "cprt_3q2-7wE9...",
    "refresh_expires_in": 2592000,
}
_MEMBER = {"user_id": _USER, "display_name": "小明", "role": "owner", "added_at": _AT}
_ORGANISATION_OUT: dict[str, Any] = {
    "organisation_id": _ORGANISATION,
    "participant_id": _ORGANISATION,
    "name": "绿色咖啡馆",
    "region": "CN-JX",
    "created_at": _AT,
    "your_role": "owner",
    "members": [_MEMBER],
}
_LEADERBOARD: dict[str, Any] = {
    "scope": "region",
    "key": "CN-JX",
    "period": "2026-W49",
    "starts": "2026-11-30T00:00:00+08:00",
    "entries": [
        {"rank": 1, "display_name": "小明", "grams": 5210, "is_you": True},
        {"rank": 2, "display_name": "Lin", "grams": 4980, "is_you": False},
    ],
    "next_cursor": "2",
}
_LINK = {
    "id": 1,
    "partner_code": "demo-metro",
    "partner_name": "Nanchang Metro",
    "linked_at": _AT,
}
_REDEMPTION_OUT: dict[str, Any] = {
    "id": _REDEMPTION,
    "status": "authorised",
    "offer_id": _OFFER,
    "points_authorised": 500,
    "points_captured": 0,
    "points_refunded": 0,
    "hold_expires_at": "2026-11-30T08:20:00+08:00",
    "created_at": _AT,
}
_IDEMPOTENCY = {"Idempotency-Key": "till-3-sale-20261130-0042"}

_ADMIN = "7f0c9a2e-4b1d-4e8f-9c3a-5d6e7f8a9b0c"
_APPROVER = "3e5d7c9b-1a2f-4b4c-8d6e-0f1a2b3c4d5e"
_ADMIN_OUT: dict[str, Any] = {
    "id": _ADMIN,
    "login": "alice",
    "display_name": "Alice Admin",
    "roles": ["program-admin"],
    "status": "active",
    "created_at": _AT,
}
_BOB_OUT: dict[str, Any] = {
    **_ADMIN_OUT,
    "id": _APPROVER,
    "login": "bob",
    "display_name": "Bob",
    "roles": ["methodology-author"],
}
_AUDIT_ENTRY: dict[str, Any] = {
    "id": 1,
    "occurred_at": _AT,
    "admin_id": _ADMIN,
    "actor": "alice",
    "role": "program-admin",
    "action": "admin.create",
    "target_type": "admin",
    "target_id": _APPROVER,
    "before_digest": None,
    "after_digest": "9f2c4e6a" + "0" * 56,
    "request_id": "4c1d2b7f9e0a4d3c8b6a5f4e3d2c1b0a",
    "detail": {},
    "prev_hash": "0" * 64,
    "hash": "51ab7e3d" + "0" * 56,
}
_DRAFT_OUT: dict[str, Any] = {
    "id": 1,
    "methodology_id": "transit.metro",
    "version": 2,
    "action_type": "transit.metro",
    "region": None,
    "content_hash": "c0ffee12" + "0" * 56,
    "author_id": _APPROVER,
    "created_at": _AT,
    "approved_by": None,
    "approved_at": None,
    "activate_at": None,
    "status": "draft",
}
_DRAFT_YAML = (
    "id: transit.metro\n"
    "version: 2\n"
    "title: Metro trip (national default)\n"
    "action_type: transit.metro\n"
    "# ... the whole methodology, as in points_rules/library/transit.metro.yaml\n"
)
_VERSION_OUT: dict[str, Any] = {
    "methodology_id": "transit.metro",
    "version": 1,
    "action_type": "transit.metro",
    "region": None,
    "effective_from": "2025-01-01T00:00:00+08:00",
    "effective_to": None,
    "content_hash": "5eed1234" + "0" * 56,
    "filed_at": _AT,
}

EXAMPLES: dict[str, dict[str, Any]] = {
    # Operations
    "check_liveness": {"response": (200, {"status": "ok"})},
    "check_readiness": {
        "response": (
            200,
            {
                "status": "ready",
                "checks": {"postgresql": "ok", "migrations": "current", "redis": "ok"},
            },
        )
    },
    # Partners
    "submit_event": {"request": _EVENT, "response": (200, _OUTCOME)},
    "submit_event_batch": {
        "request": {"events": [_EVENT]},
        "response": (200, {"results": [_OUTCOME]}),
    },
    "get_event": {
        "parameters": {"external_id": "metro-2026-11-30-000123"},
        "response": (200, _OUTCOME),
    },
    "list_outcomes": {
        "parameters": {"cursor": "1042", "limit": 500},
        "response": (200, {"outcomes": [_OUTCOME], "next_cursor": "1043"}),
    },
    "retract_event": {
        "parameters": {"external_id": "metro-2026-11-30-000123"},
        "request": {"reason": "partner_correction"},
        "response": (200, {**_OUTCOME, "status": "retracted"}),
    },
    # App: accounts
    "register": {
        "request": {
            "login": "13812345678",
            "password": "correct horse battery staple",
            "display_name": "小明",
            "region": "CN-JX",
        },
        "response": (201, _TOKENS),
    },
    "login": {
        "request": {"login": "13812345678", "password": "correct horse battery staple"},
        "response": (200, _TOKENS),
    },
    "refresh_tokens": {
        "request": {"refresh_token": "cprt_3q2-7wE9..."},
        "response": (200, _TOKENS),
    },
    "logout": {"request": {"refresh_token": "cprt_3q2-7wE9..."}, "response": (204, None)},
    "logout_everywhere": {"response": (204, None)},
    "get_me": {
        "response": (
            200,
            {
                "user_id": _USER,
                "participant_id": _PARTICIPANT,
                "display_name": "小明",
                "region": "CN-JX",
                "created_at": _AT,
                "organisations": [
                    {"organisation_id": _ORGANISATION, "name": "绿色咖啡馆", "role": "owner"}
                ],
            },
        )
    },
    "create_organisation": {
        "request": {"name": "绿色咖啡馆", "region": "CN-JX"},
        "response": (201, _ORGANISATION_OUT),
    },
    "add_organisation_member": {
        "parameters": {"organisation_id": _ORGANISATION},
        "request": {"login": "colleague@example.com", "role": "member"},
        "response": (201, _ORGANISATION_OUT),
    },
    "get_organisation": {
        "parameters": {"organisation_id": _ORGANISATION},
        "response": (200, _ORGANISATION_OUT),
    },
    # App: points
    "get_balance": {
        "response": (
            200,
            {
                "available": 576,
                "on_hold": 0,
                "debt": 0,
                "pending_events": 0,
                "grams_co2e": 576,
                "expiring": [{"expires_at": "2028-11-30T08:05:00+08:00", "points": 576}],
            },
        )
    },
    "list_reductions": {
        "parameters": {"limit": 50},
        "response": (
            200,
            {
                "items": [
                    {
                        "month": "2026-11",
                        "action_type": "transit.metro",
                        "grams": 576,
                        "points": 576,
                        "credits": 1,
                    }
                ],
                "next_cursor": None,
            },
        ),
    },
    "list_history": {
        "parameters": {"limit": 20},
        "response": (
            200,
            {
                "items": [
                    {
                        "sequence": 2,
                        "kind": "reversal",
                        "points": -576,
                        "at": _AT,
                        "credit_id": None,
                        "methodology_id": None,
                        "methodology_version": None,
                        "reason": "ticket_refunded",
                        "reverses_credit_id": "1",
                    },
                    {
                        "sequence": 1,
                        "kind": "credit",
                        "points": 576,
                        "at": _AT,
                        "credit_id": "1",
                        "methodology_id": "cn-transit-metro",
                        "methodology_version": 1,
                        "reason": "action_credited",
                        "reverses_credit_id": None,
                    },
                ],
                "next_cursor": None,
            },
        ),
    },
    "explain_credit": {
        "parameters": {"credit_id": 1},
        "response": (
            200,
            {
                "credit_id": "1",
                "status": "credited",
                "grams": 576,
                "points": 576,
                "trace": {"methodology_id": "cn-transit-metro", "version": 1},
                "text": "reduction = 12345 m x (105.4 - 58.7) g/km = 576.5115 g; points rule:"
                " 1 points per g, rounded down",
            },
        ),
    },
    "get_region_leaderboard": {
        "parameters": {"region": "CN-JX", "period": "week", "limit": 2},
        "response": (200, _LEADERBOARD),
    },
    "get_organisation_leaderboard": {
        "parameters": {"organisation_id": _ORGANISATION, "period": "month", "limit": 2},
        "response": (
            200,
            {**_LEADERBOARD, "scope": "organisation", "key": _ORGANISATION, "period": "2026-11"},
        ),
    },
    "list_identity_links": {
        "parameters": {"limit": 50},
        "response": (200, {"items": [_LINK], "next_cursor": None}),
    },
    "link_identity": {
        "request": {
            "token": (
                "eyJhbGciOiJIUzI1NiIsImtpZCI6InBrXzJmNmMwZDllNGIxYTdjM2U1ZjhkMGEyYiIsInR5cCI6"
                "IkpXVCJ9.eyJ0eXAiOiJsaW5rIiwianRpIjoibHQtMjAyNi0wMDAxIiwic3ViIjoiY2FyZC04ODg"
                "4LTAwMDEiLCJleHAiOjQxMDI0NDQ4MDB9.jh0UA0w7ytkv7nelkinWv0SrcgnkRLmxQcA2HUE8XG"
                "k"
            )
        },
        "response": (201, {"link": _LINK, "released": [_OUTCOME]}),
    },
    "unlink_identity": {"parameters": {"link_id": 1}, "response": (204, None)},
    "claim_voucher_code": {
        "request": {
            "token": (
                "eyJhbGciOiJIUzI1NiIsImtpZCI6InBrXzJmNmMwZDllNGIxYTdjM2U1ZjhkMGEyYiIsInR5cCI6"
                "IkpXVCJ9.eyJ0eXAiOiJ2b3VjaGVyIiwianRpIjoicmVjZWlwdC0yMDI2LTAwMDEiLCJldmVudCI"
                "6eyJleHRlcm5hbF9pZCI6InJlY2VpcHQtMjAyNi0wMDAxIiwiYWN0aW9uX3R5cGUiOiJ0cmFuc2l"
                "0Lm1ldHJvIiwib2NjdXJyZWRfYXQiOiIyMDI2LTAxLTAxVDA4OjMwOjAwKzA4OjAwIiwicXVhbnR"
                "pdGllcyI6eyJkaXN0YW5jZV9tIjoxMjM0NSwiZHVyYXRpb25fcyI6MTUwMH19LCJleHAiOjQxMDI"
                "0NDQ4MDB9.oBCbMvboKu-jj9u3fow9ZFVv_rzd4OUu9q3bCL2TokU"
            )
        },
        "response": (200, {**_OUTCOME, "external_id": "receipt-2026-11-30-0042"}),
    },
    "create_redemption_token": {
        "response": (
            201,
            {"token": "rt_Q2xWm3Jd8sK1pV9zYtR4uH6b", "expires_at": "2026-11-30T08:07:00+08:00"},
        )
    },
    # App: privacy
    "export_my_data": {
        "response": (
            200,
            {
                "user": {"user_id": _USER, "display_name": "小明", "region": "CN-JX"},
                "identity_links": [_LINK],
                "credits": [],
                "ledger": [],
            },
        )
    },
    "erase_me": {"response": (204, None)},
    # App: offers
    "list_offers": {
        "parameters": {"region": "CN-JX", "merchant": "green-cafe", "limit": 50},
        "response": (
            200,
            {
                "items": [
                    {
                        "id": _OFFER,
                        "merchant_code": "green-cafe",
                        "merchant_name": "Green Café",
                        "title": "Oat latte",
                        "points_price": 500,
                        "face_value_fen": 1500,
                        "stock_left": 99,
                        "per_user_limit": 1,
                        "region": "CN-JX",
                        "valid_from": "2026-11-01T00:00:00+08:00",
                        "valid_to": "2027-01-01T00:00:00+08:00",
                    }
                ],
                "next_cursor": None,
            },
        ),
    },
    # Merchants
    "authorise_redemption": {
        "parameters": _IDEMPOTENCY,
        "request": {"redemption_token": "rt_Q2xWm3Jd8sK1pV9zYtR4uH6b", "offer_id": _OFFER},
        "response": (201, _REDEMPTION_OUT),
    },
    "capture_redemption": {
        "parameters": {"redemption_id": _REDEMPTION, "Idempotency-Key": "till-3-0042-capture"},
        "request": {"points": 500},
        "response": (200, {**_REDEMPTION_OUT, "status": "captured", "points_captured": 500}),
    },
    "void_redemption": {
        "parameters": {"redemption_id": _REDEMPTION, "Idempotency-Key": "till-3-0042-void"},
        "response": (200, {**_REDEMPTION_OUT, "status": "voided"}),
    },
    "refund_redemption": {
        "parameters": {"redemption_id": _REDEMPTION, "Idempotency-Key": "till-3-0042-refund-1"},
        "request": {"points": 200},
        "response": (
            200,
            {
                **_REDEMPTION_OUT,
                "status": "partially_refunded",
                "points_captured": 500,
                "points_refunded": 200,
            },
        ),
    },
    "get_redemption": {
        "parameters": {"redemption_id": _REDEMPTION},
        "response": (200, _REDEMPTION_OUT),
    },
    "get_settlement": {
        "parameters": {
            "from": "2026-11-01T00:00:00+08:00",
            "to": "2026-12-01T00:00:00+08:00",
            "format": "json",
        },
        "response": (
            200,
            {
                "merchant_code": "green-cafe",
                "period_start": "2026-11-01T00:00:00+08:00",
                "period_end": "2026-12-01T00:00:00+08:00",
                "redemptions": 1,
                "points_redeemed": 500,
                "refunds": 1,
                "points_refunded": 200,
                "net_points": 300,
                "fen_per_point": 1,
                "value_fen": 300,
                "lines": [
                    {"at": _AT, "kind": "redemption", "transaction_id": 41, "points": 500},
                    {"at": _AT, "kind": "refund", "transaction_id": 42, "points": -200},
                ],
            },
        ),
    },
    # Administrators
    "admin_login": {
        "request": {"login": "alice", "password": "correct horse battery staple", "totp": "123456"},
        "response": (
            200,
            {
                "admin_id": _ADMIN,
                "token_type": "Bearer",
                "access_token": "eyJhbGciOiJIUzI1NiIsImtpZCI6Imsx...",
                "expires_in": 900,
                "roles": ["program-admin"],
            },
        ),
    },
    "get_current_admin": {"response": (200, _ADMIN_OUT)},
    "list_administrators": {
        "parameters": {"cursor": "50", "limit": 50},
        "response": (200, {"items": [_ADMIN_OUT, _BOB_OUT], "next_cursor": None}),
    },
    "create_administrator": {
        "request": {
            "login": "bob",
            "display_name": "Bob",
            "password": "a long passphrase of Bob's",
            "roles": ["methodology-author"],
        },
        "response": (
            201,
            {
                **_BOB_OUT,
                "totp_provisioning_uri": "otpauth://totp/carbon-points:bob?secret=JBSWY3DPEHPK3PXP"
                "&issuer=carbon-points",
            },
        ),
    },
    "update_administrator": {
        "parameters": {"admin_id": _APPROVER},
        "request": {"roles": ["methodology-author", "auditor"]},
        "response": (200, {**_BOB_OUT, "roles": ["auditor", "methodology-author"]}),
    },
    "list_audit_entries": {
        "parameters": {"cursor": "100", "limit": 100, "action": "admin.create"},
        "response": (200, {"items": [_AUDIT_ENTRY], "next_cursor": "101"}),
    },
    "export_audit_entries": {
        "parameters": {"since": "2026-11-01T00:00:00+08:00", "until": "2026-12-01T00:00:00+08:00"},
        "response": (200, '{"id":1,"action":"admin.create","actor":"alice",...}\n'),
    },
    "list_methodology_versions": {
        "parameters": {
            "cursor": "WyJ0cmFuc2l0LmJ1cyIsIiIsIjIwMjUtMDEtMDFUMDA6MDA6MDArMDg6MDAiLCJ0cmFuc2l0"
            "LmJ1cyIsMV0",
            "limit": 50,
        },
        "response": (200, {"items": [_VERSION_OUT], "next_cursor": None}),
    },
    "retire_methodology_version": {
        "parameters": {"methodology_id": "transit.metro", "version": 1},
        "request": {"at": "2028-01-01T00:00:00+08:00"},
        "response": (200, {**_VERSION_OUT, "effective_to": "2028-01-01T00:00:00+08:00"}),
    },
    "list_methodology_drafts": {
        "parameters": {"cursor": "50", "limit": 50},
        "response": (200, {"items": [_DRAFT_OUT], "next_cursor": None}),
    },
    "create_methodology_draft": {
        "request": {"source_yaml": _DRAFT_YAML},
        "response": (201, _DRAFT_OUT),
    },
    "get_methodology_draft": {
        "parameters": {"draft_id": 1},
        "response": (200, {**_DRAFT_OUT, "source_yaml": _DRAFT_YAML}),
    },
    "diff_methodology_draft": {
        "parameters": {"draft_id": 1},
        "response": (
            200,
            {
                "draft_id": 1,
                "against": "transit.metro@v1",
                "changes": [
                    {
                        "section": "",
                        "name": "",
                        "field": "claim_window_days",
                        "before": 7,
                        "after": 10,
                        "text": "~ claim_window_days: 7 -> 10",
                    },
                    {
                        "section": "parameters",
                        "name": "saving_per_km",
                        "field": "value",
                        "before": "46.7",
                        "after": "50",
                        "text": "~ parameters.saving_per_km.value: 46.7 -> 50",
                    },
                ],
            },
        ),
    },
    "approve_methodology_draft": {
        "parameters": {"draft_id": 1},
        "response": (
            200,
            {**_DRAFT_OUT, "status": "approved", "approved_by": _ADMIN, "approved_at": _AT},
        ),
    },
    "schedule_methodology_draft": {
        "parameters": {"draft_id": 1},
        "request": {"activate_at": "2027-01-01T00:00:00+08:00"},
        "response": (
            200,
            {
                "draft": {
                    **_DRAFT_OUT,
                    "status": "scheduled",
                    "approved_by": _ADMIN,
                    "approved_at": _AT,
                    "activate_at": "2027-01-01T00:00:00+08:00",
                },
                "closes": "transit.metro@v1",
            },
        ),
    },
    "unschedule_methodology_draft": {
        "parameters": {"draft_id": 1},
        "response": (
            200,
            {
                "draft": {
                    **_DRAFT_OUT,
                    "status": "approved",
                    "approved_by": _ADMIN,
                    "approved_at": _AT,
                },
                "reopens": "transit.metro@v1",
            },
        ),
    },
    "backtest_methodology_draft": {
        "parameters": {"draft_id": 1},
        "request": {
            "start": "2026-11-01T00:00:00+08:00",
            "end": "2026-12-01T00:00:00+08:00",
            "top": 10,
        },
        "response": (
            200,
            {
                "draft_id": 1,
                "events": 2,
                "mismatches": 0,
                "groups": [
                    {
                        "action_type": "transit.metro",
                        "region": "CN-JX",
                        "status": "credited",
                        "events": 2,
                        "grams_in_force": 1152,
                        "points_in_force": 1152,
                        "grams_draft": 1234,
                        "points_draft": 1234,
                        "grams_difference": 82,
                        "points_difference": 82,
                        "capped_in_force": 0,
                        "capped_draft": 0,
                    }
                ],
                "binding_caps": {},
                "most_affected": [{"participant_id": _PARTICIPANT, "points_difference": 82}],
            },
        ),
    },
    "get_reductions_report": {
        "parameters": _REPORT_PERIOD,
        "response": (
            200,
            {
                "period": _REPORT_PERIOD_OUT,
                "totals": {
                    "credits": 2,
                    "grams": 1152,
                    "points": 1152,
                    "retracted": 0,
                    "retracted_grams": 0,
                },
                "rows": [
                    {
                        "month": "2026-11",
                        "region": "CN-JX",
                        "action_type": "transit.metro",
                        "partner_code": "demo-metro",
                        "partner_name": "南昌地铁",
                        "credits": 2,
                        "grams": 1152,
                        "points": 1152,
                        "retracted": 0,
                        "retracted_grams": 0,
                    }
                ],
            },
        ),
    },
    "get_points_report": {
        "parameters": _REPORT_PERIOD,
        "response": (
            200,
            {
                "period": _REPORT_PERIOD_OUT,
                "as_of": "2026-12-03T10:00:00+08:00",
                "flows": {
                    "issued": 12000,
                    "redeemed": 3000,
                    "refunded": 200,
                    "expired": 500,
                    "reversed": 300,
                    "debt_repaid": 0,
                    "expired_reclaimed": 0,
                    "participants_net": 8400,
                },
                "liability": {
                    "outstanding": 8400,
                    "held": 100,
                    "available": 8300,
                    "debt": 0,
                    "holders": 12,
                    "overdue": 0,
                    "expiring_30_days": 400,
                    "expiring_90_days": 1200,
                    "expiring_365_days": 5000,
                },
            },
        ),
    },
    "get_settlement_report": {
        "parameters": _REPORT_PERIOD,
        "response": (
            200,
            {
                "period": _REPORT_PERIOD_OUT,
                "fen_per_point": 1,
                "totals": {
                    "redemptions": 30,
                    "points_redeemed": 3000,
                    "refunds": 2,
                    "points_refunded": 200,
                    "net_points": 2800,
                    "value_fen": 2800,
                },
                "merchants": [
                    {
                        "merchant_id": _MERCHANT,
                        "merchant_code": "green-cafe",
                        "merchant_name": "绿色咖啡馆",
                        "redemptions": 30,
                        "points_redeemed": 3000,
                        "refunds": 2,
                        "points_refunded": 200,
                        "net_points": 2800,
                        "value_fen": 2800,
                    }
                ],
            },
        ),
    },
    "get_partner_health_report": {
        "parameters": {
            "from": "2026-12-01T00:00:00+08:00",
            "to": "2026-12-02T00:00:00+08:00",
            "format": "json",
        },
        "response": (
            200,
            {
                "period": {
                    "from": "2026-12-01T00:00:00+08:00",
                    "to": "2026-12-02T00:00:00+08:00",
                    "timezone": "Asia/Shanghai",
                },
                "partners": [
                    {
                        "partner_code": "demo-metro",
                        "partner_name": "南昌地铁",
                        "events": 130,
                        "outcomes": {"credited": 120, "duplicate": 4, "ineligible": 6},
                        "rejected": 10,
                        "active_hours": 2,
                        "peak_hour_events": 100,
                        "hours": [
                            {
                                "hour": "2026-12-01T08:00:00+08:00",
                                "events": 100,
                                "rejected": 8,
                                "outcomes": {"credited": 92, "duplicate": 3, "ineligible": 5},
                            },
                            {
                                "hour": "2026-12-01T18:00:00+08:00",
                                "events": 30,
                                "rejected": 2,
                                "outcomes": {"credited": 28, "duplicate": 1, "ineligible": 1},
                            },
                        ],
                    }
                ],
            },
        ),
    },
}

_PARTNER_OUT: dict[str, Any] = {
    "id": "3b9d2c1e-7a4f-4e6b-8c5d-0f1e2d3c4b5a",
    "code": "nanchang-metro",
    "name": "Nanchang Metro",
    "kind": "transit",
    "action_types": ["transit.bus", "transit.metro"],
    "region": "CN-JX",
    "status": "active",
    "rate_limit_per_second": 2000,
    "created_at": _AT,
}
_PARTNER_KEY = {"key_id": "pk_3f9a1c2e4b5d6e7f8a9b0c1d", "secret": "cpsk_q8Zr...shown-once"}
_PARTNER_KEY_OUT = {
    "key_id": "pk_3f9a1c2e4b5d6e7f8a9b0c1d",
    "created_at": _AT,
    "expires_at": None,
    "revoked_at": None,
}
_MERCHANT_OUT: dict[str, Any] = {
    "id": "8e7d6c5b-4a3f-4e2d-9c1b-0a9f8e7d6c5b",
    "code": "green-grocer",
    "name": "Green Grocer",
    "region": "CN-JX",
    "status": "active",
    "created_at": _AT,
}
_MERCHANT_KEY = {
    "key_id": "mk_1a2b3c4d5e6f7a8b9c0d",
    "token": "cpmk_mk_1a2b3c4d5e6f7a8b9c0d_shown-once",
    "scopes": ["redeem", "refund", "settlement"],
}
_MERCHANT_KEY_OUT = {
    "key_id": "mk_1a2b3c4d5e6f7a8b9c0d",
    "scopes": ["redeem", "refund", "settlement"],
    "terminal_id": None,
    "created_at": _AT,
    "revoked_at": None,
}
_ORGANISATION_EXAMPLES: dict[str, Any] = {
    "list_partners": {
        "parameters": {"cursor": "beijing-bikes", "limit": 50},
        "response": (200, {"items": [_PARTNER_OUT], "next_cursor": None}),
    },
    "create_partner": {
        "request": {
            "code": "nanchang-metro",
            "name": "Nanchang Metro",
            "kind": "transit",
            "action_types": ["transit.metro", "transit.bus"],
            "region": "CN-JX",
            "rate_limit_per_second": 2000,
        },
        "response": (201, {**_PARTNER_OUT, "key": _PARTNER_KEY}),
    },
    "issue_partner_key": {
        "parameters": {"code": "nanchang-metro"},
        "response": (201, _PARTNER_KEY),
    },
    "rotate_partner_key": {
        "parameters": {"code": "nanchang-metro", "key_id": "pk_3f9a1c2e4b5d6e7f8a9b0c1d"},
        "request": {"overlap_hours": 24},
        "response": (
            201,
            {
                "key": {"key_id": "pk_9e8d7c6b5a4f3e2d1c0b9a8f", "secret": "cpsk_...shown-once"},
                "previous": {**_PARTNER_KEY_OUT, "expires_at": "2026-12-01T08:05:00+08:00"},
            },
        ),
    },
    "revoke_partner_key": {
        "parameters": {"code": "nanchang-metro", "key_id": "pk_3f9a1c2e4b5d6e7f8a9b0c1d"},
        "response": (200, {**_PARTNER_KEY_OUT, "revoked_at": _AT}),
    },
    "suspend_partner": {
        "parameters": {"code": "nanchang-metro"},
        "response": (200, {**_PARTNER_OUT, "status": "suspended"}),
    },
    "reinstate_partner": {
        "parameters": {"code": "nanchang-metro"},
        "response": (200, _PARTNER_OUT),
    },
    "list_merchants": {
        "parameters": {"cursor": "eco-cafe", "limit": 50},
        "response": (200, {"items": [_MERCHANT_OUT], "next_cursor": None}),
    },
    "create_merchant": {
        "request": {"code": "green-grocer", "name": "Green Grocer", "region": "CN-JX"},
        "response": (201, {**_MERCHANT_OUT, "key": _MERCHANT_KEY}),
    },
    "issue_merchant_key": {
        "parameters": {"code": "green-grocer"},
        "request": {"scopes": ["settlement"]},
        "response": (
            201,
            {
                "key_id": "mk_0f1e2d3c4b5a69788796",
                "token": "cpmk_mk_0f1e2d3c4b5a69788796_shown-once",
                "scopes": ["settlement"],
            },
        ),
    },
    "rotate_merchant_key": {
        "parameters": {"code": "green-grocer", "key_id": "mk_1a2b3c4d5e6f7a8b9c0d"},
        "response": (
            201,
            {
                "key": {
                    **_MERCHANT_KEY,
                    "key_id": "mk_a9b8c7d6e5f4a3b2c1d0",
                    "token": "cpmk_mk_a9b8c7d6e5f4a3b2c1d0_shown-once",
                },
                "previous": {**_MERCHANT_KEY_OUT, "revoked_at": _AT},
            },
        ),
    },
    "revoke_merchant_key": {
        "parameters": {"code": "green-grocer", "key_id": "mk_1a2b3c4d5e6f7a8b9c0d"},
        "response": (200, {**_MERCHANT_KEY_OUT, "revoked_at": _AT}),
    },
    "suspend_merchant": {
        "parameters": {"code": "green-grocer"},
        "response": (200, {**_MERCHANT_OUT, "status": "suspended"}),
    },
    "reinstate_merchant": {
        "parameters": {"code": "green-grocer"},
        "response": (200, _MERCHANT_OUT),
    },
}
EXAMPLES.update(_ORGANISATION_EXAMPLES)
EXAMPLES.update(REDUCTION_EXAMPLES)

# --- the review queue (issue 16) -----------------------------------------------------------

_REVIEWER = "5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e"
_FLAG_OUT = {
    "credit_id": "4711",
    "participant_id": _PARTICIPANT,
    "partner_id": "2f4e6a8c-0b1d-4e3f-9a5c-7d9e1f3a5b7c",
    "action_type": "transit.metro",
    "occurred_at": _AT,
    "flagged_at": "2026-11-30T08:31:02+08:00",
    "rules": ["velocity"],
    "details": [{"rule": "velocity", "trips": 9, "window_minutes": 60, "max_trips": 8}],
    "points": 140,
    "grams": 140,
    "status": "open",
    "assignee": None,
    "assigned_at": None,
    "decided_by": None,
    "decided_at": None,
    "reason": None,
    "reason_text": None,
    "note": None,
}
_RULE_OUT = {
    "rule": "velocity",
    "enabled": True,
    "params": {
        "window_minutes": 60,
        "max_trips": 6,
        "action_types": ["transit.bus", "transit.metro", "mobility.bikeshare"],
    },
    "updated_at": "2026-11-30T09:00:00+08:00",
    "updated_by": _ADMIN,
}
_DECIDED = {"decided_by": _REVIEWER, "decided_at": "2026-11-30T10:12:00+08:00"}
EXAMPLES.update(
    {
        "list_flags": {
            "parameters": {
                "status": "open",
                "rule": "velocity",
                "assignee": "none",
                "cursor": "4712",
                "limit": 50,
            },
            "response": (200, {"items": [_FLAG_OUT], "next_cursor": "4711"}),
        },
        "get_flag": {"parameters": {"credit_id": 4711}, "response": (200, _FLAG_OUT)},
        "assign_flag": {
            "parameters": {"credit_id": 4711},
            "request": {"assignee": _REVIEWER},
            "response": (
                200,
                {**_FLAG_OUT, "assignee": _REVIEWER, "assigned_at": "2026-11-30T10:00:00+08:00"},
            ),
        },
        "approve_flag": {
            "parameters": {"credit_id": 4711},
            "request": {"note": "a tour guide's day: checked with the partner"},
            "response": (
                200,
                {**_FLAG_OUT, **_DECIDED, "status": "approved", "note": "a tour guide's day"},
            ),
        },
        "reject_flag": {
            "parameters": {"credit_id": 4711},
            "request": {"reason": "implausible_trips", "note": "nine rides in 50 minutes"},
            "response": (
                200,
                {
                    **_FLAG_OUT,
                    **_DECIDED,
                    "status": "rejected",
                    "reason": "implausible_trips",
                    "reason_text": "taken back after review: the trips reported are more than"
                    " one person can make",
                    "note": "nine rides in 50 minutes",
                },
            ),
        },
        "list_rules": {"response": (200, {"items": [_RULE_OUT]})},
        "set_rule": {
            "parameters": {"rule": "velocity"},
            "request": {"enabled": True, "params": {"max_trips": 6}},
            "response": (200, _RULE_OUT),
        },
    }
)
