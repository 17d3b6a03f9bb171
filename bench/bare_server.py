"""The baseline: a bare aiohttp handler that parses the same JSON and answers 201."""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


async def lead(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({"id": "x", "name": body.get("name", "")}, status=201)


async def serve(port: int) -> None:
    app = web.Application()
    app.router.add_post("/api/leads", lead)
    await serve_app(app, port)


async def serve_app(app: web.Application, port: int) -> None:
    """Serve `app` on 127.0.0.1:`port` until killed; say "listening" once it is."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("listening", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    from acd.runtime import event_loop_runner

    with event_loop_runner() as runner:
        runner.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
