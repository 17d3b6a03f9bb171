"""The floor under durable intake: what the customer's stack (aiohttp, SQLAlchemy 2 async,
aiosqlite) costs for a lead that is only parsed and committed, with nothing else.

One POST is one row in a SQLite file in WAL mode with `synchronous=NORMAL` (as acd's store),
written by group commit (the requests that arrive during a commit go in the next one, as
acd.api.intake does); the 201 leaves after the commit. No validation, no customer
recognition, no routing, no decision log, no middleware: whatever acd does beyond this
floor is its own cost, and the floor itself is the mandated frameworks' cost.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.bare_server import serve_app

LEADS = sa.Table(
    "leads",
    sa.MetaData(),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("id", sa.String(32), nullable=False, unique=True),
    sa.Column("body", sa.Text, nullable=False),
)


class GroupCommit:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.waiting: list[tuple[dict[str, Any], asyncio.Future[int]]] = []
        self.task: asyncio.Task[None] | None = None

    async def add(self, row: dict[str, Any]) -> int:
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting.append((row, answer))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self.drain())
        return await answer

    async def drain(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, []
            async with self.engine.begin() as conn:
                rows = await conn.execute(LEADS.insert().returning(LEADS.c.id, LEADS.c.seq), [r for r, _ in batch])
                seqs = {row.id: row.seq for row in rows}
            for row, answer in batch:
                answer.set_result(seqs[row["id"]])


def pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


async def serve(port: int, path: str) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    sa.event.listen(engine.sync_engine, "connect", pragmas)
    async with engine.begin() as conn:
        await conn.run_sync(LEADS.metadata.create_all)
    commits = GroupCommit(engine)

    async def lead(request: web.Request) -> web.Response:
        body = await request.json()
        row = {"id": uuid.uuid4().hex, "body": json.dumps(body)}
        seq = await commits.add(row)
        return web.json_response({"id": row["id"], "seq": seq, "name": body.get("name", "")}, status=201)

    app = web.Application()
    app.router.add_post("/api/leads", lead)
    await serve_app(app, port)


def main() -> None:
    from acd.runtime import event_loop_runner

    with event_loop_runner() as runner:
        runner.run(serve(int(sys.argv[1]), sys.argv[2]))


if __name__ == "__main__":
    main()
