"""Request and response examples of the reductions API, for the OpenAPI document
(`service.openapi_examples` merges them; `tests/contract` checks each against its schema)."""

from __future__ import annotations

from typing import Any

_AT = "2026-12-03T09:00:00+08:00"
_POOL = {
    "code": "jx-metro-2026",
    "methodology_id": "transit.metro",
    "version_min": 1,
    "version_max": 3,
    "region": "CN-JX",
    "vintage": "2026",
    "vintage_start": "2026-01-01T00:00:00+08:00",
    "vintage_end": "2027-01-01T00:00:00+08:00",
    "min_grams": 1000000,
    "settle_hours": 168,
}
_SERIALS = "CP/CN-JX/transit.metro/2026/0000000001-0000003400"
_ISSUANCE = {
    "document": "issuance",
    "programme": "CP",
    "batch_id": 1,
    "pool": "jx-metro-2026",
    "sequence_in_pool": 1,
    "methodology_id": "transit.metro",
    "methodology_versions": {"min": 1, "max": 3},
    "region": "CN-JX",
    "vintage": "2026",
    "vintage_start": "2026-01-01T00:00:00+08:00",
    "vintage_end": "2027-01-01T00:00:00+08:00",
    "issued_at": _AT,
    "unit": "kgCO2e",
    "serials": _SERIALS,
    "serial_first": "0000000001",
    "serial_last": "0000003400",
    "kilograms": 3400,
    "issued_grams": 3400000,
    "pooled_grams": 3400512,
    "carried_in_grams": 0,
    "shortfall_made_good_grams": 0,
    "carried_out_grams": 512,
    "provenance": {
        "credits": 2811,
        "credits_sha256": "9f2c6d0e4b1a8c7d3e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5",
        "credits_sha256_rule": "SHA-256 of one line `event_id,grams\\n` per credit, in"
        " ascending event id",
        "methodology_versions": [{"version": 1, "credits": 2811, "grams": 3400512}],
        "grams_by_action_type": [
            {"action_type": "transit.metro", "credits": 2811, "grams": 3400512}
        ],
    },
    "ledger_transaction_id": 91827,
}
_BLOCK = {
    "id": 3,
    "batch_id": 1,
    "serials": "CP/CN-JX/transit.metro/2026/0000000001-0000001000",
    "serial_first": 1,
    "serial_last": 1000,
    "kilograms": 1000,
    "status": "active",
    "holder": "acme",
}
_CERTIFICATE = {
    "document": "retirement_certificate",
    "programme": "CP",
    "retirement_id": 1,
    "block_id": 5,
    "batch_id": 1,
    "serials": "CP/CN-JX/transit.metro/2026/0000000001-0000000500",
    "serial_first": "0000000001",
    "serial_last": "0000000500",
    "kilograms": 500,
    "methodology_id": "transit.metro",
    "region": "CN-JX",
    "vintage": "2026",
    "unit": "kgCO2e",
    "tonnes": "0.500",
    "retired_by": "Acme 绿色科技有限公司",
    "beneficiary": "Acme 2026 staff commuting",
    "reason": "voluntary offset of 2026 business travel",
    "retired_at": _AT,
    "issuance": {
        "batch_id": 1,
        "issued_at": _AT,
        "credits_sha256": "9f2c6d0e4b1a8c7d3e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5",
    },
}

REDUCTION_EXAMPLES: dict[str, dict[str, Any]] = {
    "create_reduction_pool": {
        "request": {
            "code": "jx-metro-2026",
            "methodology_id": "transit.metro",
            "version_min": 1,
            "version_max": 3,
            "region": "CN-JX",
            "vintage": "2026",
            "min_kilograms": 1000,
            "settle_hours": 168,
        },
        "response": (201, _POOL),
    },
    "get_reduction_pool": {
        "parameters": {"code": "jx-metro-2026"},
        "response": (
            200,
            {
                "pool": _POOL,
                "balance_grams": 3399914,
                "issued_grams": 3400000,
                "position_grams": -86,
                "reversed_after_pooling_credits": 1,
                "reversed_after_pooling_grams": 598,
            },
        ),
    },
    "run_reduction_pool": {
        "parameters": {"code": "jx-metro-2026"},
        "response": (201, _ISSUANCE),
    },
    "get_reduction_batch": {
        "parameters": {"batch_id": 1, "format": "json"},
        "response": (200, _ISSUANCE),
    },
    "create_reduction_holder": {
        "request": {"code": "acme", "name": "Acme 绿色科技有限公司"},
        "response": (201, {"code": "acme", "name": "Acme 绿色科技有限公司"}),
    },
    "get_reduction_block": {
        "parameters": {"block_id": 3},
        "response": (200, _BLOCK),
    },
    "transfer_reduction_block": {
        "parameters": {"block_id": 1},
        "request": {"to_holder": "acme", "from_holder": None, "kilograms": 1000},
        "response": (
            200,
            [
                _BLOCK,
                {
                    **_BLOCK,
                    "id": 4,
                    "serials": "CP/CN-JX/transit.metro/2026/0000001001-0000003400",
                    "serial_first": 1001,
                    "serial_last": 3400,
                    "kilograms": 2400,
                    "holder": None,
                },
            ],
        ),
    },
    "retire_reduction_block": {
        "parameters": {"block_id": 3},
        "request": {
            "holder": "acme",
            "kilograms": 500,
            "beneficiary": "Acme 2026 staff commuting",
            "reason": "voluntary offset of 2026 business travel",
        },
        "response": (201, _CERTIFICATE),
    },
    "get_retirement_certificate": {
        "parameters": {"retirement_id": 1, "format": "json"},
        "response": (200, _CERTIFICATE),
    },
    "get_reductions_registry": {
        "parameters": {"limit": 100, "format": "json"},
        "response": (
            200,
            {
                "programme": "CP",
                "unit": "kgCO2e",
                "grams_per_serial": 1000,
                "totals": [
                    {
                        "vintage": "2026",
                        "methodology_id": "transit.metro",
                        "issued_kg": 3400,
                        "transferred_kg": 1000,
                        "retired_kg": 500,
                    }
                ],
                "blocks": [
                    {
                        "block_id": 5,
                        "batch_id": 1,
                        "serials": "CP/CN-JX/transit.metro/2026/0000000001-0000000500",
                        "serial_first": "0000000001",
                        "serial_last": "0000000500",
                        "kilograms": 500,
                        "methodology_id": "transit.metro",
                        "region": "CN-JX",
                        "vintage": "2026",
                        "status": "retired",
                        "holder": "Acme 绿色科技有限公司",
                        "retirement_id": 1,
                        "retired_at": _AT,
                    }
                ],
                "next_cursor": None,
            },
        ),
    },
}
