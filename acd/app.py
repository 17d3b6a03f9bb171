"""Composition root: the one place that builds everything and runs one event loop.

config → store → switchboard (restored) → dispatcher → HTTP API, web panels, CRM,
telephony (FastAGI + AMI), e-mail / notifications / Twilio — each only when configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import Gauge

from acd.api.app import Services, build_app
from acd.api.cluster import RELAY
from acd.api.crm import CRM
from acd.api.crm_sync import CRM_SYNC
from acd.api.messaging import start_messaging
from acd.api.privacy import erase as _erase_route  # noqa: F401  (imported for its routes)
from acd.api.proxies import behind_proxies
from acd.clock import SteadyClock
from acd.cluster import ClusterDispatcher, ClusterSettings, cluster_dispatcher, settings_for
from acd.cluster.relay import Relay
from acd.config import ConfigError, Deployment, load_deployment
from acd.core import events as ev
from acd.core.model import Presence
from acd.core.switchboard import Switchboard
from acd.crm.external import ExternalSync, FinishedFeed, build_adapter
from acd.crm.provider import DealRatings
from acd.crm.rerouting import Rerouting
from acd.crm.service import CrmService, rating_params
from acd.dispatcher import Dispatcher
from acd.metrics import Metrics
from acd.runtime import settle_memory
from acd.storage import Store, default_sqlite_url, open_store
from acd.storage.crm import CrmStore
from acd.telephony import ObservedStore, Telephony, build_telephony
from acd.telephony.api import TELEPHONY, answer_transfers
from acd.web import install_web
from acd.web.live import HUB

log = logging.getLogger("acd")
DATA_DIR = Path("data")
SHUTDOWN_GRACE = 10.0


def database_url(deployment: Deployment, override: str | None) -> str:
    return override or deployment.server.db_url or default_sqlite_url(DATA_DIR)


@dataclass
class Server:
    deployment: Deployment
    store: Store
    dispatcher: Dispatcher
    services: Services
    app: web.Application
    telephony: Telephony | None = None
    relay: Relay | None = None  # cluster mode: requests passed on to the node that can carry them out

    async def close(self) -> None:
        if self.telephony is not None:
            await self.telephony.close()
        if self.relay is not None:
            await self.relay.close()
        await self.dispatcher.stop()
        await self.store.close()


async def build(
    deployment: Deployment,
    store: Store,
    *,
    demo: bool = False,
    clock: Callable[[], float] = time.time,
    cluster: ClusterSettings | None = None,
) -> Server:
    """Seed the configured managers the store does not know yet, rebuild the routing state
    from the store and start the dispatcher."""
    known = {m.id: m for m in await store.load_managers()}
    now = clock()
    for m in deployment.managers:
        if m.id not in known:
            seeded = replace(m, load={})
            if demo:
                seeded.presence, seeded.presence_since, seeded.last_heartbeat = Presence.AVAILABLE, now, now
            await store.save_manager(seeded)
            known[m.id] = seeded
    ratings = DealRatings(rating_params(deployment), now)
    board = Switchboard(deployment.policy, ratings)
    transition_observers: list[Callable[[list[ev.Transition]], None]] = []
    persistence = ObservedStore(store, transition_observers) if deployment.asterisk.enabled else store
    external = _external_crm(deployment, store, lambda: services.deployment, clock)
    dispatcher = Dispatcher(board, FinishedFeed(persistence, external) if external else persistence, clock)
    if cluster is not None:  # several nodes: this one dispatches only while it holds the lock
        dispatcher = cluster_dispatcher(cluster, deployment, store, dispatcher, ratings)
    await dispatcher.start(await store.load_open_contacts(), list(known.values()))
    metrics = Metrics(lambda: dispatcher.board, clock)
    dispatcher.subscribe(metrics.observe)
    services = Services(deployment=deployment, store=store, dispatcher=dispatcher, metrics=metrics, clock=clock)
    crm = CrmService(CrmStore(store), lambda: services.deployment, lambda: dispatcher.board.managers, ratings, clock)
    try:
        await crm.recompute()
    except Exception:  # the server must still start: offers use configured proficiency until it works
        log.exception("ratings recomputation failed at start; the hourly one retries")
    crm.external = external
    services.enrich = crm.enrich
    services.intake.crm = crm

    async def reload() -> Deployment:
        fresh = load_deployment(deployment.path)
        await dispatcher.submit(ev.PolicyReloaded(fresh.policy))
        services.deployment = fresh
        log.info("configuration reloaded: policy %s", fresh.policy.version)
        return fresh

    services.reload = reload
    app = build_app(services)
    app[CRM] = crm
    app.cleanup_ctx.append(_recompute_ratings_periodically(crm))
    crm.rerouting = Rerouting(crm, dispatcher, clock)
    app.cleanup_ctx.append(crm.rerouting.running)
    if external is not None:
        app.cleanup_ctx.append(external.running)  # the push outbox's worker
        app[CRM_SYNC] = external
    install_web(app, services)
    if services.deployment.server.trusted_proxies:  # outermost: every limit counts the real client
        app.middlewares.insert(0, behind_proxies(services.deployment.server.trusted_proxies))
    relay: Relay | None = None
    if isinstance(dispatcher, ClusterDispatcher):
        dispatcher.follow(app[HUB].on_command)  # offers made on the leader reach panels on this node
        dispatcher.export_metrics(metrics.registry)
        relay = app[RELAY] = await open_relay(dispatcher)
    telephony = build_telephony(lambda: services.deployment, store, dispatcher, clock=clock)
    if telephony is not None:
        telephony.desk.enrich = telephony.callbacks.enrich = getattr(services, "enrich", None)
        telephony.desk.known = _known_by_crm(crm)
        transition_observers.append(telephony.observe)
        app[TELEPHONY] = telephony
        if isinstance(dispatcher, ClusterDispatcher):  # calls held here, offered by whichever node dispatches
            telephony.join_cluster(dispatcher.elected)
            dispatcher.follow(telephony.on_leaders_command)
            dispatcher.calls_ended.append(telephony.desk.ended_elsewhere)
        await telephony.start()
        if relay is not None and telephony.desk.node is not None:
            relay.names.add(telephony.desk.node)  # the name its calls carry: transfers come here
            answer_transfers(relay, services, telephony)
        if isinstance(dispatcher, ClusterDispatcher) and telephony.desk.node is not None:
            dispatcher.hold_calls(telephony.desk.node)  # tells the dispatching node this one is alive
    await start_messaging(app)  # e-mail intake and notifications, when configured
    return Server(deployment, store, dispatcher, services, app, telephony, relay)


async def open_relay(dispatcher: ClusterDispatcher) -> Relay:
    s = dispatcher.settings
    relay = Relay(s.url, s.schema, s.node, lambda: dispatcher.leading)
    await relay.open()
    return relay


def _external_crm(
    deployment: Deployment, store: Store, current: Callable[[], Deployment], clock: Callable[[], float]
) -> ExternalSync | None:
    """The office's own CRM (`crm.external`), when configured: look-ups while routing and
    the outbox of finished contacts. Its mappings follow configuration reloads."""
    if deployment.crm_external is None:
        return None
    return ExternalSync(
        build_adapter(deployment.crm_external),
        store,
        lambda: current().crm_external,
        lambda: current().crm.default_region,
        clock,
    )


RATINGS_RECOMPUTE_EVERY = 3600.0  # seconds: untouched leads turn into losses as they age


def _known_by_crm(crm: CrmService) -> Callable[[str], Awaitable[dict[str, str]]]:
    """What a repeat caller already answered: the CRM recognises the caller ID in any usual
    format (+7 / 8 prefix, spaces) and keeps the customer's latest answers."""

    async def known(caller_id: str) -> dict[str, str]:
        customer = await crm.recognise(caller_id)
        return dict(customer.criteria) if customer is not None else {}

    return known


