"""Test peer: the Asterisk side of FastAGI — connects to *our* server and answers like Asterisk 20.

Replies, env block and hangup behaviour follow ``fastagi_ivr``: ``200 result=N``; STREAM FILE adds
``endpos=`` (8 kHz samples); keys are ASCII codes; a missing file is ``200 result=-1 endpos=0`` and
makes ``AGISTATUS=FAILURE``; GET DATA answers ``200 result=12`` / ``200 result= (timeout)`` /
``200 result=9 (timeout)``; unknown EXEC application ``-2``; ``510`` unknown command; multi-line
``520`` usage. When the channel hangs up the running command ends (``-1``), and the unsolicited
``HANGUP`` line follows tens of ms later (or alone while idle) unless ``AGISIGHUP=no``; afterwards
channel commands get ``511`` and GET/SET VARIABLE, VERBOSE and NOOP still work.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .scenario import HangUp, Press, Silence, Step
from .wire import Channel, Headers

if TYPE_CHECKING:
    from .pbx import PbxSim

DEAD_OK = {"GET VARIABLE", "GET FULL VARIABLE", "SET VARIABLE", "NOOP", "VERBOSE", "DATABASE GET", "DATABASE PUT"}
R511 = "511 Command Not Permitted on a dead channel or intercept routine"
GET_DATA_USAGE = [
    "520-Invalid command syntax.  Proper usage follows:",
    "Stream the given <replaceable>file</replaceable>, and receive DTMF data.",
    "Returns the digits received from the channel at the other end.",
    "520 End of proper usage.",
]
COMMANDS = [
    "ANSWER",
    "VERBOSE",
    "GET FULL VARIABLE",
    "GET VARIABLE",
    "SET VARIABLE",
    "SET MUSIC",
    "CHANNEL STATUS",
    "STREAM FILE",
    "WAIT FOR DIGIT",
    "GET DATA",
    "GET OPTION",
    "SAY DIGITS",
    "SAY NUMBER",
    "EXEC",
    "NOOP",
    "HANGUP",
    "DATABASE GET",
    "DATABASE PUT",
    "RECORD FILE",
]
INPUT_COMMANDS = {"WAIT FOR DIGIT", "GET DATA", "GET OPTION", "RECORD FILE"}
MEDIA_COMMANDS = {
    "STREAM FILE",
    "WAIT FOR DIGIT",
    "GET DATA",
    "GET OPTION",
    "SAY DIGITS",
    "SAY NUMBER",
    "EXEC",
    "RECORD FILE",
}


def usage(command: str) -> list[str]:
    if command == "GET DATA":
        return GET_DATA_USAGE
    return [
        "520-Invalid command syntax.  Proper usage follows:",
        f"Usage: {command} <replaceable>arguments</replaceable>",
        "520 End of proper usage.",
    ]


@dataclass(frozen=True, slots=True)
class Said:
    """One SAY NUMBER as the caller heard it: the sound files Asterisk's say.c plays for
    ``number`` in the channel's ``language`` with the ``gender`` argument."""

    channel: str
    number: int
    language: str
    gender: str | None
    files: tuple[str, ...]


def say_number_files(num: int, language: str, gender: str | None = None) -> list[str]:
    """The files of ``ast_say_number_full`` (main/say.c) for English and Russian, below a million.

    Russian (``ast_say_number_full_ru``): 1 and 2 take the gender suffix (``digits/1f`` одна,
    ``digits/2n`` два/одно), also as the last digit of 21, 32...; thousands are feminine
    (``digits/1f`` + ``digits/thousand``, ``digits/thousands-i`` for 2-4, ``digits/thousands``).
    English ignores the gender. Other languages are said as English here."""
    if num < 0:
        return ["digits/minus", *say_number_files(-num, language, gender)]
    if num == 0:
        return ["digits/0"]
    files: list[str] = []
    if language == "ru":
        if num >= 1000:
            thousands, num = divmod(num, 1000)
            last = thousands % 100 if thousands % 100 < 20 else thousands % 10
            files += say_number_files(thousands, "ru", "f" if last < 3 else None)
            files.append(
                "digits/thousand" if last == 1 else "digits/thousands-i" if 1 < last < 5 else "digits/thousands"
            )
        while num:
            if num < 20:
                files.append(f"digits/{num}{gender}" if gender and len(gender) == 1 and num < 3 else f"digits/{num}")
                num = 0
            elif num < 100:
                files.append(f"digits/{num - num % 10}")
                num %= 10
            else:
                files.append(f"digits/{num - num % 100}")
                num %= 100
        return files
    if num >= 1000:
        thousands, num = divmod(num, 1000)
        files += [*say_number_files(thousands, "en"), "digits/thousand"]
    if num >= 100:
        files += [f"digits/{num // 100}", "digits/hundred"]
        num %= 100
    if num >= 20:
        files.append(f"digits/{num - num % 10}")
        num %= 10
    if num:
        files.append(f"digits/{num}")
    return files


