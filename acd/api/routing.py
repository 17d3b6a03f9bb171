"""Adapter: a small route registry that gives every endpoint its role, body model and
OpenAPI entry in one place, so the document can never drift from the routes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
Handler = Callable[..., Awaitable[web.StreamResponse]]
ROLES = ("manager", "supervisor", "admin")
ROUTES = web.AppKey("routes", dict)
BODY = web.RequestKey("json_body", object)
IDEMPOTENCY_KEY_MAX = 200  # characters: a UUID is 36; a unique index entry must stay small


class ApiError(web.HTTPException):
    """An error with a stable `code`, returned as {"error": {"code", "message"}}."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        super().__init__(
            text=json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False),
            content_type="application/json",
            headers=headers,
        )
        self.code = code
        self.message = message


BODY_REFUSED = web.RequestKey("json_body_refused", ApiError)  # why the body could not be read


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    role: str | None  # None: public
    body: type[BaseModel] | None = None
    query: tuple[str, ...] = ()
    tag: str = "acd"


class Registry:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(
        self,
        method: str,
        path: str,
        summary: str,
        role: str | None,
        body: type[BaseModel] | None = None,
        query: tuple[str, ...] = (),
        tag: str = "acd",
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.routes.append(Route(method, path, handler, summary, role, body, query, tag))
            return handler

        return register

    def install(self, app: web.Application) -> None:
        for r in self.routes:
            app.router.add_route(r.method, r.path, r.handler)
        app[ROUTES] = {(r.method, r.path): r for r in self.routes}

    def openapi(self, title: str, version: str) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        schemas: dict[str, Any] = {}
        for r in self.routes:
            op: dict[str, Any] = {
                "summary": r.summary,
                "operationId": r.handler.__name__,
                "tags": [r.tag],
                "responses": {
                    "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                    "400": {"$ref": "#/components/responses/Error"},
                },
            }
            if r.role:
                op["security"] = [{"bearer": []}]
                op["x-acd-role"] = r.role  # the least role whose token may call it (ROLES)
                op["responses"]["401"] = {"$ref": "#/components/responses/Error"}
                op["responses"]["403"] = {"$ref": "#/components/responses/Error"}
            if "{" in r.path:
                op["responses"]["404"] = {"$ref": "#/components/responses/Error"}
            params = [
                {"name": seg[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
                for seg in r.path.split("/")
                if seg.startswith("{")
            ]
            params += [{"name": q, "in": "query", "required": False, "schema": {"type": "string"}} for q in r.query]
            if params:
                op["parameters"] = params
            if r.body is not None:
                schema = r.body.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[r.body.__name__] = schema
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{r.body.__name__}"}}},
                }
            paths.setdefault(r.path, {})[r.method.lower()] = op
        error = {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    "required": ["code", "message"],
                }
            },
        }
        return {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version},
            "paths": paths,
            "components": {
                "schemas": {**schemas, "Error": error},
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                "responses": {
                    "Error": {
                        "description": "An error with a stable code",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    }
                },
            },
        }


async def request_json(request: web.Request) -> Any:
    """The request's JSON body, parsed once however many look at it (the public endpoints'
    bot check reads it before the handler), or a 400."""
    if BODY in request:
        return request[BODY]
    if BODY_REFUSED in request:  # a second read would get the rest of the stream as a body
        raise request[BODY_REFUSED]
    try:
        raw = await request.read() or b"{}"
    except web.HTTPRequestEntityTooLarge:
        request[BODY_REFUSED] = ApiError(413, "too_large", f"the body is over {request.client_max_size} bytes")
        raise request[BODY_REFUSED] from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {err}") from None
    # PostgreSQL's text cannot hold NUL; no form or panel sends one. (A raw NUL is not JSON,
    # so only the escape can bring it: the cheap test spares the walk on every lead.)
    if b"\\u0000" in raw and _holds_nul(data):
        raise ApiError(400, "invalid", "text must not contain the NUL character (\\u0000)")
    request[BODY] = data
    return data


def _holds_nul(data: Any) -> bool:
    if isinstance(data, str):
        return "\0" in data
    if isinstance(data, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in data.items())
    if isinstance(data, list):
        return any(_holds_nul(v) for v in data)
    return False


def whole_number(raw: str) -> int | None:
    """`raw` as a whole number a database key can hold (0 to 2^63 - 1), or None: ASCII
    digits only (`str.isdigit` also takes "²", which `int` refuses)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        return None
    number = int(raw)
    return number if number < 2**63 else None


def idempotency_key(request: web.Request, in_body: str | None) -> str | None:
    """The key a form was sent with: the `Idempotency-Key` header, else the body's field.
    A key too long for the unique index is the client's mistake (400), never the database's."""
    key = request.headers.get("Idempotency-Key") or in_body
    if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
        raise ApiError(400, "invalid", f"Idempotency-Key: at most {IDEMPOTENCY_KEY_MAX} characters")
    return key


def json_response(data: Any, status: int = 200) -> web.Response:
    """`web.json_response` through orjson, for the answers on the intake path."""
    body = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The request's JSON as `model`, or a 400 that says which field is wrong and why."""
    data = await request_json(request)
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in err.errors(include_url=False)
        )
        raise ApiError(400, "invalid", problems) from None