def _recompute_ratings_periodically(crm: CrmService) -> Callable[[web.Application], AsyncIterator[None]]:
    """Ratings are updated as deals close; a lead nobody touched only becomes a loss by
    growing old, which no event announces, so the whole table is recomputed every hour."""

    async def ctx(_: web.Application) -> AsyncIterator[None]:
        async def every() -> None:
            while True:
                await asyncio.sleep(RATINGS_RECOMPUTE_EVERY)
                try:
                    await crm.recompute()
                except Exception:
                    log.exception("periodic ratings recomputation failed; the next one retries")

        task = asyncio.create_task(every(), name="acd-ratings-recompute")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


LOST_LOCK_EXIT = 3  # the exit status of a node that lost the dispatcher lock (its supervisor restarts it)
SHUTDOWN_LIMIT = 20.0  # seconds: a shutdown that takes longer is stuck
SHUTDOWN_STUCK_EXIT = 4  # the exit status of a server whose shutdown got stuck


def _cluster_settings(url: str, port: int | None, node_grace: float) -> ClusterSettings:
    try:
        return settings_for(url, port, node_grace=node_grace)
    except ValueError as err:
        raise ConfigError([f"--cluster: {err}"]) from None


def _exit_stuck() -> None:
    """A server asked to stop must stop, even when some part of it hangs: log where every
    task is waiting (to find the part), then end at once, as after kill -9, which it
    survives: every acknowledged write is committed, and the writer process ends with its
    input."""
    tasks = "\n".join(f"{task.get_name()}: {' <- '.join(_awaiting(task))}" for task in asyncio.all_tasks())
    log.critical(
        "shutdown did not finish within %.0f s; ending now. Tasks (innermost await first):\n%s", SHUTDOWN_LIMIT, tasks
    )
    logging.shutdown()
    os._exit(SHUTDOWN_STUCK_EXIT)


