"""``GET /api/openapi.json``: the OpenAPI 3.1 description, generated from ``API_ROUTES``.

Body and reply schemas come from the same msgspec types that decode the bodies
(``msgspec.json.schema_components``, JSON Schema 2020-12 as OpenAPI 3.1 uses), so the
document says what the code does.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Any

import msgspec
from aiohttp import web

from server.api_routes import API_ROUTES, ApiRoute, Query
from server.appkeys import CONFIG
from server.http import json_response

_REF = "#/components/schemas/{name}"
_PATH_PARAM = re.compile(r"{([a-z_]+)}")
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    303: "See other",
    400: "Malformed body or query (names the field)",
    401: "Not logged in, or the session ended",
    402: "No minutes left",
    403: "Role not allowed, or CSRF token missing",
    404: "Not found (also another practice's data)",
    409: "Conflicts with the current state",
    410: "Gone (the link's call is over)",
    413: "Body too large",
    429: "Too many attempts (Retry-After)",
    503: "Not ready, or a provider did not answer (retry later)",
}


class ErrorDetail(msgspec.Struct):
    code: str
    message: str
    field: str | None = None


class ErrorReply(msgspec.Struct):
    error: ErrorDetail


def _query_schema(kind: Any) -> dict[str, Any]:
    if kind is int:
        return {"type": "integer"}
    if kind is bool:
        return {"type": "string", "enum": ["true", "false"]}
    if kind is date:
        return {"type": "string", "format": "date"}
    if kind is datetime:
        return {"type": "string", "format": "date-time"}
    if kind is uuid.UUID:
        return {"type": "string", "format": "uuid"}
    return {"type": "string"}


def _parameters(route: ApiRoute) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(route.path)
    ]
    for query in route.query:
        found.append(_query_parameter(query))
    return found


def _query_parameter(query: Query) -> dict[str, Any]:
    return {
        "name": query.name,
        "in": "query",
        "required": query.required,
        "description": query.description,
        "schema": _query_schema(query.kind),
    }


def build_openapi(base_url: str, routes: tuple[ApiRoute, ...] = API_ROUTES) -> dict[str, Any]:
    types: list[Any] = [ErrorReply]
    for route in routes:
        if route.body is not None:
            types.append(route.body)
        if _json_reply(route):
            types.append(route.reply)
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    by_type = dict(zip(map(id, types), schemas, strict=True))
    error_schema = by_type[id(ErrorReply)]
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "operationId": f"{route.method.lower()}_{_operation_name(route.path)}",
            "summary": route.summary,
            "tags": [route.tag],
            "responses": {},
        }
        if route.roles:
            who = ", ".join(route.roles)
            operation["description"] = f"Roles: {who}."
        else:
            operation["security"] = []
        parameters = _parameters(route)
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": by_type[id(route.body)]}},
            }
        for status in route.statuses:
            reply: dict[str, Any] = {"description": _STATUS_TEXT.get(status, "OK")}
            if status != 303:
                schema = (
                    by_type[id(route.reply)]
                    if route.media_type == "application/json"
                    else {"type": "string"}
                )
                reply["content"] = {route.media_type: {"schema": schema}}
            operation["responses"][str(status)] = reply
        for status in route.error_statuses():
            operation["responses"][str(status)] = {
                "description": _STATUS_TEXT.get(status, "Error"),
                "content": {"application/json": {"schema": error_schema}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "videoconsult API",
            "version": "1",
            "description": 'Errors are {"error": {"code", "message", "field"?}}. '
            "Authenticate with Authorization: Bearer <token> from POST /api/login.",
        },
        "servers": [{"url": base_url}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _json_reply(route: ApiRoute) -> bool:
    """Whether the route answers a success with a JSON body, whose type it must then name."""
    if route.media_type != "application/json" or set(route.statuses) <= {303}:
        return False
    if route.reply is None:
        raise ValueError(f"{route.method} {route.path}: a JSON reply needs its reply type")
    return True


def _operation_name(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_") or "root"


async def openapi_document(request: web.Request) -> web.Response:
    return json_response(build_openapi(request.app[CONFIG].base_url))
