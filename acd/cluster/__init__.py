"""Adapter: several `acd serve` processes on one PostgreSQL, one dispatcher at a time.

    leader.py   the PostgreSQL advisory lock that elects the dispatching node
    bus.py      events, outcomes and wake-ups between nodes (a table and LISTEN/NOTIFY)
    codec.py    core events and commands ⇄ JSON
    effects.py  the leader's offers and notices as another node hears them, none missed
    liveness.py which nodes are alive; the calls of a node that is gone are ended
    node.py     the dispatcher as a node sees it: the real loop when leading, the bus otherwise
    relay.py    a request for one node (the call's holder, the dispatcher) and its answer

docs/deployment.md describes a deployment and what happens on failover.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from acd.cluster.liveness import DEFAULT_GRACE
from acd.cluster.node import ClusterDispatcher, ClusterSettings, Mirror
from acd.config import Deployment, load_deployment
from acd.core.policy import RoutingPolicy
from acd.core.ratings import RatingProvider
from acd.core.switchboard import Switchboard
from acd.dispatcher import Dispatcher
from acd.storage import Store

__all__ = ["ClusterDispatcher", "ClusterSettings", "Mirror", "cluster_dispatcher", "settings_for"]


def settings_for(
    url: str, port: int | None = None, schema: str | None = None, node_grace: float = DEFAULT_GRACE
) -> ClusterSettings:
    """Cluster mode for the database at `url`; refuses anything but PostgreSQL with a
    `ValueError` that says why."""
    if not url.split("://", 1)[0].startswith("postgres"):
        raise ValueError(
            "cluster mode needs PostgreSQL (--db postgresql+asyncpg://user@host/db): SQLite is one file for one process"
        )
    return ClusterSettings(url, f"{socket.gethostname()}:{port or '-'}:{os.getpid()}", schema, node_grace)


def cluster_dispatcher(
    settings: ClusterSettings,
    deployment: Deployment,
    store: Store,
    single: Dispatcher,
    ratings: RatingProvider,
) -> ClusterDispatcher:
    """The node's dispatcher in place of `single` (same persistence, same clock): it
    dispatches only while this node holds the lock."""

    def board(policy: RoutingPolicy) -> Switchboard:
        return Switchboard(policy, ratings)

    reload: Callable[[], RoutingPolicy] = lambda: load_deployment(deployment.path).policy  # noqa: E731
    return ClusterDispatcher(board, store, single.store, settings, deployment.policy, reload, single.clock)
