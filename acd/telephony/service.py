"""Adapter: Asterisk ⇄ core — the FastAGI server, the AMI client and what they translate.

    AMI DeviceStateChange / ExtensionStatus   → DeviceStateChanged(manager, busy)
    AMI Hangup (a caller's channel)           → ContactAbandoned (the core finishes an assigned one)
    AMI UserEvent CallbackResult              → callback attempt outcome
    FastAGI ivr / wait / answered / hangup    → ContactArrived, OfferAccepted, OfferFailed, ...
    OfferContact (call)                       → the waiting call's session rings the manager (Dial)
    OfferContact (callback)                   → AMI Originate of the manager's device
    WithdrawOffer                             → stop ringing (AMI Hangup of the ringing leg)

After every AMI (re)connect, and every `reconcile_interval`, the mirror is rebuilt from
Asterisk itself (DeviceStateList, ExtensionStateList, CoreShowChannels): a device state or a
Hangup lost while the link was down cannot leave a manager "busy" or a call "talking".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from acd.asterisk.ami import AmiClient, AmiError, AmiMessage, OriginateResult
from acd.asterisk.fastagi import AgiSession, FastAgiServer
from acd.config import Deployment
from acd.core import events as ev
from acd.core.errors import CoreError
from acd.core.model import Channel, Contact, ContactStatus, Manager, Presence
from acd.crm.identity import dial_digits
from acd.dispatcher import Dispatcher
from acd.runtime import cancel_and_wait
from acd.storage import Store
from acd.storage.telephony import TelephonyStore
from acd.telephony.callback_dialers import asterisk_machine
from acd.telephony.callbacks import Callbacks, CallbackSettings
from acd.telephony.calls import CallDesk, CallSettings
from acd.telephony.queue_log import QueueLog
from acd.telephony.servers import AmiServers, DeviceOwners

log = logging.getLogger(__name__)

# Device states that keep a manager from being offered a call (the phone unregistered counts).
BUSY_STATES = frozenset({"INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD", "UNAVAILABLE"})


def extension_busy(status: str) -> bool | None:
    """ExtensionStatus `Status` (a bit mask: 1 in use, 2 busy, 4 unavailable, 8 ringing, 16 on hold;
    0 idle; negative: the hint is gone) → busy, or None when it says nothing."""
    try:
        value = int(status)
    except ValueError:
        return None
    return None if value < 0 else value != 0


class TelephonyError(Exception):
    """A telephony action refused: `code` is stable (the API's error code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class AmiTarget:
    host: str
    port: int
    username: str
    secret: str = field(repr=False)
    name: str = "default"  # asterisk.servers[].name


class Telephony:
    def __init__(
        self,
        *,
        deployment: Callable[[], Deployment],
        store: Store,
        dispatcher: Dispatcher,
        calls: CallSettings,
        callbacks: CallbackSettings,
        queue_log: QueueLog,
        agi_host: str,
        agi_port: int,
        ami: AmiTarget | Sequence[AmiTarget] | None,
        ami_options: dict[str, Any] | None = None,
        reconcile_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.deployment = deployment
        self.dispatcher = dispatcher
        self.clock = clock
        self.queue_log = queue_log
        self.reconcile_interval = reconcile_interval
        self.tstore = TelephonyStore(store)
        self.ami_targets: list[AmiTarget] = [] if ami is None else [ami] if isinstance(ami, AmiTarget) else list(ami)
        self.ami_options = ami_options or {}
        self.ami: AmiClient | None = None  # the first server's client
        self.amis: dict[str, AmiClient] = {}  # every server's, by name
        self.owners = DeviceOwners()
        self.servers = AmiServers(self.amis, self.owners.owner)
        self.desk = CallDesk(
            dispatcher=dispatcher,
            store=store,
            tstore=self.tstore,
            deployment=deployment,
            settings=calls,
            queue_log=queue_log,
            clock=clock,
        )
        self.callbacks = Callbacks(
            dispatcher=dispatcher,
            store=store,
            tstore=self.tstore,
            settings=callbacks,
            queue_log=queue_log,
            ami=self._callback_client,
            clock=clock,
        )
        self.desk.callbacks = self.callbacks
        self.desk.hangup_channel = self._hangup_soon
        self.desk.server_of = self._server_of
        self.agi = FastAgiServer(host=agi_host, port=agi_port, deadline=calls.handler_deadline, grace=1.0)
        for name, (handler, deadline) in self.desk.routes().items():
            self.agi.route(name, handler, deadline)  # type: ignore[arg-type]
        self.resyncs = 0
        self.resynced = asyncio.Event()  # set after each resync (tests, readiness)
        self._live: dict[str, set[str]] = {}  # per server: devices with a live event since its last snapshot
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reconciler: asyncio.Task[None] | None = None
        self._dispatching: asyncio.Event | None = None  # cluster mode: set once this node dispatches
        self._once = True  # the once-only work runs here (one node: always; see join_cluster)
        dispatcher.subscribe(self._on_command)

    def join_cluster(self, dispatching: asyncio.Event) -> None:
        """Cluster mode (docs/deployment.md), before `start`. Every node runs its FastAGI server
        and AMI clients; a call is held by the node whose FastAGI session runs it (its name is in
        the contact's payload), and that node rings it when offered — `on_leaders_command` takes
        the offers and withdrawals of the dispatching node. What must happen once — device
        states → presence, the callback scheduler and dialler, reconciling managers' states —
        runs only on the node that dispatches, from the moment `dispatching` is set; a node
        stops dispatching only by exiting, so it never has to be handed back."""
        self._dispatching = dispatching
        self._once = False

    def on_leaders_command(self, cmd: ev.Command) -> None:
        """Cluster mode, while another node dispatches: its offers and withdrawals of calls."""
        self.desk.on_command(cmd)

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._dispatching is None:
            self.desk.recover()
            await self.callbacks.start()
        await self.agi.start()
        log.info("FastAGI listening on %s:%d", self.agi.host, self.agi.port)
        if self._dispatching is not None:
            # stable across restarts: a node back on the same host and port recovers its calls
            self.desk.node = f"{socket.gethostname()}:{self.agi.port}"
            self.desk.recover()
            self._spawn(self._when_dispatching(self._dispatching))
        for target in self.ami_targets:
            name = target.name

            async def resync(client: AmiClient, name: str = name) -> None:
                await self._resync(client, name)

            client = AmiClient(
                target.host, target.port, target.username, target.secret, on_connected=resync, **self.ami_options
            )
            client.on("DeviceStateChange", functools.partial(self._on_device_state, server=name))
            client.on("ExtensionStatus", functools.partial(self._on_extension_status, server=name))
            client.on("Hangup", functools.partial(self._on_hangup, server=name))
            client.on("DialBegin", functools.partial(self._on_dial_begin, server=name))
            client.on("UserEvent", self._on_user_event)
            self.amis[name] = client
            self.ami = self.ami or client
            await client.start(wait=False)  # Asterisk may come up later: the client keeps trying
        if self.amis and self.reconcile_interval > 0:
            self._reconciler = asyncio.create_task(self._reconcile_loop(), name="acd-ami-reconcile")

    async def _when_dispatching(self, dispatching: asyncio.Event) -> None:
        """Cluster mode: wait for this node to dispatch, then take up the once-only work —
        the callbacks (re-armed from the store as after a restart, and then every
        `ADOPT_EVERY` the requests other nodes stored, acd.telephony.callbacks) and the managers' device states."""
        await dispatching.wait()
        await self.callbacks.take_over()
        # Only now: `start` re-arms what the restore offered, from the board, with no await after
        # reading it, so no offer falls between the two and none is dialled twice.
        self._once = True
        for name, client in list(self.amis.items()):
            if client.connected:  # else its next connect resyncs
                try:
                    await self._resync(client, name)
                except AmiError as err:
                    log.warning("AMI resync of %s on taking over failed: %s", name, err)
        log.info("telephony: this node now runs the callbacks and the managers' device states")
        await self.callbacks.adopt_forever()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._reconciler is not None:
            with contextlib.suppress(Exception):
                await cancel_and_wait(self._reconciler)
        await self.agi.close()
        await self.callbacks.close()
        for client in self.amis.values():
            await client.close()
        for task in list(self._tasks):
            task.cancel()
        self.queue_log.close()

    # ---- the core's commands -----------------------------------------------------------

    def _on_command(self, cmd: ev.Command) -> None:
        self.desk.on_command(cmd)
        if self._once:
            self.callbacks.on_command(cmd)

    def observe(self, transitions: Iterable[ev.Transition]) -> None:
        """Presence transitions after their commit: PAUSE / UNPAUSE lines for queue_log."""
        for tr in transitions:
            if tr.new is Presence.PAUSED and tr.old is not Presence.PAUSED:
                self.queue_log.write("PAUSE", "NONE", "NONE", tr.manager_id, tr.reason or "", at=tr.at)
            elif tr.old is Presence.PAUSED and tr.new is not Presence.PAUSED:
                self.queue_log.write("UNPAUSE", "NONE", "NONE", tr.manager_id, "", at=tr.at)

    # ---- AMI ---------------------------------------------------------------------------

    def _managers_on(self, device: str) -> list[Manager]:
        return [m for m in self.dispatcher.board.managers.values() if m.device and m.device == device]

    def _device(self, device: str, busy: bool) -> None:
        if not self._once:
            return  # cluster mode: the dispatching node's own AMI clients report device states
        for m in self._managers_on(device):
            if m.device_busy != busy:
                self.dispatcher.post(ev.DeviceStateChanged(m.id, busy))

    def _report(self, server: str, device: str, state: str, busy: bool, *, live: bool) -> None:
        """A device state from `server`: counted only when the device lives there (see servers)."""
        if not self.owners.report(server, device, state):
            return
        if live:
            self._live.setdefault(server, set()).add(device)
        elif device in self._live.get(server, ()):
            return  # a live event since the snapshot was asked for is newer
        self._device(device, busy)

    def _on_device_state(self, msg: AmiMessage, server: str = "default") -> None:
        state = (msg.get("State", "") or "").upper()
        self._report(server, msg.get("Device", "") or "", state, state in BUSY_STATES, live=True)

    def _on_extension_status(self, msg: AmiMessage, server: str = "default") -> None:
        status = msg.get("Status", "") or ""
        busy = extension_busy(status)
        if busy is None:
            return
        state = "UNAVAILABLE" if int(status) & 4 else "INUSE" if busy else "NOT_INUSE"
        for device in (msg.get("Hint", "") or "").split("&"):
            if device and not device.startswith("Custom:"):
                self._report(server, device, state, busy, live=True)

    def _on_hangup(self, msg: AmiMessage, server: str | None = None) -> None:
        uniqueid, channel = msg.get("Uniqueid", "") or "", msg.get("Channel", "") or ""
        self.desk.on_hangup(uniqueid, channel, server)
        self.callbacks.on_hangup(uniqueid)

    def _on_dial_begin(self, msg: AmiMessage, server: str | None = None) -> None:
        if msg.get("Uniqueid"):
            self.desk.on_dial_begin(msg.get("Uniqueid", "") or "", msg.get("DestChannel", "") or "", server)

    def _on_user_event(self, msg: AmiMessage) -> None:
        if msg.get("UserEvent") == "CallbackResult":
            self.callbacks.on_result(
                msg.get("Contact", "") or "",
                msg.get("Attempt", "") or "",
                msg.get("DialStatus", "") or "",
                machine=asterisk_machine(msg.get("AMDStatus"), msg.get("AMDCause")),
            )

    async def _resync(self, client: AmiClient, server: str = "default") -> None:
        """Rebuild the mirror from one Asterisk server: device states, hints, live channels.

        A device that sent a live event since the snapshot was asked for keeps that newer
        state: list items may arrive after events that happened later. Only this server's
        calls are checked against its channels; callbacks against every server's."""
        self._live[server] = set()
        states = await client.send_list({"Action": "DeviceStateList"})
        for item in states.items:
            state = (item.get("State", "") or "").upper()
            self._report(server, item.get("Device", "") or "", state, state in BUSY_STATES, live=False)
        hints = await client.send_list({"Action": "ExtensionStateList"})
        for item in hints.items:
            status = item.get("Status", "") or ""
            busy = extension_busy(status)
            if busy is None:
                continue
            state = "UNAVAILABLE" if int(status) & 4 else "INUSE" if busy else "NOT_INUSE"
            for device in (item.get("Hint", "") or "").split("&"):
                if device and not device.startswith("Custom:"):
                    self._report(server, device, state, busy, live=False)
        channels = await client.send_list({"Action": "CoreShowChannels"})
        alive = {item.get("Uniqueid", "") or "" for item in channels.items}
        several = len(self.amis) > 1
        # callbacks are checked against this server's channels, plus those other servers made
        elsewhere = {leg for leg, name in self.servers.made_on.items() if name != server} if several else set()
        ended = self.desk.reconcile(alive, server if several else None) + self.callbacks.reconcile(alive | elsewhere)
        self.resyncs += 1
        self.resynced.set()
        if ended:
            log.warning("AMI resync: %d call(s) had ended while we were not told", ended)

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(self.reconcile_interval)  # a period, not a wait for progress
            for name, client in list(self.amis.items()):
                if not client.connected:
                    continue
                try:
                    await self._resync(client, name)
                except AmiError as err:
                    log.warning("AMI reconciliation of %s failed: %s", name, err)

    def _callback_client(self) -> AmiClient | None:
        if len(self.amis) > 1:
            return cast(AmiClient, self.servers)  # duck-typed: the dialer uses connected/wait_connected/originate/send
        return self.ami

    def client_for(self, server: str | None) -> AmiClient | None:
        """The AMI client of `server` (a call's), else the first."""
        return self.amis.get(server or "") or self.ami

    def _server_of(self, session: AgiSession) -> str:
        names = list(self.amis) or [t.name for t in self.ami_targets]
        wanted = session.query.get("server", "")
        if wanted in names:
            return wanted
        peer = session.peer_host
        by_host = [t.name for t in self.ami_targets if t.host == peer]
        if len(by_host) == 1:
            return by_host[0]
        return names[0] if names else ""

    def _hangup_soon(self, channel: str, server: str | None = None) -> None:
        client = self.client_for(server)
        if client is None or not client.connected:
            return

        async def hang() -> None:
            with contextlib.suppress(AmiError):
                await client.send({"Action": "Hangup", "Channel": channel, "Cause": "16"})

        task = asyncio.ensure_future(hang())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- transfers -----------------------------------------------------------------------

    async def transfer(
        self,
        contact: Contact,
        by: str,
        *,
        to_manager: str | None = None,
        to_team: str | None = None,
        pin_until: float | None = None,
    ) -> None:
        """Blind transfer. A call's caller is moved out of the manager's bridge by AMI Redirect to
        [acd-transfer] (Asterisk hangs up the manager's leg as the bridge ends), where AGI
        `transfer` holds them again; then the core re-queues the contact (ContactTransferred) and
        offers it to the new manager or team, whose phone rings like any offer. A contact that
        is not a live call only needs the core. Nothing changes when the core would refuse
        (checked first) or the Redirect fails."""
        event = ev.ContactTransferred(contact.id, by, to_manager, to_team, pin_until)
        call = self.desk.calls.get(contact.id)
        if call is None and contact.channel is Channel.CALL and not self.desk.holds(contact):
            raise TelephonyError("call_elsewhere", "the call is held by another node: transfer it there")
        if call is None:
            await self.dispatcher.submit(event)
            return
        if call.state != "talking":
            raise TelephonyError("not_talking", "the call is not connected to a manager now")
        refused = _transfer_refused(self.dispatcher.board, contact.id, by, to_manager, to_team)
        if refused is not None:
            raise refused
        client = self.client_for(call.server)
        if client is None or not client.connected:
            raise AmiError("AMI is not connected")
        reply = await client.send(
            {"Action": "Redirect", "Channel": call.channel, "Context": "acd-transfer", "Exten": "s", "Priority": "1"}
        )
        if not reply.ok:
            raise TelephonyError("redirect_failed", f"Asterisk did not move the call: {reply.message}")
        self.desk.transferring(call, to_manager or f"team:{to_team}")
        await self.dispatcher.submit(event)

    # ---- click-to-call -----------------------------------------------------------------

    async def click_to_call(self, contact: Contact, manager: Manager) -> OriginateResult:
        """Ring the manager's device (on the server their phone lives on), then dial the
        contact's phone from [acd-clicktocall]."""
        if not self.amis:
            raise AmiError("AMI is not configured")
        client = self.servers.client_for_device(manager.device)
        s = self.callbacks.settings
        number = dial_digits(contact.phone)  # the dialplan adds any prefix
        return await client.originate(
            [
                ("Channel", manager.device),
                ("Context", "acd-clicktocall"),
                ("Exten", "s"),
                ("Priority", "1"),
                ("Timeout", str(int(s.manager_ring * 1000))),
                ("CallerID", s.caller_id.format(number=number)),
                ("Variable", f"ACD_CONTACT={contact.id}"),
                ("Variable", f"ACD_CUSTOMER_DIAL={s.outbound_dial.format(number=number)}"),
                ("Variable", f"ACD_CUSTOMER_RING={int(s.customer_ring)}"),
            ]
        )


def _transfer_refused(
    board: Any, contact_id: str, by: str, to_manager: str | None, to_team: str | None
) -> CoreError | None:
    """The core's own refusal of ContactTransferred, found before the call is moved (the same
    codes: not_assigned, not_yours, bad_transfer, no_such_manager)."""
    current = board.contacts.get(contact_id)
    if current is None or current.status is not ContactStatus.ASSIGNED:
        return CoreError("not_assigned", f"contact {contact_id} is not assigned: nothing to transfer")
    if current.assigned_to != by:
        return CoreError("not_yours", f"contact {contact_id} is assigned to {current.assigned_to}, not {by}")
    if (to_manager is None) == (to_team is None) or to_manager == by:
        return CoreError("bad_transfer", "transfer to one other manager or to one team")
    if to_manager is not None and to_manager not in board.managers:
        return CoreError("no_such_manager", f"no manager {to_manager}")
    return None


class ObservedStore:
    """The dispatcher's persistence, plus a look at each committed batch of transitions."""

    def __init__(self, inner: Any, observers: list[Callable[[list[ev.Transition]], None]]) -> None:
        self._inner = inner
        self._observers = observers

    async def apply(self, contacts: Any, managers: Any, decisions: Any, transitions: Any) -> None:
        await self._inner.apply(contacts, managers, decisions, transitions)
        batch = list(transitions)
        for observe in self._observers:
            try:
                observe(batch)
            except Exception:
                log.exception("transition observer failed")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


__all__ = ["BUSY_STATES", "AmiTarget", "ObservedStore", "Telephony", "TelephonyError", "extension_busy"]
