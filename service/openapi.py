"""The OpenAPI 3.1 document: what FastAPI derives from the routes, completed for clients.

FastAPI knows the routes, parameters and bodies; it does not know that every error is an RFC
9457 problem (it declares its own validation body), how merchants and partners authenticate
(plain dependencies, invisible to it), or what a realistic exchange looks like. `build_openapi`
adds those, once, from the tables below; `tests/contract/` validates the result with
`openapi-spec-validator`, checks every example against its schema, and fuzzes the running
service against it with Schemathesis.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from service.errors import PROBLEM_BASE, PROBLEM_MEDIA_TYPE
from service.idempotency import KEY_PATTERN
from service.openapi_examples import EXAMPLES

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

TAGS: list[dict[str, str]] = [
    {
        "name": "partner-events",
        "description": "Partners (transit, bike-share, utilities, retail, waste) report verified"
        " actions and reconcile outcomes. Every request is signed (see PartnerSignature).",
    },
    {
        "name": "app-accounts",
        "description": "The mobile app: registration, sign-in, tokens, organisations.",
    },
    {
        "name": "app-points",
        "description": "The mobile app: balance, history, reductions,"
        " explanations, leaderboards, identity links, vouchers, till codes.",
    },
    {"name": "app-privacy", "description": "The mobile app: export or erase one's data (PIPL)."},
    {"name": "app-offers", "description": "The public offer catalogue."},
    {
        "name": "merchant-redemptions",
        "description": "Merchants' tills and checkouts: authorise, capture, void and refund"
        " redemptions; settlement statements. A scoped key (MerchantKey) and an Idempotency-Key"
        " on every POST.",
    },
    {
        "name": "admin-accounts",
        "description": "Administrators: sign-in (password and TOTP code), administrators and"
        " their roles. Every call but login carries an AdminAccessToken.",
    },
    {
        "name": "admin-audit",
        "description": "Administrators: the hash-chained audit trail of every administrative act,"
        " paged or exported (auditors).",
    },
    {
        "name": "admin-methodologies",
        "description": "Administrators: the methodology lifecycle: draft, diff, back-test,"
        " approve (four eyes), schedule, retire.",
    },
    {
        "name": "admin-partners",
        "description": "Administrators (program-admin): partners, their signing keys (issue,"
        " rotate with an overlap, revoke) and suspension.",
    },
    {
        "name": "admin-merchants",
        "description": "Administrators (program-admin): merchants, their API keys (issue,"
        " rotate, revoke) and suspension.",
    },
    {
        "name": "admin-reports",
        "description": "Administrators: programme reports for a period (reductions, points and"
        " the liability, merchants' settlement, partners' health), as JSON or CSV (auditors and"
        " programme administrators).",
    },
    {
        "name": "admin-reductions",
        "description": "Administrators: certified reductions: pools, pooling runs and their"
        " issuance documents, organisation accounts, transfers and retirements of serial blocks"
        " (program-admin acts; auditors read).",
    },
    {
        "name": "app-registry",
        "description": "The public registry of certified reductions: totals and serial blocks"
        " (no personal data); JSON or a page.",
    },
    {
        "name": "admin-review",
        "description": "Administrators: the review queue of flagged credits (reviewers assign,"
        " approve and reject; programme administrators and auditors read) and the flag rules"
        " (programme administrators set them).",
    },
    {"name": "operations", "description": "Liveness and readiness, for load balancers."},
]
TAG_GROUPS = [
    {"name": "Partners", "tags": ["partner-events"]},
    {
        "name": "Mobile app",
        "tags": ["app-accounts", "app-points", "app-privacy", "app-offers", "app-registry"],
    },
    {"name": "Merchants", "tags": ["merchant-redemptions"]},
    {
        "name": "Administrators",
        "tags": [
            "admin-accounts",
            "admin-audit",
            "admin-methodologies",
            "admin-partners",
            "admin-merchants",
            "admin-reports",
            "admin-reductions",
            "admin-review",
        ],
    },
    {"name": "Operations", "tags": ["operations"]},
]

SIGNING_DESCRIPTION = """HMAC-SHA256 request signing, Standard Webhooks style. Send four headers:
`webhook-key-id` (your key id, `pk_...`), `webhook-id` (fresh for every HTTP attempt, no `.`),
`webhook-timestamp` (Unix seconds, within 300 s of the server's clock) and `webhook-signature`
(`v1,` + base64 of HMAC-SHA256 keyed with your secret's UTF-8 bytes over
`{key_id}.{webhook_id}.{timestamp}.{METHOD}.{path_with_query}.{body}`, the exact request target
and body bytes). The Python SDK in `integrations/` does this for you."""

SECURITY_SCHEMES: dict[str, Any] = {
    "AppAccessToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from `POST /v1/app/login` (or register, or refresh);"
        " HS256, valid ten minutes.",
    },
    "AdminAccessToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An administrator's access token from `POST /v1/admin/login` (password"
        " and TOTP code); HS256 with its own audience (`carbon-points-admin`), valid fifteen"
        " minutes. App tokens are refused here, and admin tokens in the app.",
    },
    "MerchantKey": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "cpmk_<key id>_<secret>",
        "description": "A merchant's scoped API key (`redeem`, `refund`, `settlement`).",
    },
    "PartnerKeyId": {
        "type": "apiKey",
        "in": "header",
        "name": "webhook-key-id",
        "description": "The partner key id (`pk_...`). " + SIGNING_DESCRIPTION,
    },
    "PartnerRequestId": {
        "type": "apiKey",
        "in": "header",
        "name": "webhook-id",
        "description": "A fresh id for every HTTP attempt (replays are refused).",
    },
    "PartnerTimestamp": {
        "type": "apiKey",
        "in": "header",
        "name": "webhook-timestamp",
        "description": "Unix seconds; within 300 s of the server's clock.",
    },
    "PartnerSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "webhook-signature",
        "description": "`v1,<base64 HMAC-SHA256>`; several space-separated signatures are"
        " accepted during a key rotation. " + SIGNING_DESCRIPTION,
    },
}
PARTNER_SECURITY: list[dict[str, list[str]]] = [
    {"PartnerKeyId": [], "PartnerRequestId": [], "PartnerTimestamp": [], "PartnerSignature": []}
]
MERCHANT_SECURITY: list[dict[str, list[str]]] = [{"MerchantKey": []}]
APP_SECURITY: list[dict[str, list[str]]] = [{"AppAccessToken": []}]
ADMIN_SECURITY: list[dict[str, list[str]]] = [{"AdminAccessToken": []}]

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "An RFC 9457 problem document. Match on `type`, a stable URI under "
    f"`{PROBLEM_BASE}`; `detail` is for people. Validation problems list the failing fields"
    " in `errors`, never the values sent.",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "examples": [PROBLEM_BASE + "validation-error"]},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": ["string", "null"]},
        "errors": {
            "type": "array",
            "items": {"$ref": "#/components/schemas/ProblemFieldError"},
        },
    },
    "additionalProperties": True,
}
PROBLEM_FIELD_ERROR_SCHEMA: dict[str, Any] = {
    "title": "ProblemFieldError",
    "type": "object",
    "required": ["location", "message", "code"],
    "properties": {
        "location": {"type": "array", "items": {"type": "string"}},
        "message": {"type": "string"},
        "code": {"type": "string"},
    },
}

# Title and an example `type` slug of the problems each status stands for.
_STATUS_PROBLEMS: dict[int, tuple[str, str, str]] = {
    400: ("Bad request", "malformed-body", "The body is not JSON, or not the expected shape"),
    401: ("Authentication required", "unauthenticated", "Missing or invalid credentials"),
    403: ("Not allowed", "forbidden", "The caller may not do this"),
    404: ("Not found", "not-found", "No such resource for this caller"),
    409: ("Conflict", "conflict", "The request conflicts with the current state"),
    413: ("Payload too large", "payload-too-large", "The body is larger than allowed"),
    422: ("Request failed validation", "validation-error", "A field failed validation"),
    429: ("Too many requests", "rate-limited", "Rate limit exceeded; see Retry-After"),
    500: ("Internal server error", "internal-error", "An unexpected error; quote request_id"),
    503: (
        "Service unavailable",
        "service-unavailable",
        "The database is unreachable; retry after Retry-After seconds",
    ),
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0},
    }
}

ADMIN_LOGIN_PATH = "/v1/admin/login"
_PUBLIC_APP_PATHS = {
    "/v1/app/registry",
    "/v1/app/register",
    "/v1/app/login",
    "/v1/app/token/refresh",
    "/v1/app/logout",
    "/v1/app/offers",
}


# Statuses an operation answers beyond those its route declares and its caller implies.
_MORE_STATUSES: dict[str, set[int]] = {
    "explain_credit": {404},
    "unlink_identity": {404},
    "get_organisation_leaderboard": {403},
    "link_identity": {409},
    "claim_voucher_code": {409},
    # Administrators (`role-required` 403s come with every admin route but login).
    "admin_login": {401, 429},
    "create_administrator": {409},
    "update_administrator": {404},
    "retire_methodology_version": {404, 409},
    "create_methodology_draft": {409},
    "get_methodology_draft": {404},
    "diff_methodology_draft": {404},
    "approve_methodology_draft": {404, 409},
    "schedule_methodology_draft": {404, 409},
    "backtest_methodology_draft": {404},
    "unschedule_methodology_draft": {404, 409},
    "list_methodology_versions": {400},  # a cursor this API did not return
    "get_flag": {404},
    "assign_flag": {404, 409},
    "approve_flag": {404, 409},
    "reject_flag": {404, 409},
    "create_partner": {409},
    "issue_partner_key": {404},
    "rotate_partner_key": {404, 409},
    "revoke_partner_key": {404, 409},
    "suspend_partner": {404},
    "reinstate_partner": {404},
    "create_merchant": {409},
    "issue_merchant_key": {404},
    "rotate_merchant_key": {404, 409},
    "revoke_merchant_key": {404, 409},
    "suspend_merchant": {404},
    "reinstate_merchant": {404},
    "create_reduction_pool": {409},
    "get_reduction_pool": {404},
    "run_reduction_pool": {404, 409},
    "get_reduction_batch": {404},
    "create_reduction_holder": {409},
    "get_reduction_block": {404},
    "transfer_reduction_block": {404, 409},
    "retire_reduction_block": {404, 409},
    "get_retirement_certificate": {404},
}


def _error_statuses(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    statuses = {500, *_MORE_STATUSES.get(operation["operationId"], ())}
    if path != "/healthz":
        statuses.add(503)
    if operation.get("parameters") or operation.get("requestBody"):
        statuses.add(422)
    if operation.get("requestBody"):
        statuses.add(400)
    if path.startswith("/v1/partner/"):
        statuses |= {400, 401, 403, 413, 422, 429}
    elif path.startswith("/v1/merchant/"):
        statuses |= {400, 401, 403, 404, 422}
        if method == "post":
            statuses.add(409)
    elif path.startswith("/v1/app/") and path not in _PUBLIC_APP_PATHS:
        statuses.add(401)
    elif path.startswith("/v1/admin/") and path != ADMIN_LOGIN_PATH:
        statuses |= {401, 403}
    return statuses


def _problem_example(status: int, path: str) -> dict[str, Any]:
    title, slug, detail = _STATUS_PROBLEMS[status]
    example: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "request_id": "4c1d2b7f9e0a4d3c8b6a5f4e3d2c1b0a",
    }
    if status == 422:
        example["detail"] = "1 field(s) failed validation"
        example["errors"] = [
            {
                "location": ["body", "region"],
                "message": "String should have at most 16 characters",
                "code": "string_too_long",
            }
        ]
    return example


def _problem_response(status: int, path: str, description: str | None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description or _STATUS_PROBLEMS[status][2],
        "content": {
            PROBLEM_MEDIA_TYPE: {
                "schema": PROBLEM_REF,
                "example": _problem_example(status, path),
            }
        },
    }
    if status in (429, 503):
        response["headers"] = copy.deepcopy(_RETRY_AFTER)
    return response


def _security(path: str, operation: dict[str, Any]) -> list[dict[str, list[str]]] | None:
    if path.startswith("/v1/partner/"):
        return PARTNER_SECURITY
    if path.startswith("/v1/merchant/"):
        return MERCHANT_SECURITY
    if path.startswith("/v1/app/"):
        return [] if path in _PUBLIC_APP_PATHS else APP_SECURITY
    if path.startswith("/v1/admin/"):
        return [] if path == ADMIN_LOGIN_PATH else ADMIN_SECURITY
    return operation.get("security")


def _apply_examples(operation: dict[str, Any], examples: dict[str, Any]) -> None:
    request = examples.get("request")
    if request is not None:
        body = operation["requestBody"]["content"]["application/json"]
        body["example"] = request
    for name, value in examples.get("parameters", {}).items():
        for parameter in operation.get("parameters", []):
            if parameter["name"] == name:
                parameter["example"] = value
    status, response = examples["response"]
    if response is None:  # 204: nothing to show
        return
    content = operation["responses"][str(status)].setdefault("content", {})
    # JSON unless the route declares its one media type (the audit export's NDJSON).
    media = content.setdefault(next(iter(content), "application/json"), {})
    media["example"] = response


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The document served at /openapi.json, built once per application."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version="3.1.0",
        description=app.description,
        routes=app.routes,
        tags=TAGS,
    )
    document["x-tagGroups"] = TAG_GROUPS
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for fastapi_own in ("HTTPValidationError", "ValidationError"):
        schemas.pop(fastapi_own, None)
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["ProblemFieldError"] = PROBLEM_FIELD_ERROR_SCHEMA
    components["securitySchemes"] = SECURITY_SCHEMES

    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            declared = {
                int(code): responses.pop(code).get("description")
                for code in list(responses)
                if code.isdigit() and int(code) >= 400
            }
            fastapi_default = "Validation Error"
            for status in sorted(_error_statuses(path, method, operation) | set(declared)):
                description = declared.get(status)
                if description == fastapi_default:
                    description = None
                responses[str(status)] = _problem_response(status, path, description)
            security = _security(path, operation)
            if security is not None:
                operation["security"] = security
            if path.startswith("/v1/merchant/") and method == "post":
                for parameter in operation.get("parameters", []):
                    if parameter["name"] == "Idempotency-Key":
                        parameter["required"] = True
                        parameter["schema"] = {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 255,
                            "pattern": KEY_PATTERN,
                        }
            operation_examples = EXAMPLES.get(operation["operationId"])
            if operation_examples is not None:
                _apply_examples(operation, operation_examples)
    app.openapi_schema = document
    return document


def operation_id(route: APIRoute) -> str:
    """Operation ids are the endpoint functions' names: `submit_event`, `get_balance`, ..."""
    return route.name


def install_openapi(app: FastAPI) -> None:
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
