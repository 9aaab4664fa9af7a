"""Schemathesis over every operation of the running service, authenticated as each caller:
partners' requests signed over the exact bytes sent, merchants with a key of every scope, the app
with a citizen's access token, the admin API with the token of an administrator holding every
role (signed in with password and TOTP code). Zero server errors; every error is problem+json;
every answer conforms to the document (status, content type, schema).

`make test` runs a short, derandomised pass (`CARBON_POINTS_FUZZ_EXAMPLES`, default 15 cases per
operation and mode); `make fuzz` a long, random one. Failures are collected, not raised at the
first, so one run reports every offending case with a curl command to replay it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from integrations import (
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_ID_HEADER,
    new_webhook_id,
    sign_request,
)
from service.models import ADMIN_ROLES
from tests.accounts.helpers import PASSWORD, unique_phone
from tests.contract.conftest import ADMIN_PASSWORD, RunningService

EXAMPLES = int(os.environ.get("CARBON_POINTS_FUZZ_EXAMPLES", "15"))
# Derandomised unless asked otherwise: `make test` must not turn red on a case no one changed.
RANDOM = os.environ.get("CARBON_POINTS_FUZZ_RANDOM", "") == "1"
# Operations that end the caller's session: each case gets a citizen of its own.
SESSION_ENDING = {"erase_me", "logout_everywhere"}
PROBLEM_MEDIA_TYPE = "application/problem+json"


class PartnerSigner(requests.auth.AuthBase):
    """Signs the prepared request: the exact target and body bytes requests will send."""

    def __init__(self, key_id: str, secret: str) -> None:
        self.key_id = key_id
        self.secret = secret

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        webhook_id = new_webhook_id()
        timestamp = int(time.time())
        request.headers[KEY_ID_HEADER] = self.key_id
        request.headers[WEBHOOK_ID_HEADER] = webhook_id
        request.headers[TIMESTAMP_HEADER] = str(timestamp)
        request.headers[SIGNATURE_HEADER] = sign_request(
            key_id=self.key_id,
            secret=self.secret,
            webhook_id=webhook_id,
            timestamp=timestamp,
            method=request.method or "GET",
            path=request.path_url,
            body=body,
        )
        return request


@dataclass
class Run:
    service: RunningService
    token: str = ""
    token_at: float = 0.0
    admin: str = ""
    admin_at: float = 0.0
    cases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    authenticated: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def citizen(self) -> str:
        response = httpx.post(
            self.service.url + "/v1/app/register",
            json={"login": unique_phone(), "password": PASSWORD, "display_name": "Fuzz"},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        token: str = response.json()["access_token"]
        return token

    def app_token(self) -> str:
        if time.monotonic() - self.token_at > 300:  # access tokens live ten minutes
            self.token, self.token_at = self.citizen(), time.monotonic()
        return self.token

    def sign_in_admin(self) -> None:
        """The administrator's first token: password and TOTP code, as a person signs in."""
        response = httpx.post(
            self.service.url + "/v1/admin/login",
            json={
                "login": self.service.admin_login,
                "password": ADMIN_PASSWORD,
                "totp": self.service.admin_code(),
            },
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert sorted(response.json()["roles"]) == sorted(ADMIN_ROLES)
        self.admin, self.admin_at = response.json()["access_token"], time.monotonic()

    def admin_token(self) -> str:
        if time.monotonic() - self.admin_at > 600:  # admin tokens live fifteen minutes
            # Minted, not signed in: by now the fuzzed admin logins (all failing) have the
            # login throttle refusing 127.0.0.1 for a quarter of an hour.
            self.admin, self.admin_at = self.service.mint_admin_token(), time.monotonic()
        return self.admin

    def call(self, case: schemathesis.Case) -> None:
        operation = case.operation
        path = operation.path
        operation_id = operation.definition.raw["operationId"]
        options: dict[str, Any] = {"timeout": 30}
        headers: dict[str, str] = {}
        if path.startswith("/v1/partner/"):
            options["auth"] = PartnerSigner(
                self.service.partner.key_id, self.service.partner.secret
            )
        elif path.startswith("/v1/merchant/"):
            headers["Authorization"] = f"Bearer {self.service.merchant_key}"
        elif path.startswith("/v1/admin/") and operation.definition.raw.get("security"):
            headers["Authorization"] = f"Bearer {self.admin_token()}"
        elif operation.definition.raw.get("security"):
            token = self.citizen() if operation_id in SESSION_ENDING else self.app_token()
            headers["Authorization"] = f"Bearer {token}"
        response = case.call(base_url=self.service.url, headers=headers, **options)
        self.cases[operation_id] += 1
        self.statuses[response.status_code] += 1
        if response.status_code != 401:
            self.authenticated[operation_id] += 1
        problems: list[str] = []
        if response.status_code >= 400:
            # Schemathesis keeps every header as a list of its values.
            media_type = next(iter(response.headers.get("content-type") or [""]), "")
            body: Any = None
            with contextlib.suppress(ValueError):
                body = response.json()
            if media_type != PROBLEM_MEDIA_TYPE or not (
                isinstance(body, dict) and {"type", "title", "status"} <= set(body)
            ):
                problems.append(f"error {response.status_code} is not problem+json")
        try:
            case.validate_response(
                response,
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ],
                headers=headers,
            )
        except (AssertionError, BaseExceptionGroup) as failed:  # schemathesis check failures
            for failure in getattr(failed, "exceptions", [failed]):
                lines = str(failure).strip().splitlines()
                problems.append(f"{type(failure).__name__}: {' '.join(lines[:3])[:300]}")
        if problems:
            curl = case.as_curl_command(headers=headers)
            self.failures.append(f"{operation_id} -> {response.status_code}: {problems}\n  {curl}")


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_only_problem_errors(
    running_service: RunningService,
) -> None:
    document = httpx.get(running_service.url + "/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    run = Run(running_service)
    run.sign_in_admin()  # before the fuzzer's failed admin logins trip the login throttle
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=not RANDOM,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def exercise(case: schemathesis.Case) -> None:
                run.call(case)

            # Unsatisfiable: nothing to negate in this operation; its positive cases still ran.
            with contextlib.suppress(Unsatisfiable):
                exercise()
    total = sum(run.cases.values())
    server_errors = sum(n for status, n in run.statuses.items() if status >= 500)
    print(  # the figures a closing note quotes
        f"\nschemathesis: {operations} operations, {total} cases, {server_errors} server errors,"
        f" statuses {dict(sorted(run.statuses.items()))}"
    )
    assert set(run.cases) == {
        op["operationId"]
        for item in document["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    kinds = Counter(failure.split("\n", 1)[0] for failure in run.failures)
    assert not run.failures, "\n".join(
        [f"{n} x {kind}" for kind, n in kinds.most_common()] + run.failures[:10]
    )
    assert server_errors == 0
    # Authentication worked: every operation got past it at least once.
    assert set(run.authenticated) == set(run.cases)
