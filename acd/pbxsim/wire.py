"""Test peer: AMI wire format and channel header blocks, as Asterisk 20 writes them.

Independent of ``acd.asterisk`` on purpose: the simulator must not share the code it is testing.
Every layout here is copied from ``shared/asterisk-transcripts`` (ami_basic, originate_callback,
queue_scenario, fastagi_ivr_ami).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

Headers = list[tuple[str, str]]

STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up", 7: "Busy"}
CAUSE_TXT = {
    0: "Unknown",
    16: "Normal Clearing",
    17: "User busy",
    19: "User alerting, no answer",
    34: "Circuit/channel congestion",
}
CHANNEL_VARS = ("ACD_LEAD_ID",)  # manager.conf: channelvars = ACD_LEAD_ID


def encode(headers: Headers) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in headers).encode() + b"\r\n"


def parse_action(block: bytes) -> Headers:
    headers: Headers = []
    for line in block.decode("utf-8", "replace").split("\r\n"):
        if not line:
            continue
        key, _, value = line.partition(":")
        headers.append((key.strip(), value[1:] if value.startswith(" ") else value))
    return headers


def get(headers: Headers, name: str, default: str | None = None) -> str | None:
    low = name.lower()
    return next((v for k, v in headers if k.lower() == low), default)


def get_all(headers: Headers, name: str) -> list[str]:
    low = name.lower()
    return [v for k, v in headers if k.lower() == low]


_uniq = itertools.count()
_epoch = int(time.time())


def new_uniqueid() -> str:
    return f"{_epoch}.{next(_uniq)}"


@dataclass(eq=False)
class Channel:
    """One Asterisk channel, with the fields every channel event prints."""

    name: str
    uniqueid: str
    linkedid: str
    state: int = 0
    cid_num: str = "<unknown>"
    cid_name: str = "<unknown>"
    conn_num: str = "<unknown>"
    conn_name: str = "<unknown>"
    context: str = "default"
    exten: str = "s"
    priority: int = 1
    language: str = "en"
    accountcode: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    tech: str = "Local"
    device: str = ""  # the device whose state this channel drives (PJSIP/mgr1, Local/x@ctx)
    application: str = ""
    app_data: str = ""
    bridge_id: str = ""
    created: float = field(default_factory=time.monotonic)
    hungup: bool = False

    @property
    def state_desc(self) -> str:
        return STATE_DESC.get(self.state, "Unknown")

    def block(self, prefix: str = "") -> Headers:
        """The standard channel block (``Channel .. Linkedid, ChanVariable``), e.g. ``Dest``-prefixed."""
        p = prefix
        headers: Headers = [
            (f"{p}Channel", self.name),
            (f"{p}ChannelState", str(self.state)),
            (f"{p}ChannelStateDesc", self.state_desc),
            (f"{p}CallerIDNum", self.cid_num),
            (f"{p}CallerIDName", self.cid_name),
            (f"{p}ConnectedLineNum", self.conn_num),
            (f"{p}ConnectedLineName", self.conn_name),
            (f"{p}Language", self.language),
            (f"{p}AccountCode", self.accountcode),
            (f"{p}Context", self.context),
            (f"{p}Exten", self.exten),
            (f"{p}Priority", str(self.priority)),
            (f"{p}Uniqueid", self.uniqueid),
            (f"{p}Linkedid", self.linkedid),
        ]
        headers += [(f"{p}ChanVariable", f"{var}={self.variables.get(var, '')}") for var in CHANNEL_VARS]
        return headers

    def chanvariable_originate(self) -> Headers:
        # OriginateResponse alone spells it ChanVariable(<channel>): (ami_basic).
        return [(f"ChanVariable({self.name})", f"{var}={self.variables.get(var, '')}") for var in CHANNEL_VARS]
