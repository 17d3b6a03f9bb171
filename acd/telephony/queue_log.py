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

A customer's erasure (acd.crm.erasure) masks their caller numbers in place and byte for
byte (`redact_file`: `*` over each character's bytes), never by writing a new file and
renaming it over the old one: the writer here, and Asterisk when the file is shared with it,
keep the file open for appending, a renamed-over file would take every line they append
afterwards with it, and nothing in another process (`acd crm erase`, Asterisk) can be told to
reopen. An append lands past the end, which `redact_file` never touches, and a line keeps its
length, so a reader that remembers its offset (tail -F, a report's importer) reads on
undisturbed. A crash halfway leaves some numbers masked and the rest as they were: erasing
again finishes the job.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TextIO

log = logging.getLogger(__name__)


class QueueLog:
    """Appends lines to a file (or keeps them in `lines` when no path is given, for tests)."""

    def __init__(self, path: Path | None, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.lines: list[str] = []
        self._lines_lock = threading.Lock()  # `redact` runs in a thread of an erasure
        self._file: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8", buffering=1)  # line-buffered: a crash loses nothing

    def write(self, event: str, callid: str, queue: str, agent: str, *data: object, at: float | None = None) -> None:
        fields = [str(int(at if at is not None else self.clock())), callid or "NONE", queue or "NONE", agent or "NONE"]
        fields.append(event)
        fields += ["" if d is None else str(d).replace("|", "/").replace("\n", " ") for d in data]
        line = "|".join(fields)
        with self._lines_lock:
            self.lines.append(line)
            if len(self.lines) > 10_000:
                del self.lines[:5_000]
        if self._file is not None:
            try:
                self._file.write(line + "\n")
            except OSError:
                log.exception("queue_log write failed")

    def redact(self, callids: Collection[str], numbers: Collection[str]) -> int:
        """`redact_line` over the lines kept in memory; the number of lines masked. The file
        is `redact_file`'s (blocking: run it in a thread)."""
        changed = 0
        with self._lines_lock:
            for i, line in enumerate(self.lines):
                masked = redact_line(line, callids, numbers)
                if masked != line:
                    self.lines[i], changed = masked, changed + 1
        return changed

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


MASK = "*"
SHORTEST_NUMBER = 5  # shorter "numbers" (an extension) would mask hold times and positions
_PHONE_CHARS = frozenset("+0123456789 -()")
_EVENT, _CALLERID = 4, 6  # the field indexes of the event and ENTERQUEUE's callerid


def digits(number: str) -> str:
    """The digits of a phone number as queue_log or a contact may spell it ("+7 (916) ...")."""
    return "".join(ch for ch in number if ch.isdigit())


def redact_line(line: str, callids: Collection[str], numbers: Collection[str]) -> str:
    """`line` with its caller number masked: ENTERQUEUE's callerid when the call is one of
    `callids` (whatever its spelling), and any event data field that is one of `numbers`
    (compared by digits). Each masked character becomes as many `*` as its UTF-8 bytes, so
    the line keeps its length in the file."""
    fields = line.split("|")
    wanted = {d for d in map(digits, numbers) if len(d) >= SHORTEST_NUMBER}
    hit = False
    for i in range(_EVENT + 1, len(fields)):
        value = fields[i]
        if not value or set(value) == {MASK}:
            continue
        ours = i == _CALLERID and fields[_EVENT] == "ENTERQUEUE" and fields[1] in callids
        if ours or (set(value) <= _PHONE_CHARS and digits(value) in wanted):
            fields[i], hit = MASK * len(value.encode("utf-8", "surrogateescape")), True
    return "|".join(fields) if hit else line


def redact_file(path: Path, callids: Collection[str], numbers: Collection[str]) -> int:
    """Mask the caller numbers `redact_line` finds in the queue_log file at `path`, in place
    (see the module's docstring); the number of lines masked, 0 when there is no file. Only
    whole lines are read: one being appended right now is left to the next erasure. Raises
    OSError."""
    changed = 0
    try:
        reader = path.open("rb")
    except FileNotFoundError:
        return 0
    with reader:
        # Not O_APPEND (os.pwrite would write at the end whatever the offset), not O_TRUNC.
        fd = os.open(path, os.O_WRONLY)
        try:
            at = 0
            for raw in reader:
                if not raw.endswith(b"\n"):
                    break
                line = raw[:-1].decode("utf-8", "surrogateescape")
                masked = redact_line(line, callids, numbers)
                if masked != line:
                    new = masked.encode("utf-8", "surrogateescape")
                    if len(new) != len(raw) - 1:  # never: checked, since a shifted byte would break lines
                        raise OSError(f"{path}: a masked line changed its length at byte {at}")
                    os.pwrite(fd, new, at)
                    changed += 1
                at += len(raw)
            if changed:
                os.fsync(fd)
        finally:
            os.close(fd)
    return changed


__all__ = ["QueueLog", "redact_file", "redact_line"]
