"""The OpenAPI document is a contract a client can trust: valid 3.1, problem+json for every
error, each operation secured, exemplified and paginated alike, and every bound a request can
carry no looser than the column behind it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from sqlalchemy import String

from service.app import create_app
from service.config import Settings
from service.fields import INT64_MAX, INT64_MIN, REGION_MAX_LENGTH
from service.models import Base, Credit, Organisation, Participant, PartnerEvent
from service.openapi import TAGS

PROBLEM_MEDIA_TYPE = "application/problem+json"
METHODS = {"get", "post", "put", "patch", "delete"}
# Free text whose characters are the user's business (hashed, never stored or shown).
CONTROL_CHARACTERS_ALLOWED = {"password"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    # Building the document needs no servers: the URLs are never connected to.
    settings = Settings(
        database_url="postgresql://nobody@127.0.0.1:1/none", redis_url="redis://127.0.0.1:1/0"
    )
    return create_app(settings).openapi()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = document["components"]["schemas"][name]
    return schema


def leaves(
    document: dict[str, Any], schema: dict[str, Any], name: str = ""
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every scalar schema inside `schema`, with the name of the property it belongs to."""
    schema = resolve(document, schema)
    branches = [*schema.get("anyOf", []), *schema.get("oneOf", []), *schema.get("allOf", [])]
    for branch in branches:
        yield from leaves(document, branch, name)
    if "items" in schema:
        yield from leaves(document, schema["items"], name)
    for key, child in schema.get("properties", {}).items():
        yield from leaves(document, child, key)
    if isinstance(schema.get("additionalProperties"), dict):
        yield from leaves(document, schema["additionalProperties"], name)
    if not branches and schema.get("type") in ("string", "integer"):
        yield name, schema


