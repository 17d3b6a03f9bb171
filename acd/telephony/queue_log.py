"""Adapter: Asterisk-compatible queue_log lines, so the queue reports an office already runs
(queuestats, QueueMetrics, home-made scripts) keep working when the ACD routes the calls.

The format is app_queue's (Asterisk 20 `queue_log`, one event per line)::

    <epoch>|<callid>|<queue>|<agent>|<EVENT>|<data1>|<data2>|...

`callid` is the caller channel's Uniqueid, `queue` the contact's team (the ACD has one
queue; its teams play the part of Asterisk queues), `agent` the manager id (app_queue with
`log_membername_as_agent = yes` writes the member name there too), and `NONE` where
Asterisk writes it. Event data, as app_queue writes it:

    ENTERQUEUE       url|callerid|position
    CONNECT          holdtime|bridged channel uniqueid|ringtime
    RINGNOANSWER     ringtime in ms
    RINGCANCELED     ringtime in ms
    ABANDON          position|original position|waittime
    EXITWITHTIMEOUT  position|original position|waittime
    COMPLETECALLER   holdtime|calltime|original position   (the caller hung up)
    COMPLETEAGENT    holdtime|calltime|original position   (the manager hung up)
    PAUSE / UNPAUSE  reason                                 (queue NONE: the ACD pauses everywhere)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

log = logging.getLogger(__name__)


class QueueLog:
    """Appends lines to a file (or keeps them in `lines` when no path is given, for tests)."""

    def __init__(self, path: Path | None, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.lines: list[str] = []
        self._file: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8", buffering=1)  # line-buffered: a crash loses nothing

    def write(self, event: str, callid: str, queue: str, agent: str, *data: object, at: float | None = None) -> None:
        fields = [str(int(at if at is not None else self.clock())), callid or "NONE", queue or "NONE", agent or "NONE"]
        fields.append(event)
        fields += ["" if d is None else str(d).replace("|", "/").replace("\n", " ") for d in data]
        line = "|".join(fields)
        self.lines.append(line)
        if len(self.lines) > 10_000:
            del self.lines[:5_000]
        if self._file is not None:
            try:
                self._file.write(line + "\n")
            except OSError:
                log.exception("queue_log write failed")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


__all__ = ["QueueLog"]
