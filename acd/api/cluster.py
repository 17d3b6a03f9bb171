"""Adapter: the API's handle on the other nodes in cluster mode (absent on a single node).

`RELAY` passes a request on to the node that can carry it out (acd.cluster.relay): a live
call's transfer to the node holding the call, a Twilio callback's webhook to the dispatching
node. An answer travels as `{"ok": {...}}` or `{"error": [status, code, message]}` — the
HTTP status and error code the node that did the work would have answered with.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from acd.api.routing import ApiError
from acd.cluster.relay import Relay

RELAY = web.AppKey("relay", Relay)


def error_answer(err: ApiError) -> dict[str, Any]:
    return {"error": [err.status, err.code, err.message]}


def raise_if_error(answer: dict[str, Any]) -> dict[str, Any]:
    """The `ok` part of an answer, or the ApiError it carries."""
    error = answer.get("error")
    if isinstance(error, list) and len(error) == 3:
        raise ApiError(int(error[0]), str(error[1]), str(error[2]))
    ok = answer.get("ok")
    return ok if isinstance(ok, dict) else {}


__all__ = ["RELAY", "error_answer", "raise_if_error"]