def request_leaves(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, method, operation in operations(document):
        where = f"{method.upper()} {path}"
        for parameter in operation.get("parameters", []):
            for name, leaf in leaves(document, parameter["schema"], parameter["name"]):
                yield where, name, leaf
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body:
            for name, leaf in leaves(document, body["schema"]):
                yield where, name, leaf


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    validate(document)


def test_security_schemes_are_named_without_spaces_and_cover_every_caller(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in schemes)
    headers = {s["name"] for s in schemes.values() if s["type"] == "apiKey"}
    assert headers == {"webhook-key-id", "webhook-id", "webhook-timestamp", "webhook-signature"}
    for path, _method, operation in operations(document):
        required = {name for requirement in operation.get("security", []) for name in requirement}
        if path.startswith("/v1/partner/"):
            assert required == {
                "PartnerKeyId",
                "PartnerRequestId",
                "PartnerTimestamp",
                "PartnerSignature",
            }, path
        elif path.startswith("/v1/merchant/"):
            assert required == {"MerchantKey"}, path
        elif path.startswith("/v1/app/") and path not in {
            "/v1/app/register",
            "/v1/app/login",
            "/v1/app/token/refresh",
            "/v1/app/logout",
            "/v1/app/offers",
            "/v1/app/registry",
        }:
            assert required == {"AppAccessToken"}, path
        elif path.startswith("/v1/admin/") and path != "/v1/admin/login":
            assert required == {"AdminAccessToken"}, path


def test_every_error_is_declared_as_the_one_problem_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "Problem" in schemas
    for path, method, operation in operations(document):
        responses = operation["responses"]
        errors = {code: r for code, r in responses.items() if int(code) >= 400}
        assert {"500"} <= set(errors), (method, path)
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in errors, (method, path)
        for code, response in errors.items():
            assert list(response["content"]) == [PROBLEM_MEDIA_TYPE], (method, path, code)
            media = response["content"][PROBLEM_MEDIA_TYPE]
            assert media["schema"] == {"$ref": "#/components/schemas/Problem"}
            assert media["example"]["status"] == int(code)
            if code in ("429", "503"):
                assert "Retry-After" in response["headers"]


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> OAS31Validator:
    return OAS31Validator({**schema, "components": document["components"]})


def test_every_operation_has_request_and_response_examples_that_fit_their_schemas(
    document: dict[str, Any],
) -> None:
    for path, method, operation in operations(document):
        where = (method, path)
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            assert "example" in body, where
            _validator(document, body["schema"]).validate(body["example"])
        for parameter in operation.get("parameters", []):
            if "example" in parameter:
                _validator(document, parameter["schema"]).validate(parameter["example"])
        if body is None:
            assert operation.get("parameters") is None or any(
                "example" in p for p in operation["parameters"]
            ), where
        success = [code for code in operation["responses"] if code.startswith("2")]
        assert len(success) == 1, where
        response = operation["responses"][success[0]]
        if success[0] == "204":
            continue
        content = response["content"]
        if "application/json" not in content:  # a download: its one media type (NDJSON)
            assert len(content) == 1, where
        media = content.get("application/json") or next(iter(content.values()))
        assert "example" in media, where
        _validator(document, media["schema"]).validate(media["example"])
        for code, error in operation["responses"].items():
            if int(code) >= 400:
                problem = error["content"][PROBLEM_MEDIA_TYPE]
                _validator(document, problem["schema"]).validate(problem["example"])


def test_operation_ids_are_readable_and_tags_name_the_user_group(
    document: dict[str, Any],
) -> None:
    ids = [operation["operationId"] for _path, _method, operation in operations(document)]
    assert len(ids) == len(set(ids))
    for operation_id in ids:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", operation_id), operation_id
        assert len(operation_id) <= 40, operation_id
    known = {tag["name"] for tag in TAGS}
    for path, _method, operation in operations(document):
        (tag,) = operation["tags"]
        assert tag in known
        group = {
            "partner": "partner-",
            "merchant": "merchant-",
            "app": "app-",
            "admin": "admin-",
        }.get(path.split("/")[2] if path.startswith("/v1/") else "", "operations")
        assert tag.startswith(group), (path, tag)


def test_every_list_takes_cursor_and_answers_next_cursor(document: dict[str, Any]) -> None:
    lists = 0
    for path, method, operation in operations(document):
        if method != "get":
            continue
        content = operation["responses"]["200"]["content"]
        if "application/json" not in content:
            # A download is the whole file of the period asked for (`since`, `until`), not a
            # page of JSON: there is no list in it to page. `GET /v1/admin/audit` pages the
            # same entries with `cursor` (and is counted below).
            assert path == "/v1/admin/audit/export", path
            continue
        schema = resolve(document, content["application/json"]["schema"])
        assert schema.get("type") != "array", f"{path} answers a bare array"
        array_members = [
            key
            for key, prop in schema.get("properties", {}).items()
            if resolve(document, prop).get("type") == "array"
        ]
        parameters = {p["name"] for p in operation.get("parameters", [])}
        if "next_cursor" in schema.get("properties", {}):
            lists += 1
            assert {"cursor", "limit"} <= parameters, path
        elif array_members and path.startswith("/v1/") and path != "/v1/app/me":
            # Only documents with bounded lists inside (an explanation, a statement, a diff,
            # an administrator's roles, a report of a bounded period) may skip it.
            assert path in {
                "/v1/admin/reports/reductions",
                "/v1/admin/reports/settlement",
                "/v1/admin/reports/partner-health",
                "/v1/admin/me",
                "/v1/admin/methodology-drafts/{draft_id}/diff",
                "/v1/app/balance",
                "/v1/app/credits/{credit_id}/explanation",
                "/v1/merchant/settlement",
                "/v1/merchant/redemptions/{redemption_id}",
                "/v1/app/organisations/{organisation_id}",
                "/v1/partner/events/{external_id}",
                "/v1/admin/review/flags/{credit_id}",
                "/v1/admin/review/flags/{credit_id}/assign",
                "/v1/admin/review/flags/{credit_id}/approve",
                "/v1/admin/review/flags/{credit_id}/reject",
                "/v1/admin/review/rules",
                "/v1/admin/review/rules/{rule}",
            }, (path, array_members)
        assert "after" not in parameters or operation["operationId"] == "list_outcomes"
    # Outcomes, history, reductions, identity links, two leaderboards, offers; administrators,
    # the audit trail, methodology versions and drafts, partners and merchants; the public
    # registry of certified reductions; the review queue.
    assert lists == 15


def test_every_request_integer_is_bounded_to_int64(document: dict[str, Any]) -> None:
    for where, name, leaf in request_leaves(document):
        if leaf.get("type") == "integer":
            assert INT64_MIN <= leaf.get("minimum", INT64_MIN - 1) <= INT64_MAX, (where, name)
            assert INT64_MIN <= leaf.get("maximum", INT64_MAX + 1) <= INT64_MAX, (where, name)


def test_every_request_string_is_bounded_and_refuses_control_characters(
    document: dict[str, Any],
) -> None:
    for where, name, leaf in request_leaves(document):
        if leaf.get("type") != "string" or "enum" in leaf or "const" in leaf:
            continue
        if leaf.get("format") in ("uuid", "date-time"):
            continue
        pattern = leaf.get("pattern")
        bounded = "maxLength" in leaf or (pattern and re.search(r"\{\d+(,\d+)?\}\$$", pattern))
        assert bounded, (where, name)
        if name not in CONTROL_CHARACTERS_ALLOWED:
            assert pattern, (where, name)
            assert not re.search(pattern, "a\x00b"), (where, name, "NUL")
            assert not re.search(pattern, "a\x07b"), (where, name, "BEL")


# Request fields and the columns they are written to.
STORED_AS = [
    ("RegisterIn", "display_name", [Participant.display_name]),
    ("RegisterIn", "region", [Participant.region]),
    ("OrganisationIn", "name", [Organisation.name, Participant.display_name]),
    ("OrganisationIn", "region", [Participant.region]),
]


@pytest.mark.parametrize(("schema_name", "field", "columns"), STORED_AS)
def test_request_strings_fit_their_columns(
    document: dict[str, Any], schema_name: str, field: str, columns: list[Any]
) -> None:
    schema = document["components"]["schemas"][schema_name]
    (leaf,) = [leaf for _name, leaf in leaves(document, schema["properties"][field])]
    limit = min(c.property.columns[0].type.length for c in columns)
    assert leaf["maxLength"] <= limit


def test_event_fields_fit_their_columns(document: dict[str, Any]) -> None:
    batch = document["paths"]["/v1/partner/event-batches"]["post"]
    event = batch["requestBody"]["content"]["application/json"]["schema"]["properties"]["events"]
    properties = event["items"]["properties"]
    region = [leaf for _n, leaf in leaves(document, properties["region"])]
    assert region
    for column in (PartnerEvent.region, Credit.region):
        assert all(leaf["maxLength"] <= column.property.columns[0].type.length for leaf in region)
    external_id = properties["external_id"]["pattern"]
    assert external_id.endswith("{1,128}$")
    assert PartnerEvent.external_id.property.columns[0].type.length == 128


def test_every_region_column_holds_the_longest_region_accepted() -> None:
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if column.name == "region":
                assert isinstance(column.type, String)
                assert column.type.length == REGION_MAX_LENGTH, table.name