@dataclass
class _Outcome:
    digit: str | None = None
    hangup: bool = False
    elapsed: float = 0.0  # telephone seconds


class AgiRun:
    """One AGI() execution on a channel. ``run()`` returns AGISTATUS."""

    def __init__(
        self,
        sim: PbxSim,
        channel: Channel,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        steps: list[Step],
        hungup: asyncio.Event,
        dtmf: asyncio.Queue[str],
        agisighup: bool,
    ) -> None:
        self.sim = sim
        self.channel = channel
        self.reader = reader
        self.writer = writer
        self.steps = steps
        self.hungup = hungup
        self.dtmf = dtmf
        self.agisighup = agisighup
        self.failed = False
        self.music = False
        self.commands: list[str] = []
        self._press_tasks: set[asyncio.Task[None]] = set()
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._eof = asyncio.Event()

    # -- I/O ---------------------------------------------------------------------------------

    def _write_lines(self, lines: list[str]) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.writer.write("".join(f"{line}\n" for line in lines).encode())

    async def _hangup_line(self) -> None:
        await self.hungup.wait()
        if not self.agisighup:
            return
        await asyncio.sleep(self.sim.hangup_line_delay)  # recorded: 41 ms after the interrupted reply
        self._write_lines(["HANGUP"])

    async def _read_lines(self) -> None:
        try:
            while raw := await self.reader.readline():
                self._lines.put_nowait(raw.decode("utf-8", "replace").rstrip("\r\n"))
        except (ConnectionError, OSError):
            pass
        finally:
            # Asterisk watches the AGI socket while media plays (ast_waitstream_full's cmdfd), so
            # a script that closes the socket stops the prompt at once.
            self._eof.set()
            self._lines.put_nowait(None)

    async def run(self, env: list[tuple[str, str]]) -> str:
        self._write_lines([f"{k}: {v}" for k, v in env] + [""])
        watcher = asyncio.create_task(self._hangup_line())
        lines = asyncio.create_task(self._read_lines())
        try:
            while True:
                line = await self._lines.get()
                if line is None:
                    break
                if not line.strip():
                    continue
                self.commands.append(line)
                await self._execute(line)
                with contextlib.suppress(ConnectionError):
                    await self.writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            watcher.cancel()
            lines.cancel()
            for task in self._press_tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                self.writer.close()
        if self.hungup.is_set():
            return "HANGUP"
        return "FAILURE" if self.failed else "SUCCESS"

    # -- dispatch ----------------------------------------------------------------------------

    async def _execute(self, line: str) -> None:
        upper = line.upper()
        command = next((c for c in COMMANDS if upper == c or upper.startswith(c + " ")), None)
        command_id = str(random.randint(1, 2**31 - 1))
        self._exec_event("AGIExecStart", command_id, line, None)
        if command is None:
            lines = ["510 Invalid or unknown command"]
        else:
            try:
                args = shlex.split(line[len(command) :])
            except ValueError:
                args = line[len(command) :].split()
            if self.hungup.is_set() and command not in DEAD_OK:
                lines = [R511]
            else:
                lines = await self._run(command, args)
        self._write_lines(lines)
        first = lines[0]
        code = first[:3]
        if code == "200" and re.match(r"200 result=-1\b", first):
            self.failed = True
            result, result_code = "Failure", "-1"
        elif code == "200" and first.startswith("200 result=-2"):
            result, result_code = "Unknown Result", "200"
        elif code == "200":
            result, result_code = "Success", "200"
        elif code == "510":
            result, result_code = "Invalid or unknown command", "510"
        elif code == "520":
            result, result_code = "Usage", "520"
        else:
            result, result_code = first[4:], code
        self._exec_event("AGIExecEnd", command_id, line, (result_code, result))

    def _exec_event(self, name: str, command_id: str, line: str, end: tuple[str, str] | None) -> None:
        headers: Headers = [("Event", name), ("Privilege", "agi,all"), *self.channel.block()]
        headers += [("CommandId", command_id), ("Command", line)]
        if end is not None:
            headers += [("ResultCode", end[0]), ("Result", end[1])]
        self.sim.emit(headers)

    async def _run(self, command: str, args: list[str]) -> list[str]:
        ch = self.channel
        if command == "ANSWER":
            if ch.state != 6:
                self.sim.set_state(ch, 6)
            return ["200 result=0"]
        if command == "VERBOSE":
            return ["200 result=1"]
        if command == "NOOP":
            return ["200 result=0"]
        if command == "SET MUSIC":
            # res_agi handle_setmusic: music on hold starts/stops; always "200 result=0".
            self.music = bool(args) and args[0].lower() == "on"
            return ["200 result=0"]
        if command == "GET VARIABLE":
            if not args:
                return usage(command)
            value = self.sim.lookup(ch, args[0])
            return ["200 result=0"] if value is None else [f"200 result=1 ({value})"]
        if command == "GET FULL VARIABLE":
            if not args:
                return usage(command)
            return [f"200 result=1 ({self.sim.substitute(ch, args[0])})"]
        if command == "SET VARIABLE":
            if len(args) < 2:
                return usage(command)
            self.sim.set_var(ch, args[0], args[1])
            return ["200 result=1"]
        if command == "CHANNEL STATUS":
            return [f"200 result={ch.state}"]
        if command == "HANGUP":
            self.sim.hangup_channel(ch, cause=16, by_agi=True)
            return ["200 result=1"]
        if command.startswith("DATABASE"):
            return ["200 result=0"]
        step = self._take_step(command, args)
        if command == "STREAM FILE":
            if not args:
                return usage(command)
            escape = args[1] if len(args) > 1 else ""
            duration = self.sim.prompt_seconds(args[0])
            if duration is None:
                return ["200 result=-1 endpos=0"]
            out = await self._play(duration, escape, step)
            return [self._key_reply(out, duration, endpos=True)]
        if command == "WAIT FOR DIGIT":
            if not args:
                return usage(command)
            timeout = int(args[0])
            out = await self._wait_key(None if timeout < 0 else timeout / 1000, None, step)
            return ["200 result=-1"] if out.hangup else [f"200 result={ord(out.digit) if out.digit else 0}"]
        if command == "GET DATA":
            if not args:
                return usage(command)
            limit = int(args[1]) / 1000 if len(args) > 1 and int(args[1]) > 0 else 6.0
            max_digits = int(args[2]) if len(args) > 2 else 1024
            if args[0] and self.sim.prompt_seconds(args[0]) is None:
                # ast_app_getdata_full: the prompt is one file (no "&" list, unlike Read()); when it
                # cannot be opened GET DATA answers -1 at once, without waiting for a key.
                return ["200 result=-1"]
            digits, timed_out, hangup = await self._read_digits(args[0], limit, max_digits, step)
            if hangup:
                return ["200 result=-1"]
            return [f"200 result={digits} (timeout)" if timed_out else f"200 result={digits}"]
        if command == "GET OPTION":
            if len(args) < 2:
                return usage(command)
            duration = self.sim.prompt_seconds(args[0])
            option_limit = int(args[2]) / 1000 if len(args) > 2 else 5.0
            if duration is None:
                return ["200 result=-1 endpos=0"]
            out = await self._play(duration, args[1], step)
            if out.digit is None and not out.hangup:
                more = await self._wait_key(option_limit, args[1], None)
                out = _Outcome(more.digit, more.hangup, duration)
            return [self._key_reply(out, duration, endpos=True)]
        if command == "SAY NUMBER":
            # res_agi handle_saynumber: SAY NUMBER <number> <escape digits> [gender] (argc 4..5),
            # spoken with ast_say_number_full in the channel's language (CHANNEL(language)).
            if not 2 <= len(args) <= 3 or not re.fullmatch(r"-?\d+", args[0]):
                return usage(command)
            gender = args[2] if len(args) > 2 else None
            files = say_number_files(int(args[0]), ch.language, gender)
            self.sim.said.append(Said(ch.name, int(args[0]), ch.language, gender, tuple(files)))
            out = await self._play(0.6 * len(files), args[1], step)
            return ["200 result=-1"] if out.hangup else [f"200 result={ord(out.digit) if out.digit else 0}"]
        if command == "SAY DIGITS":
            if not args:
                return usage(command)
            escape = args[1] if len(args) > 1 else ""
            out = await self._play(0.8 * len(args[0]), escape, step)
            return ["200 result=-1"] if out.hangup else [f"200 result={ord(out.digit) if out.digit else 0}"]
        if command == "EXEC":
            if not args:
                return usage(command)
            return await self._exec(args[0], " ".join(args[1:]), step)
        if command == "RECORD FILE":
            return await self._record(args)
        return ["510 Invalid or unknown command"]

    async def _record(self, args: list[str]) -> list[str]:
        """``RECORD FILE <file> <format> <escape> <timeout ms> [offset] [BEEP] [s=silence]``.

        Not in the transcripts; the replies are res_agi.c's handle_recordfile: ``200 result=<key>
        (dtmf) endpos=N`` for an escape key, ``200 result=-1 (hangup) endpos=N``, and ``200
        result=0 (timeout) endpos=N`` when the time limit passes. The caller "speaks" until
        their next step (a key press or hanging up); with no step they talk past the limit."""
        if len(args) < 4:
            return usage("RECORD FILE")
        name, fmt, escape, timeout = args[0], args[1], args[2], int(args[3])
        start = time.monotonic()
        out = await self._wait_key(None if timeout < 0 else timeout / 1000, escape, None)
        samples = int(self._since(start) * 8000)
        self.sim.recordings[f"{name}.{fmt}"] = samples / 8000
        if out.hangup:
            return [f"200 result=-1 (hangup) endpos={samples}"]
        if out.digit:
            return [f"200 result={ord(out.digit)} (dtmf) endpos={samples}"]
        return [f"200 result=0 (timeout) endpos={samples}"]

    def _key_reply(self, out: _Outcome, duration: float, *, endpos: bool) -> str:
        samples = int(min(out.elapsed, duration) * 8000)
        if out.hangup:
            return f"200 result=-1 endpos={samples}"
        if out.digit:
            return f"200 result={ord(out.digit)} endpos={samples}"
        return f"200 result=0 endpos={int(duration * 8000)}"

    async def _exec(self, app: str, data: str, step: Step | None) -> list[str]:
        ch = self.channel
        params = data.split(",")
        name = app.lower()
        if name == "playback":
            duration = self.sim.prompt_list_seconds(params[0])
            if duration is None:
                self.sim.set_var(ch, "PLAYBACKSTATUS", "FAILED")
                return ["200 result=0"]
            out = await self._play(duration, "", step)
            self.sim.set_var(ch, "PLAYBACKSTATUS", "FAILED" if out.hangup else "SUCCESS")
            return ["200 result=-1"] if out.hangup else ["200 result=0"]
        if name == "read":
            var = params[0]
            prompt = params[1] if len(params) > 1 else ""
            max_digits = int(params[2]) if len(params) > 2 and params[2] else 255
            timeout = float(params[5]) if len(params) > 5 and params[5] else 5.0
            digits, timed_out, hangup = await self._read_digits(prompt, timeout, max_digits, step)
            self.sim.set_var(ch, var, digits)
            self.sim.set_var(
                ch, "READSTATUS", "HANGUP" if hangup else ("TIMEOUT" if timed_out and not digits else "OK")
            )
            return ["200 result=-1"] if hangup else ["200 result=0"]
        if name == "userevent":
            self.sim.user_event(ch, params[0], params[1:])
            return ["200 result=0"]
        if name == "set":
            key, _, value = data.partition("=")
            self.sim.set_var(ch, key, value)
            return ["200 result=0"]
        if name == "noop":
            return ["200 result=0"]
        if name == "wait":
            out = await self._wait_key(float(params[0] or 0), "", None)
            return ["200 result=-1"] if out.hangup else ["200 result=0"]
        return ["200 result=-2"]

    # -- the caller --------------------------------------------------------------------------

    def _take_step(self, command: str, args: list[str]) -> Step | None:
        if not self.steps:
            return None
        step = self.steps[0]
        takes_input = command in INPUT_COMMANDS or (
            command in ("STREAM FILE", "SAY DIGITS", "SAY NUMBER") and len(args) > 1 and args[1] != ""
        )
        if command == "EXEC" and args and args[0].lower() == "read":
            takes_input = True
        if isinstance(step, Press) and step.on is not None and not command.startswith(step.on):
            return None
        if (isinstance(step, HangUp) and command in MEDIA_COMMANDS) or (
            isinstance(step, Press | Silence) and takes_input
        ):
            self.steps.pop(0)
        else:
            return None
        if isinstance(step, Press):
            task = asyncio.create_task(self._press(step))
            self._press_tasks.add(task)
            task.add_done_callback(self._press_tasks.discard)
        elif isinstance(step, HangUp):
            task = asyncio.create_task(self._hang_up_later(step.after))
            self._press_tasks.add(task)
            task.add_done_callback(self._press_tasks.discard)
        return step

    async def _press(self, step: Press) -> None:
        await asyncio.sleep(self.sim.scaled(step.after))
        for i, key in enumerate(step.keys):
            if i:
                await asyncio.sleep(self.sim.scaled(step.gap))
            if self.hungup.is_set():
                return
            self.sim.dtmf_event(self.channel, key)
            self.dtmf.put_nowait(key)

    async def _hang_up_later(self, after: float) -> None:
        await asyncio.sleep(self.sim.scaled(after))
        self.sim.hangup_channel(self.channel, cause=16)

    # -- media primitives (telephone time, scaled) -------------------------------------------

    async def _wait_key(self, limit: float | None, accept: str | None, _step: Step | None) -> _Outcome:
        """Wait up to ``limit`` telephone seconds for a key in ``accept`` (None: any key)."""
        start = time.monotonic()
        deadline = None if limit is None else start + self.sim.scaled(limit)
        while True:
            if self.hungup.is_set():
                return _Outcome(hangup=True, elapsed=self._since(start))
            if self._eof.is_set():
                return _Outcome(elapsed=self._since(start))
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return _Outcome(elapsed=self._since(start))
            key_task = asyncio.ensure_future(self.dtmf.get())
            hang_task = asyncio.ensure_future(self.hungup.wait())
            eof_task = asyncio.ensure_future(self._eof.wait())
            done, _ = await asyncio.wait(
                {key_task, hang_task, eof_task}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            hang_task.cancel()
            eof_task.cancel()
            if key_task in done:
                key = key_task.result()
                if accept is None or key in accept:
                    return _Outcome(digit=key, elapsed=self._since(start))
                continue  # Asterisk drops keys that are not escape digits
            key_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await key_task
            if key_task.done() and not key_task.cancelled():
                self.dtmf.put_nowait(key_task.result())  # lost race: keep the key for the next reader

    def _since(self, start: float) -> float:
        return (time.monotonic() - start) / self.sim.time_scale

    async def _play(self, duration: float, escape: str, step: Step | None) -> _Outcome:
        return await self._wait_key(duration, escape, step)

    async def _read_digits(
        self, prompt: str, limit: float, max_digits: int, step: Step | None
    ) -> tuple[str, bool, bool]:
        digits = ""
        duration = self.sim.prompt_list_seconds(prompt) if prompt else 0.0  # Read() splits on "&"
        if duration:
            out = await self._play(duration, "0123456789*#", step)
            if out.hangup:
                return "", True, True
            if out.digit is not None:
                if out.digit == "#":
                    return digits, False, False
                digits += out.digit
        # The timeout starts after the prompt has played and restarts for each key (fastagi_ivr).
        while len(digits) < max_digits:
            out = await self._wait_key(limit, None, None)
            if out.hangup:
                return digits, True, True
            if out.digit is None:
                return digits, True, False
            if out.digit == "#":
                return digits, False, False
            digits += out.digit
        return digits, False, False


EnvBuilder = Callable[[], list[tuple[str, str]]]
