"""Adapter: the classic-AGI renderer of the IVR interpreter, through pyst2 (stdin/stdout AGI).

For sites that prefer `AGI(script)` to FastAGI. It runs the same `IvrRun` as the FastAGI route,
so a flow sounds identical, then sets channel variables for the dialplan and exits (queueing is
left to the dialplan, e.g. app_queue with the answers as a priority)::

    same => n,AGI(/usr/bin/python3,-m,acd.telephony.agi_script,/etc/acd/acd.yaml,main)
    same => n,NoOp(${IVR_LANGUAGE} ${IVR_TEMPERATURE} ${IVR_PURPOSE} ${IVR_PRICE_TIER})

Recorded with Asterisk 20 (`pyst2_agi_classic`): pyst2's classic AGI works on Python 3, returns
`get_data()` digits without the "(timeout)" marker, and raises `AGISIGHUPHangup` after SIGHUP.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from acd.config import load_deployment
from acd.telephony.ivr import Ask, Done, IvrRun, Say

DTMF_KEYS = "0123456789*#"  # as acd.telephony.calls (not imported: this script starts per call)


class ClassicAgi(Protocol):
    env: dict[str, str]

    def stream_file(self, filename: str, escape_digits: str = "", sample_offset: int = 0) -> Any: ...
    def get_data(self, filename: str, timeout: int = 2000, max_digits: int = 255) -> str: ...
    def set_variable(self, name: str, value: str) -> Any: ...


def run(agi: ClassicAgi, run_: IvrRun) -> Done:
    """Drive `run_` with a pyst2-like AGI object: Say → STREAM FILE, Ask → GET DATA (one key)."""
    action = run_.step()
    while not isinstance(action, Done):
        if isinstance(action, Say):
            for sound in action.sounds:
                agi.stream_file(sound)
            action = run_.step()
        elif isinstance(action, Ask):
            # GET DATA plays one file (no "a&b" list: Asterisk answers -1, which pyst2 raises):
            # the parts before the last are streamed, any key answering (see calls.run_ivr).
            *before, last = action.sounds or ("",)
            key = ""
            for sound in before:
                key = agi.stream_file(sound, DTMF_KEYS) or ""
                if key:
                    break
            if not key:
                key = (agi.get_data(last, int(action.timeout * 1000), 1) or "")[:1]
            action = run_.step(key if key and key != "#" else None)
    agi.set_variable("IVR_LANGUAGE", action.language)
    for criterion, value in action.answers.items():
        agi.set_variable(f"IVR_{criterion.upper()}", value)
    return action


def main(argv: Sequence[str] | None = None, make_agi: Callable[[], ClassicAgi] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m acd.telephony.agi_script <deployment.yaml> [flow]", file=sys.stderr)
        return 2
    deployment = load_deployment(args[0])
    name = args[1] if len(args) > 1 else "main"
    flow = deployment.flows.get(name) or next(iter(deployment.flows.values()))
    if make_agi is None:
        from asterisk.agi import AGI  # pyst2

        make_agi = AGI
    agi = make_agi()
    dnid = agi.env.get("agi_dnid", "")  # "unknown" when the channel has none (pyst2_agi_classic)
    dialled = (dnid if dnid != "unknown" else "") or agi.env.get("agi_extension", "")
    try:
        run(agi, IvrRun(flow, dialled))
    except Exception as err:  # AGISIGHUPHangup and friends: the caller is gone
        if type(err).__name__.startswith("AGI"):
            return 0
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
