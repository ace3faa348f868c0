"""The OpenAPI description and the server agree: schemathesis against the live app.

For every operation of ``GET /api/openapi.json`` and a staff token of each role,
schemathesis generates requests (bounded examples per operation) and checks each reply: no
5xx, a documented status, and a body matching the documented schema.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err

from server.api_routes import API_ROUTES
from server.config import Config
from tests.diary_fixtures import SmtpServer, diary_config, running_smtp_server
from tests.support import ApiClient, PracticeFixture, login_as


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def config(config: Config, smtp_server: SmtpServer) -> Config:
    # A mail server that answers: invitations are sent, not refused with 503.
    return diary_config(config, smtp_server)


# Examples per operation and role: enough to reach the bad-input paths, small enough for the
# suite's budget (about 40 operations x 3 roles). SCHEMATHESIS_EXAMPLES raises it locally.
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "8"))
ROLES = ("site_admin", "clinician", "receptionist")
# What the description promises. Not "positive data accepted": a schema cannot say every
# rule (a time zone must exist, a series at most 104 dates), and those are 400s by design.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


async def test_the_document_is_openapi_3_1_and_lists_every_table_route(
    client: ApiClient,
) -> None:
    response = await client.get("/api/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"] == "3.1.0"
    for route in API_ROUTES:
        operation = document["paths"][route.path][route.method.lower()]
        assert operation["responses"], route.path
    schemathesis.openapi.from_dict(document)  # loads: a well-formed description


async def test_every_json_reply_is_typed_field_by_field(client: ApiClient) -> None:
    """No success reply is a free-form object: each names its fields and refuses others, so
    the schema check below fails when a handler's reply drifts from its documented type."""
    document = await (await client.get("/api/openapi.json")).json()
    components = document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, reply in operation["responses"].items():
                schema = reply.get("content", {}).get("application/json", {}).get("schema")
                if schema is None or not status.startswith("2"):
                    continue
                schema = schema.get("items", schema)  # a list of typed items
                assert "$ref" in schema, (method, path, status, schema)
                component = components[schema["$ref"].rsplit("/", 1)[1]]
                assert component.get("properties"), (method, path, component)


async def test_every_api_route_of_the_app_comes_from_the_table(app: web.Application) -> None:
    declared = {(route.method, route.path) for route in API_ROUTES}
    declared.add(("GET", "/api/openapi.json"))
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        and route.resource.canonical.startswith(("/api/", "/webhooks/", "/healthz", "/readyz"))
    }
    assert served <= declared, f"routes outside server/api_routes.py: {served - declared}"


async def test_documented_auth_errors_are_what_the_server_answers(
    client: ApiClient, practice: PracticeFixture
) -> None:
    tokens = {role: await login_as(client, practice, role) for role in ROLES}
    client.session.cookie_jar.clear()  # only the Bearer headers below authenticate
    for route in API_ROUTES:
        if not route.authenticated:
            continue
        path = route.path.replace("{", "").replace("}", "")
        response = await client.request(route.method, path)
        assert response.status == 401, (route.method, route.path)
        if route.role_restricted:
            outsider = next(role for role in ROLES if role not in route.roles)
            refused = await client.request(route.method, path, headers=tokens[outsider])
            assert refused.status == 403, (route.method, route.path, outsider)


@pytest.mark.timeout(600)
async def test_schemathesis_finds_no_server_error_and_no_reply_off_schema(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    document = await (await client.get("/api/openapi.json")).json()
    base_url = str(client.make_url("")).rstrip("/")
    tokens = {role: await login_as(client, practice, role) for role in ROLES}
    client.session.cookie_jar.clear()
    fuzzed = {(r.method.lower(), r.path) for r in API_ROUTES if r.fuzz}

    calls: list[int] = []

    def run() -> list[str]:
        schema = schemathesis.openapi.from_dict(document)
        failures: list[str] = []
        for result in schema.get_all_operations():
            if isinstance(result, Err):
                failures.append(f"an operation does not load: {result.err()}")
                continue
            operation = result.ok()
            if (operation.method.lower(), operation.path) not in fuzzed:
                continue
            for role, headers in tokens.items():
                failure = _fuzz(operation, base_url, headers, calls)
                if failure:
                    failures.append(f"{operation.method} {operation.path} as {role}: {failure}")
        return failures

    failures = await asyncio.to_thread(run)
    assert not failures, "\n".join(failures)
    # Every operation was really exercised, for every role.
    assert len(calls) >= len(fuzzed) * len(ROLES)
    assert 500 not in calls


def _fuzz(operation: Any, base_url: str, headers: dict[str, str], calls: list[int]) -> str | None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=20)
        calls.append(response.status_code)
        case.validate_response(response, checks=CHECKS)

    try:
        check()
    except (Exception, BaseExceptionGroup) as exc:  # every operation's first failure
        return f"{type(exc).__name__}: {str(exc)[:1500]}"
    return None
