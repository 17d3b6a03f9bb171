"""Telephony: 500 FastAGI sessions held at once (command round trip) and AMI events per second,
each next to a bare asyncio TCP baseline measured in the same run on the same machine."""

from __future__ import annotations

import asyncio
import random
import resource
import time

from acd.asterisk.ami import AmiClient, AmiMessage
from acd.asterisk.fastagi import AgiSession, FastAgiServer
from acd.runtime import settle_memory

SESSIONS = 500
COMMANDS = 20  # round trips per session, all sessions open at once
GAP = 0.2  # a session waits 0..GAP s between commands (a prompt playing): ~5,000 commands/s in all
AMI_EVENTS = 50_000


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * SESSIONS + 256))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def _asterisk_side(port: int, i: int, started: asyncio.Event) -> None:
    """What Asterisk does on a FastAGI call: the env block, then one reply line per command."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    env = {"agi_network": "yes", "agi_network_script": "bench", "agi_channel": f"PJSIP/t-{i:08x}"}
    writer.write("".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n")
    while line := await reader.readline():
        writer.write(b"200 result=1 (x)\n" if line.startswith(b"GET VARIABLE") else b"200 result=1\n")
    writer.close()


async def fastagi() -> dict[str, float]:
    rtts: list[float] = []
    held = 0
    peak = 0
    all_in = asyncio.Event()

    async def handler(session: AgiSession) -> None:
        nonlocal held, peak
        held += 1
        peak = max(peak, held)
        if held == SESSIONS:
            all_in.set()
        await all_in.wait()  # every session open at the same time
        rng = random.Random(id(session))
        for _ in range(COMMANDS):
            await asyncio.sleep(rng.uniform(0, GAP))  # the caller listens to a prompt
            t0 = time.perf_counter()
            await session.get_variable("ACD_CONTACT")
            rtts.append(time.perf_counter() - t0)
        held -= 1

    server = FastAgiServer({"bench": handler}, deadline=60)
    await server.start()
    started = asyncio.Event()
    t0 = time.perf_counter()
    await asyncio.gather(*(_asterisk_side(server.port, i, started) for i in range(SESSIONS)))
    wall = time.perf_counter() - t0
    await server.close()
    return {
        "fastagi_sessions_held_sessions": float(peak),
        "fastagi_rtt_p50_ms": percentile(rtts, 50) * 1000,
        "fastagi_rtt_p99_ms": percentile(rtts, 99) * 1000,
        "fastagi_commands_per_s": len(rtts) / wall,
    }


async def echo_baseline() -> dict[str, float]:
    """The same shape on a bare asyncio TCP echo: 500 connections, 20 line round trips each."""
    rtts: list[float] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line)
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ready = asyncio.Barrier(SESSIONS) if hasattr(asyncio, "Barrier") else None

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if ready is not None:
            await ready.wait()
        rng = random.Random(id(writer))
        for _ in range(COMMANDS):
            await asyncio.sleep(rng.uniform(0, GAP))
            t0 = time.perf_counter()
            writer.write(b"GET VARIABLE ACD_CONTACT\n")
            await reader.readline()
            rtts.append(time.perf_counter() - t0)
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(SESSIONS)))
    wall = time.perf_counter() - t0
    server.close()
    await server.wait_closed()
    return {
        "echo_rtt_p50_ms": percentile(rtts, 50) * 1000,
        "echo_rtt_p99_ms": percentile(rtts, 99) * 1000,
        "echo_round_trips_per_s": len(rtts) / wall,
    }


def _event(i: int) -> bytes:
    state = "INUSE" if i % 2 else "NOT_INUSE"
    head = "Event: DeviceStateChange\r\nPrivilege: call,all\r\n"
    return f"{head}Device: PJSIP/{100 + i % 50}\r\nState: {state}\r\n\r\n".encode()


async def _ami_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A minimal Asterisk: banner, Login accepted, then a burst of DeviceStateChange events."""
    writer.write(b"Asterisk Call Manager/9.0.0\r\n")
    block = await reader.readuntil(b"\r\n\r\n")
    aid = next((ln.split(b": ", 1)[1] for ln in block.split(b"\r\n") if ln.startswith(b"ActionID")), b"")
    writer.write(b"Response: Success\r\nActionID: " + aid + b"\r\nMessage: Authentication accepted\r\n\r\n")
    burst = b"".join(_event(i) for i in range(AMI_EVENTS))
    for k in range(0, len(burst), 65536):
        writer.write(burst[k : k + 65536])
        await writer.drain()
    await reader.read()  # until the client logs off


async def ami() -> dict[str, float]:
    server = await asyncio.start_server(_ami_peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    busy: dict[str, bool] = {}
    got = 0
    done = asyncio.Event()
    t0 = 0.0

    def on_state(msg: AmiMessage) -> None:  # what the adapter does per event: translate, compare
        nonlocal got
        busy[msg.get("Device") or ""] = (msg.get("State") or "") in ("INUSE", "BUSY", "RINGING")
        got += 1
        if got == AMI_EVENTS:
            done.set()

    client = AmiClient("127.0.0.1", port, "acd", "x", ping_interval=60)
    client.on("DeviceStateChange", on_state)
    t0 = time.perf_counter()
    await client.start()
    await asyncio.wait_for(done.wait(), 60)
    elapsed = time.perf_counter() - t0
    await client.close(logoff=False)
    server.close()
    await server.wait_closed()

    # Baseline: the same bytes over a bare asyncio connection, only split into messages.
    async def bare_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        burst = b"".join(_event(i) for i in range(AMI_EVENTS))
        for k in range(0, len(burst), 65536):
            writer.write(burst[k : k + 65536])
            await writer.drain()
        writer.close()

    bare = await asyncio.start_server(bare_peer, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", bare.sockets[0].getsockname()[1])
    t1 = time.perf_counter()
    count, buffer = 0, b""
    while chunk := await reader.read(65536):
        buffer += chunk
        parts = buffer.split(b"\r\n\r\n")
        count += len(parts) - 1
        buffer = parts[-1]
    bare_elapsed = time.perf_counter() - t1
    writer.close()
    bare.close()
    await bare.wait_closed()
    return {
        "ami_events_per_s": AMI_EVENTS / elapsed,
        "ami_bare_tcp_messages_per_s": count / bare_elapsed,
    }


async def measure() -> dict[str, float]:
    _raise_fd_limit()
    out = await fastagi()
    out.update(await echo_baseline())
    out.update(await ami())
    return out


def run() -> dict[str, float]:
    settle_memory()  # as `acd serve` does once it has started
    return asyncio.run(measure())


if __name__ == "__main__":
    for k, v in run().items():
        print(k, round(v, 3))
