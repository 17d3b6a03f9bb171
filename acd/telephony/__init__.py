"""Adapter: phone calls through Asterisk — the IVR, the call's whole life, callbacks, queue_log.

    telephony = build_telephony(lambda: services.deployment, store, dispatcher)  # None when off
    await telephony.start()     # FastAGI server + AMI client (with resync)
    await telephony.close()

Modules: `ivr` (the pure, renderer-independent IVR interpreter), `calls` (FastAGI routes and a
call's life), `callbacks` (requests, scheduling, Originate), `service` (AMI translation and
wiring), `queue_log`, `prompts` (sound generation), `agi_script` (the classic-AGI renderer).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from acd.config import AsteriskServer, Deployment
from acd.dispatcher import Dispatcher
from acd.storage import Store
from acd.telephony.callbacks import CallbackSettings
from acd.telephony.calls import CallSettings
from acd.telephony.queue_log import QueueLog
from acd.telephony.service import AmiTarget, ObservedStore, Telephony

log = logging.getLogger(__name__)


def build_telephony(
    deployment: Callable[[], Deployment],
    store: Store,
    dispatcher: Dispatcher,
    *,
    clock: Callable[[], float] = time.time,
    environ: Mapping[str, str] | None = None,
    force: bool = False,
    **overrides: Any,
) -> Telephony | None:
    """The telephony adapter for `deployment`'s `asterisk` section, or None when it is not enabled.

    AMI is used only when its secret is in the environment (`asterisk.ami.secret_env`, or each of
    `asterisk.servers`' own); without it inbound calls still work (they need FastAGI only). `overrides` replace call or
    callback settings by name (tests use short rings and waits)."""
    dep = deployment()
    a = dep.asterisk
    if not (a.enabled or force):
        return None
    env = os.environ if environ is None else environ
    calls = CallSettings(
        handler_deadline=a.handler_deadline,
        ring_time=a.ring_time,
        max_wait=a.max_wait,
        announce_every=a.announce_every,
        callback_key=a.callback_key or "",
        overflow=a.overflow,
        announce_wait=a.announce_wait,
        average_handle=a.average_handle,
        voicemail_max=a.voicemail_max,
    )
    callbacks = CallbackSettings(
        max_attempts=a.callback_attempts,
        backoff=a.callback_backoff,
        manager_ring=a.ring_time,
        outbound_dial=a.outbound_dial,
        machine_detection=a.callback_machine_detection,
        languages=dep.languages,
    )
    call_fields = set(CallSettings.__dataclass_fields__)
    cb_fields = {f"callback_{k}" for k in CallbackSettings.__dataclass_fields__}
    calls = _with(calls, {k: v for k, v in overrides.items() if k in call_fields})
    callbacks = _with(callbacks, {k[9:]: v for k, v in overrides.items() if k in cb_fields})
    extra = set(overrides) - call_fields - cb_fields - {"ami_options", "agi_port", "reconcile_interval", "ami_port"}
    if extra:
        raise TypeError(f"unknown telephony overrides: {', '.join(sorted(extra))}")
    targets: list[AmiTarget] = []
    for server in a.servers or (AsteriskServer("default", a.ami),):
        secret = server.ami.secret or env.get(server.ami.secret_env)
        if not secret:
            log.warning("Asterisk server %s: no AMI secret in $%s, AMI not used", server.name, server.ami.secret_env)
            continue
        port = server.ami.port if a.servers else overrides.get("ami_port", server.ami.port)
        targets.append(AmiTarget(server.ami.host, port, server.ami.username, secret, server.name))
    return Telephony(
        deployment=deployment,
        store=store,
        dispatcher=dispatcher,
        calls=calls,
        callbacks=callbacks,
        queue_log=QueueLog(Path(a.queue_log) if a.queue_log else None, clock),
        agi_host=a.fastagi.host,
        agi_port=overrides.get("agi_port", a.fastagi.port),
        ami=targets,
        ami_options=overrides.get("ami_options"),
        reconcile_interval=overrides.get("reconcile_interval", a.reconcile_interval),
        clock=clock,
    )


def _with(settings: Any, changes: dict[str, Any]) -> Any:
    from dataclasses import replace

    return replace(settings, **changes) if changes else settings


__all__ = ["ObservedStore", "Telephony", "build_telephony"]
