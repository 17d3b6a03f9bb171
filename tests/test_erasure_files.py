"""An erased customer's traces in the telephony's files (acd.telephony.traces): their caller
numbers in queue_log are masked in place, byte for byte, while the server (or Asterisk) goes
on appending; their voicemail recordings are deleted; whatever cannot be cleaned is named."""

from __future__ import annotations

import threading
from pathlib import Path

from acd.crm.erasure import Traces
from acd.telephony.queue_log import QueueLog, redact_file
from acd.telephony.traces import TelephonyFiles

PHONE = "+79167770011"
OTHER = "+79035550099"
CALL = "1765150000.41"  # the customer's call, whose caller ID Asterisk spelled its own way


def enterqueue(callid: str, caller: str, at: int = 1765150000) -> str:
    return f"{at}|{callid}|sales|NONE|ENTERQUEUE||{caller}|1"


def traces(recordings: frozenset[str] = frozenset(), uniqueids: frozenset[str] = frozenset({CALL})) -> Traces:
    return Traces(phones=frozenset({PHONE}), uniqueids=uniqueids, recordings=recordings)


def test_the_customers_numbers_are_masked_in_place_and_nothing_else_moves(tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    lines = [
        enterqueue(CALL, "8 (916) 777-00-11"),  # theirs by the call, whatever the spelling
        f"1765150003|{CALL}|sales|boris|CONNECT|3|1765150003.42|2",
        enterqueue("1765150100.43", "79167770011", at=1765150100),  # theirs by the number, an unlinked call
        enterqueue("1765150200.44", OTHER),
        "1765150300|NONE|NONE|boris|PAUSE|обед",
    ]
    path.write_bytes("".join(f"{x}\n" for x in lines).encode() + b"1765150400|1765150400.45|sales|NONE|ENTER")
    size = path.stat().st_size

    assert redact_file(path, {CALL}, {PHONE}) == 2

    got = path.read_bytes()
    assert len(got) == size  # byte for byte: an appender's offset and a reader's stay right
    text = got.decode()
    assert "916" not in text and "7770011" not in text
    assert text.splitlines()[0] == f"1765150000|{CALL}|sales|NONE|ENTERQUEUE||{'*' * 17}|1"
    assert text.splitlines()[2] == f"1765150100|1765150100.43|sales|NONE|ENTERQUEUE||{'*' * 11}|1"
    assert text.splitlines()[1:2] + text.splitlines()[3:5] == lines[1:2] + lines[3:5]  # not theirs: untouched
    assert text.endswith("|ENTER")  # a line still being written is left alone
    assert redact_file(path, {CALL}, {PHONE}) == 0  # a repeated erasure: nothing more
    assert redact_file(tmp_path / "none", {CALL}, {PHONE}) == 0


def test_the_server_appends_on_while_and_after_the_file_is_masked(tmp_path: Path) -> None:
    """The writer keeps its file open for appending; a file renamed over it would take every
    later line with it. Masking in place loses none, even while the writer is appending."""
    path = tmp_path / "queue_log"
    writer = QueueLog(path, clock=lambda: 1765150000.0)
    for i in range(20_000):
        writer.write("ENTERQUEUE", f"1765150000.{i}", "sales", "NONE", "", PHONE if i % 2 else OTHER, 1)
    done = threading.Event()
    masked: list[int] = []

    def erase() -> None:
        masked.append(redact_file(path, set(), {PHONE}))
        done.set()

    thread = threading.Thread(target=erase)
    thread.start()
    appended = 0
    while not done.is_set() or appended < 100:  # some land while the masking runs
        writer.write("CONNECT", f"1765159999.{appended}", "sales", "boris", 3, "x", 2)
        appended += 1
    thread.join()
    writer.write("COMPLETEAGENT", "1765159999.0", "sales", "boris", 3, 60, 1)  # after: same open file
    writer.close()

    lines = path.read_text().splitlines()
    assert len(lines) == 20_000 + appended + 1
    assert masked[0] >= 9_000 and all(len(line.split("|")) in (7, 8) for line in lines)
    assert [line for line in lines[20_000:] if "CONNECT" in line] == [
        f"1765150000|1765159999.{i}|sales|boris|CONNECT|3|x|2" for i in range(appended)
    ]
    assert lines[-1].endswith("|COMPLETEAGENT|3|60|1")
    assert sum(OTHER in line for line in lines) == 10_000
    # masked now or, the lines the erasure could not yet see, by the next one
    redact_file(path, set(), {PHONE})
    assert PHONE not in path.read_text()


def test_recordings_are_deleted_and_what_cannot_be_is_named(tmp_path: Path) -> None:
    sounds = tmp_path / "sounds"
    (sounds / "acd" / "voicemail").mkdir(parents=True)
    theirs = sounds / "acd" / "voicemail" / f"{CALL}.wav"
    guessed = sounds / "acd" / "voicemail" / "1765150100.43.wav"  # named only by the call's uniqueid
    stranger = sounds / "acd" / "voicemail" / "1765150200.44.wav"
    for f in (theirs, guessed, stranger):
        f.write_bytes(b"RIFF")
    stuck = sounds / "acd" / "voicemail" / "stuck.wav"
    stuck.mkdir()  # unlink() refuses a directory, even for root: a file that cannot go
    outside = tmp_path / "passwd"
    outside.write_text("root")
    log = tmp_path / "queue_log"
    log.write_text(enterqueue(CALL, PHONE) + "\n")
    (tmp_path / "queue_log.1").write_text(enterqueue(CALL, PHONE) + "\n")
    (tmp_path / "queue_log.2.gz").write_bytes(b"\x1f\x8b")
    (tmp_path / "queue_log.acd-notes").write_text(PHONE)  # not a rotated copy: not touched
    writer = QueueLog(None)
    writer.write("ENTERQUEUE", CALL, "sales", "NONE", "", PHONE, 1)
    files = TelephonyFiles(log, sounds, writer)
    recorded = {f"acd/voicemail/{CALL}.wav", "acd/voicemail/stuck.wav", "../passwd", ""}

    done, kept = files.erase(traces(recordings=frozenset(recorded), uniqueids=frozenset({CALL, "1765150100.43"})))

    assert done == {"queue_log_lines": 2, "recordings": 2}
    assert not theirs.exists() and not guessed.exists() and stranger.exists() and outside.exists()
    assert PHONE not in log.read_text() + (tmp_path / "queue_log.1").read_text() + writer.lines[0]
    assert (tmp_path / "queue_log.acd-notes").read_text() == PHONE
    why = {k.path: k.reason for k in kept}
    assert set(why) == {str(stuck), "../passwd", "", str(tmp_path / "queue_log.2.gz")}
    assert "cannot be deleted" in why[str(stuck)] and "compressed" in why[str(tmp_path / "queue_log.2.gz")]

    # again (the erasure repeated, another node): nothing more to do, the same left to people
    done, kept = files.erase(traces(recordings=frozenset(recorded)))
    assert done == {"queue_log_lines": 0, "recordings": 0} and {k.path for k in kept} == set(why)


def test_without_a_sounds_directory_each_recording_is_left_to_the_office(tmp_path: Path) -> None:
    done, kept = TelephonyFiles(None, None).erase(traces(recordings=frozenset({f"acd/voicemail/{CALL}.wav"})))
    assert done == {"queue_log_lines": 0, "recordings": 0}
    assert [(k.path, "asterisk.sounds_dir is not set" in k.reason) for k in kept] == [
        (f"acd/voicemail/{CALL}.wav", True)
    ]
    # a sounds directory that is wrong says so instead of finding nothing
    _, kept = TelephonyFiles(None, tmp_path / "nowhere").erase(traces(recordings=frozenset({"acd/voicemail/x.wav"})))
    assert ["is asterisk.sounds_dir right" in k.reason for k in kept] == [True]
