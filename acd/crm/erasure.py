"""The CRM's erasure of a customer's personal data (152-FZ art. 9 and 21, GDPR art. 17):
the customer withdrew consent, so their name, phones, e-mails, note, letters, notes and
addresses go, everywhere the server keeps them, in one transaction; the facts that carry no
person stay (deals with their amounts and outcomes, contacts with their channel, times,
handler and outcome), so reports, ratings and counts do not move.

Refused while the customer has a live contact (waiting, offered, being worked, or a
callback still to dial): the routing core holds its own copy of a live contact and would
write the name and number back on its next step, and a manager on the phone with the
customer would lose the card mid-call. End those first, then erase.

After its transaction commits: the database's own copies of the old values go where it can
drop them (`Eraser.drop_old_values`: SQLite's write-ahead log); the external CRM's look-ups
cached in memory by the customer's phones and e-mails are dropped (`LookupCache`); outside the
database (`FileEraser`, acd.telephony.traces), the caller numbers in the queue_log file are
masked and the voicemail recordings deleted. What could not be cleaned is named in the answer
(`kept`), never passed over in silence. An external CRM's copy is the office's to erase there:
the answer says so (`external`), with the references the server knows, and so does the server log.

The service layer: no HTTP, no SQL (`acd.storage.crm.CrmStore.erase_customer` writes).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from acd.core.model import Contact

log = logging.getLogger(__name__)

ERASED = "[erased]"  # what stands where a name or a word of the customer's was
# Payload keys of a contact that hold no personal data (ids, routing facts, the node): the
# rest (a web form's note, a letter's text and subject, a voicemail, the external CRM's
# match) goes.
NEUTRAL_PAYLOAD = frozenset(
    {
        "crm",
        "routed_by",
        "deal_id",
        "callback_id",
        "attempt",
        "thread_of",
        "from_contact",
        "source",
        "node",
        "server",
        "uniqueid",
        "dnid",
        "dialled",
        "ivr",
        "call_sid",
        "recording",  # a voicemail's file name (its call's uniqueid): found again by a repeated erasure
    }
)
EXTERNAL_NOTICE = (
    "the external CRM keeps its own copy of this customer: the office must erase it there "
    "(this server does not erase in another system)"
)
SHORTEST_WORD = 3  # a shorter name ("Ян") would blank every text it happens to occur in
# A phone is also found spelled another way ("8 (916) 123-45-67" for +79161234567): by its last
# PHONE_TAIL digits, whatever stands between them, after any trunk or country prefix. A word is
# taken for a phone when it is one in E.164 ("+" and SHORTEST_PHONE digits at least) or has
# PHONE_TAIL digits: a shorter one ("2024-12-01" of a subject) is only found as it is written.
PHONE_TAIL = 10
SHORTEST_PHONE = 7
_BETWEEN = r"[\s\-().]*"


class ErasureError(Exception):
    """An erasure refused, with a stable `code` (the API's error code)."""

    def __init__(self, code: str, message: str, live: Collection[str] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.live = sorted(live)


@dataclass(frozen=True, slots=True)
class Traces:
    """Where the customer may still be outside the database, as its transaction read it.
    `phones` and `emails`: their numbers and addresses, as stored and as their contacts wrote
    them (known only to the first erasure: gone after it); `uniqueids`: their calls' Asterisk
    Uniqueids and `recordings` their voicemails' file names (kept in the contacts, so a
    repeated erasure finds them again); `external`: the external CRM's references to them
    ("bitrix24 CONTACT:12"), for the office."""

    phones: frozenset[str] = frozenset()
    uniqueids: frozenset[str] = frozenset()
    recordings: frozenset[str] = frozenset()
    external: tuple[str, ...] = ()
    emails: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Kept:
    """A file an erasure could not clean, and why: someone must, by hand."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure changed: row counts by place, and whether it had been erased before;
    files cleaned by kind; what could not be cleaned (`kept`: files, a database log still
    holding old values); `external`: EXTERNAL_NOTICE when an external CRM holds a copy (or
    may: one is configured), with its references."""

    customer_id: str
    already_erased: bool
    changed: Mapping[str, int] = field(default_factory=dict)
    files: Mapping[str, int] = field(default_factory=dict)
    kept: tuple[Kept, ...] = ()
    external: str = ""
    external_refs: tuple[str, ...] = ()


class Eraser(Protocol):  # acd.storage.crm.CrmStore
    async def erase_customer(
        self, customer_id: str, by: str, reason: str, at: float
    ) -> tuple[str, list[str], dict[str, int], Traces]: ...

    async def drop_old_values(self) -> list[Kept]:
        """After the erasure committed: the database's own copies of the rows as they were
        (a write-ahead log) dropped where the database allows it now; what it could not
        drop (the database's file and why)."""
        ...


class LookupCache(Protocol):  # acd.crm.external.sync.ExternalSync
    def forget_person(self, phones: Collection[str], emails: Collection[str]) -> int:
        """Drop the cached look-ups by any of these phones (any spelling) or e-mails; how many."""
        ...


class FileEraser(Protocol):  # acd.telephony.traces.TelephonyFiles
    def erase(self, traces: Traces) -> tuple[dict[str, int], list[Kept]]:
        """Clean the files of `traces` (blocking: run in a thread); counts by kind, and what
        could not be cleaned. An OSError on a file is reported in the list, not raised."""
        ...


async def erase_customer(
    repo: Eraser,
    customer_id: str,
    reason: str,
    by: str,
    now: float,
    live: Iterable[Contact] = (),
    *,
    files: FileEraser | None = None,
    external_crm: str | None = None,
    lookups: LookupCache | None = None,
) -> Erasure:
    """Erase `customer_id`'s personal data, recording the request in the audit log (who,
    when, the reason with the customer's own words taken out). `live`: the routing core's
    open contacts, checked first; the store checks its own again in the transaction.
    `files`: the telephony's files, cleaned once the transaction has committed (a file
    cleaned before a transaction that then failed would be gone for a customer who is not
    erased). `external_crm`: the configured external CRM's kind, if any; `lookups`: its
    look-ups cached in this process (their answers name the customer), dropped for them.

    Idempotent: erasing an erased customer changes nothing more in the database and answers
    `already_erased`; the files are gone through again (what an earlier attempt kept, or
    another node's queue_log)."""
    reason = reason.strip()
    if not reason:
        raise ErasureError("invalid", "reason: say why (the customer's request, its date or number)")
    held = {c.id for c in live if c.customer_id == customer_id and c.status.is_open}
    if held:
        raise _live(held)
    outcome, ids, changed, traces = await repo.erase_customer(customer_id, by, reason, now)
    if outcome == "no_such_customer":
        raise ErasureError("no_such_customer", f"no customer {customer_id}")
    if outcome == "live":
        raise _live(ids)
    kept = await repo.drop_old_values()
    if lookups is not None:
        changed = {**changed, "lookup_cache": lookups.forget_person(traces.phones, traces.emails)}
    cleaned: dict[str, int] = {}
    if files is not None:
        cleaned, kept_files = await asyncio.to_thread(files.erase, traces)
        kept += kept_files
    for k in kept:
        log.warning("erasure of customer %s: %s kept: %s", customer_id, k.path, k.reason)
    external = EXTERNAL_NOTICE if external_crm or traces.external else ""
    if external:
        refs = ", ".join(traces.external) or "no reference known here"
        log.warning("erasure of customer %s: %s (%s: %s)", customer_id, external, external_crm or "external", refs)
    return Erasure(customer_id, outcome == "again", changed, cleaned, tuple(kept), external, traces.external)


def _live(ids: Collection[str]) -> ErasureError:
    return ErasureError(
        "live_contacts",
        f"the customer has {len(ids)} live contact(s) (waiting, offered, being worked or a callback to dial): "
        "finish or cancel them, then erase",
        ids,
    )


# ---- pure helpers the store's transaction uses ----------------------------------------------


def words_of(*values: Iterable[str]) -> list[str]:
    """The strings to take out of free text: each long enough to be the customer's, and the
    phones also without their "+", longest first (so "+7916..." goes before "7916...")."""
    out: set[str] = set()
    for group in values:
        for value in group:
            value = (value or "").strip()
            if len(value) < SHORTEST_WORD or value == ERASED:
                continue
            out.add(value)
            if value.startswith("+") and value[1:].isdigit():
                out.add(value[1:])
    return sorted(out, key=lambda w: (-len(w), w))


def scrub(value: Any, words: Iterable[str]) -> Any:
    """`value` (text, or JSON made of dicts, lists and text) with every occurrence of each
    word replaced by ERASED, case-insensitively; other values unchanged.

    A phone is found in any spelling of its digits:

    >>> scrub({"note": "Звонил Иван Петров, 8 (916) 123-45-67"}, ["Иван Петров", "+79161234567"])
    {'note': 'Звонил [erased], [erased]'}
    """
    words = list(words)
    if not words:
        return value
    if isinstance(value, str):
        folded = value.casefold()
        for word in words:
            phone = _phone_pattern(word)
            if phone is not None:
                value = phone.sub(ERASED, value)
                folded = value.casefold()
                continue
            key = word.casefold()
            if key in folded:
                value = _replace_folded(value, key)
                folded = value.casefold()
        return value
    if isinstance(value, dict):
        return {k: scrub(v, words) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, words) for v in value]
    return value


@functools.lru_cache(maxsize=256)
def _phone_pattern(word: str) -> re.Pattern[str] | None:
    """For a phone (digits, perhaps with "+", spaces, dashes, brackets): its last PHONE_TAIL
    digits with anything of that kind between them, after an optional prefix ("+7", "8");
    None for any other word."""
    digits = re.sub(r"\D", "", word)
    enough = len(digits) >= (SHORTEST_PHONE if word.startswith("+") else PHONE_TAIL)
    if not enough or re.fullmatch(r"\+?" + _BETWEEN, re.sub(r"\d", "", word)) is None:
        return None
    tail = _BETWEEN.join(digits[-PHONE_TAIL:])
    return re.compile(rf"(?<!\d)(?:\+?\d{{1,3}}{_BETWEEN})?{tail}(?!\d)")


def _replace_folded(text: str, key: str) -> str:
    out, folded, at = [], text.casefold(), 0
    if len(folded) != len(text):  # a letter whose case fold is longer (ß): exact matches only
        return text.replace(key, ERASED)
    while (found := folded.find(key, at)) >= 0:
        out.append(text[at:found])
        out.append(ERASED)
        at = found + len(key)
    out.append(text[at:])
    return "".join(out)


def neutral_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A contact's payload without what a person wrote or is: only NEUTRAL_PAYLOAD's keys."""
    kept = {k: v for k, v in payload.items() if k in NEUTRAL_PAYLOAD}
    voicemail = payload.get("voicemail")
    if isinstance(voicemail, Mapping) and isinstance(voicemail.get("recording"), str):
        kept["recording"] = voicemail["recording"]
    kept["erased"] = True
    return kept