def _awaiting(task: asyncio.Task[Any]) -> list[str]:
    """Where a suspended task waits: its chain of awaits (a task's own stack shows only the
    outermost coroutine), innermost first."""
    chain = []
    coro: Any = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return chain[::-1]


async def serve(
    config: Path, db_url: str | None, host: str | None, port: int | None, demo: bool, cluster: bool = False
) -> None:
    deployment = load_deployment(config)
    url = database_url(deployment, db_url)
    wanted = cluster or deployment.server.cluster
    settings = _cluster_settings(url, port, deployment.server.node_grace) if wanted else None
    # One node: durations follow the monotonic clock (acd.clock). Several: timestamps cross
    # processes (an offer's expiry set on the dispatching node is rung on another), so every
    # node keeps to the wall clock they share.
    clock = time.time if settings is not None else SteadyClock()
    server = await build(
        deployment, await open_store(url, writer_process=True), demo=demo, clock=clock, cluster=settings
    )
    if isinstance(clock, SteadyClock):
        Gauge(
            "acd_wall_clock_step_seconds",
            "How far the wall clock was stepped since start: stored times and hours are off by this until a restart",
            registry=server.services.metrics.registry,
        ).set_function(clock.stepped)
    runner = web.AppRunner(server.app, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE, access_log=None)
    await runner.setup()
    bind_host = host or deployment.server.host
    bind_port = port if port is not None else deployment.server.port
    site = web.TCPSite(runner, bind_host, bind_port)
    await site.start()
    log.info("ACD server listening on http://%s:%d (policy %s)", bind_host, bind_port, deployment.policy.version)
    print(f"ACD server listening on http://{bind_host}:{bind_port}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    reloads: set[asyncio.Task[None]] = set()

    def on_hup() -> None:
        async def run() -> None:
            try:
                await server.services.reload()  # type: ignore[misc]
            except ConfigError as err:
                for problem in err.problems:
                    log.error("reload refused: %s", problem)
            except Exception:  # a task's exception would otherwise surface only when it is collected
                log.exception("reload failed; the running configuration stays")

        reloads.add(task := loop.create_task(run()))
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    settle_memory()  # after the signal handlers: a SIGTERM meanwhile still shuts down gracefully
    lost = server.dispatcher.lost if isinstance(server.dispatcher, ClusterDispatcher) else asyncio.Event()
    _, pending = await asyncio.wait(
        [loop.create_task(stop.wait()), loop.create_task(lost.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    for task in pending:
        task.cancel()
    log.info("shutting down: finishing requests in flight")

    async def close() -> None:
        # Stop accepting, let requests in flight finish, then drain the dispatcher so nothing
        # is left half-written.
        await runner.cleanup()
        await server.close()

    closing = loop.create_task(close())
    await asyncio.wait([closing], timeout=SHUTDOWN_LIMIT)
    if not closing.done():
        _exit_stuck()
    closing.result()
    if lost.is_set():
        raise SystemExit(LOST_LOCK_EXIT)
