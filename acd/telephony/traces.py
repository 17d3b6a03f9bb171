"""Adapter: an erased customer's traces in the telephony's files (acd.crm.erasure): their
caller numbers in the queue_log file (and its rotated copies beside it), and their voicemail
recordings under Asterisk's sounds directory.

A file that cannot be cleaned is reported, never skipped in silence: a compressed rotated
queue_log (it cannot be masked in place), a recording with no `asterisk.sounds_dir` to find
it under, a file the server may not write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from acd.config import Deployment
from acd.crm.erasure import Kept, Traces
from acd.telephony.queue_log import QueueLog, redact_file

VOICEMAIL = "acd/voicemail/{uniqueid}.wav"  # acd.telephony.calls records there
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z", ".zip")
# queue_log.1, queue_log-20261201, queue_log.1.gz: what logrotate leaves
_ROTATED = re.compile(r"[.-][0-9][0-9.-]*?(\.(gz|bz2|xz|zst|lz4|Z|zip))?")


@dataclass(frozen=True, slots=True)
class TelephonyFiles:
    """`queue_log`: the file this server writes (None: none); `sounds_dir`: Asterisk's
    sounds directory as this server sees it (None: the recordings are on the PBX only);
    `writer`: the running server's QueueLog, whose lines in memory are masked too."""

    queue_log: Path | None
    sounds_dir: Path | None
    writer: QueueLog | None = None

    @classmethod
    def of(cls, deployment: Deployment, writer: QueueLog | None = None) -> TelephonyFiles:
        a = deployment.asterisk
        return cls(Path(a.queue_log) if a.queue_log else None, Path(a.sounds_dir) if a.sounds_dir else None, writer)

    def erase(self, traces: Traces) -> tuple[dict[str, int], list[Kept]]:
        """acd.crm.erasure.FileEraser: queue_log lines masked, recordings deleted."""
        kept: list[Kept] = []
        lines = self._queue_log(traces, kept)
        return {"queue_log_lines": lines, "recordings": self._recordings(traces, kept)}, kept

    def _queue_log(self, traces: Traces, kept: list[Kept]) -> int:
        if self.writer is not None:
            self.writer.redact(traces.uniqueids, traces.phones)
        if self.queue_log is None or not (traces.uniqueids or traces.phones):
            return 0
        changed = 0
        for path in queue_logs(self.queue_log):
            if path.name.endswith(COMPRESSED):
                kept.append(Kept(str(path), "compressed: cannot be masked in place; unpack, erase again, or delete it"))
                continue
            try:
                changed += redact_file(path, traces.uniqueids, traces.phones)
            except OSError as err:
                kept.append(Kept(str(path), f"cannot be masked: {err.strerror or err}"))
        return changed

    def _recordings(self, traces: Traces, kept: list[Kept]) -> int:
        named = set(traces.recordings)
        if self.sounds_dir is None:
            # where the PBX keeps them is unknown here: each one the contacts name is reported
            kept += [Kept(name, "asterisk.sounds_dir is not set: delete it on the PBX") for name in sorted(named)]
            return 0
        # a recording named only by its call (contacts erased before the name was kept) is
        # tried too: a file named after the customer's call is theirs
        guessed = {VOICEMAIL.format(uniqueid=u) for u in traces.uniqueids} - named
        deleted = 0
        for name in sorted(named | guessed):
            path = _under(self.sounds_dir, name)
            if path is None:
                kept.append(Kept(name, "not a file name under asterisk.sounds_dir: delete it by hand"))
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                if name in named and not path.parent.is_dir():
                    kept.append(Kept(str(path), "its directory is not there: is asterisk.sounds_dir right?"))
                continue  # already deleted (a repeated erasure), or the caller said nothing
            except OSError as err:
                kept.append(Kept(str(path), f"cannot be deleted: {err.strerror or err}"))
                continue
            deleted += 1
        return deleted


def queue_logs(path: Path) -> list[Path]:
    """The queue_log file and its rotated copies beside it (logrotate's numbers or dates,
    compressed or not)."""
    try:
        siblings = sorted(p for p in path.parent.iterdir() if p.name.startswith(path.name) and p != path)
    except OSError:
        siblings = []
    return [path, *(p for p in siblings if _ROTATED.fullmatch(p.name[len(path.name) :]))]


def _under(root: Path, name: str) -> Path | None:
    """`root`/`name` when `name` is a plain relative path (no "..", not absolute): the names
    come from the database, and an erasure must delete nothing outside the sounds."""
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or ".." in pure.parts or "\x00" in name:
        return None
    return root.joinpath(*pure.parts)


__all__ = ["TelephonyFiles", "queue_logs"]
