"""The baseline: a bare aiohttp handler that parses the same JSON and answers 201."""

from __future__ import annotations

import sys

from aiohttp import web


async def lead(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({"id": "x", "name": body.get("name", "")}, status=201)


def main() -> None:
    app = web.Application()
    app.router.add_post("/api/leads", lead)
    port = int(sys.argv[1])
    print("listening", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
