"""Adapter (no I/O): raw RFC 5322 bytes ⇄ what an enquiry needs, and keyword inference.

`read_mail(raw, max_size)` parses with the standard library (`email.policy.default`) and
returns `Mail` or `Refused` with a reason an administrator can act on. It never raises on
bad input: a listener that gets a malformed message must log and go on.

Refused: no From (nobody to answer), a From that is not an address, a message larger than
`max_size`, MIME the parser could not make sense of (missing boundaries, undecodable
headers), or no readable text at all. Mail without a Message-ID gets one derived from its
bytes, so a redelivery of the same bytes still dedupes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from email import errors as email_errors
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Any

_MSGID = re.compile(r"<[^<>\s]+>")
MESSAGE_ID_MAX = 250  # characters (an ordinary one has 30-80)
_WORDS = re.compile(r"\w+", re.UNICODE)
# Defects after which the body cannot be trusted; the rest (a missing MIME-Version...) are noise.
_FATAL_DEFECTS = (
    email_errors.StartBoundaryNotFoundDefect,
    email_errors.CloseBoundaryNotFoundDefect,
    email_errors.MultipartInvariantViolationDefect,
    email_errors.NoBoundaryInMultipartDefect,
    email_errors.InvalidMultipartContentTransferEncodingDefect,
    email_errors.MissingHeaderBodySeparatorDefect,
)
MAX_TEXT = 20_000  # characters of body text kept on the contact
# The newest references a reply is threaded by: a thread is seldom a tenth as deep, and a
# look-up by tens of thousands (PostgreSQL takes at most 32,767 parameters) would fail for ever
MAX_REFERENCES = 100


@dataclass(frozen=True, slots=True)
class Mail:
    message_id: str
    sender: str  # the address, lower-cased
    sender_name: str
    subject: str
    text: str
    in_reply_to: tuple[str, ...] = ()  # In-Reply-To then References, newest first
    size: int = 0
    attachments: tuple[str, ...] = ()
    language: str | None = None
    auto_reply: bool = False  # an out-of-office or bounce: never answer it automatically
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str
    message_id: str | None = None
    sender: str = ""
    subject: str = ""
    size: int = 0


def too_large(head: bytes, size: int, max_size: int) -> Refused:
    """Refuse a message by its headers alone (IMAP tells the size before we fetch it)."""
    h = _headers_only(head)
    reason = f"too large: {size} bytes (email.max_size is {max_size})"
    return Refused(reason, h.get("message-id") or None, h.get("from", ""), h.get("subject", ""), size)


def message_ids(value: str | None) -> list[str]:
    """The Message-IDs in a header, each one short enough to be a key (`MESSAGE_ID_MAX`)."""
    return [_keyable(found) for found in _MSGID.findall(value or "")]


def _keyable(message_id: str) -> str:
    # RFC 5322 bounds only the line (998 characters), and a store's index entry holds less
    # (PostgreSQL: about 2.7 KB): a longer ID stands for itself by its hash, the same
    # wherever it is read (Message-ID, In-Reply-To, References), so dedupe and threads hold.
    if len(message_id) <= MESSAGE_ID_MAX:
        return message_id
    return "<sha256-" + hashlib.sha256(message_id.encode()).hexdigest()[:32] + "@acd.local>"


def read_mail(raw: bytes, max_size: int) -> Mail | Refused:
    return _storable(_read_mail(raw, max_size))


def _storable(found: Mail | Refused) -> Mail | Refused:
    """`found` with each NUL character shown as U+FFFD: PostgreSQL's text cannot hold NUL,
    and a mislabelled UTF-16 body or an encoded word can decode to one."""
    changes: dict[str, Any] = {}
    for f in fields(found):
        value = getattr(found, f.name)
        if isinstance(value, str) and "\0" in value:
            changes[f.name] = value.replace("\0", "\ufffd")
        elif isinstance(value, tuple) and any("\0" in v for v in value):
            changes[f.name] = tuple(v.replace("\0", "\ufffd") for v in value)
    return replace(found, **changes) if changes else found


def _read_mail(raw: bytes, max_size: int) -> Mail | Refused:
    size = len(raw)
    if size > max_size:
        return too_large(raw, size, max_size)
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(msg, EmailMessage)
        found = message_ids(str(msg.get("Message-ID", "")))
        message_id = found[0] if found else None
        subject = str(msg.get("Subject", "") or "").strip()
        from_header = msg.get("From")
        defects = [d for part in msg.walk() for d in part.defects if isinstance(d, _FATAL_DEFECTS)]
    except Exception as err:  # the parser is lenient, but header folding and charsets can still blow up
        return Refused(f"unreadable message: {type(err).__name__}: {err}", size=size)
    if from_header is None or not str(from_header).strip():
        return Refused("no From header: nobody to answer", message_id, "", subject, size)
    addresses = [(n, a) for n, a in getaddresses([str(from_header)]) if "@" in a]
    if not addresses:
        return Refused(f"From is not an address: {str(from_header)[:200]!r}", message_id, "", subject, size)
    name, address = addresses[0]
    if defects:
        what = ", ".join(sorted({type(d).__name__ for d in defects}))
        return Refused(f"broken MIME structure ({what})", message_id, address, subject, size)
    try:
        text, attachments = _text_of(msg)
    except Exception as err:
        return Refused(f"undecodable body: {type(err).__name__}: {err}", message_id, address, subject, size)
    if not text.strip() and not subject:
        return Refused("no subject and no readable text", message_id, address, subject, size)
    refs = message_ids(str(msg.get("In-Reply-To", ""))) + list(reversed(message_ids(str(msg.get("References", "")))))
    auto = (
        str(msg.get("Auto-Submitted", "no")).lower() not in ("", "no")
        or str(msg.get("Precedence", "")).lower() in ("bulk", "junk", "auto_reply")
        or address.lower().startswith(("mailer-daemon@", "postmaster@"))
    )
    language = str(msg.get("Content-Language", "") or "").split(",")[0].strip()[:2].lower() or None
    return Mail(
        message_id=message_id or "<sha256-" + hashlib.sha256(raw).hexdigest()[:32] + "@acd.local>",
        sender=address.lower(),
        sender_name=name,
        subject=subject,
        text=text[:MAX_TEXT],
        in_reply_to=tuple(dict.fromkeys(r for r in refs if r != message_id))[:MAX_REFERENCES],
        size=size,
        attachments=tuple(attachments),
        language=language,
        auto_reply=auto,
    )


def _text_of(msg: EmailMessage) -> tuple[str, list[str]]:
    attachments = [part.get_filename() or part.get_content_type() for part in msg.iter_attachments()]
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is None:
        return "", attachments
    if body.get_content_charset() is None:
        # no charset declared: 8-bit text is UTF-8 far more often than the RFC's us-ascii
        payload = body.get_payload(decode=True)
        content = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
    else:
        content = body.get_content()
    if not isinstance(content, str):
        return "", attachments
    if body.get_content_type() == "text/html":
        content = re.sub(r"<[^>]+>", " ", content)
    return content.strip(), attachments


def _headers_only(raw: bytes) -> dict[str, str]:
    """The headers of a message we will not parse whole (it is too large)."""
    head, _, _ = raw.partition(b"\r\n\r\n")
    if len(head) == len(raw):
        head, _, _ = raw.partition(b"\n\n")
    try:
        msg = BytesParser(policy=policy.default).parsebytes(head[:65536], headersonly=True)
        out = {k.lower(): str(v) for k, v in msg.items()}
        out["message-id"] = (message_ids(out.get("message-id")) or [""])[0]
        return out
    except Exception:
        return {}


def infer_criteria(text: str, keywords: Mapping[str, Mapping[str, tuple[str, ...]]]) -> dict[str, str]:
    """Criteria answers suggested by words in `text`.

    For each criterion, the option whose keywords occur earliest in the text wins (ties: the
    option listed first). A keyword matches at the start of a word, so "лиценз" finds
    "лицензия" and "лицензии"; a phrase matches as written. Case does not matter.

    >>> infer_criteria("Нужно продлить лицензию", {"purpose": {"renewal": ("лиценз", "продл")}})
    {'purpose': 'renewal'}
    """
    folded = text.casefold()
    answers: dict[str, str] = {}
    for criterion, options in keywords.items():
        best: tuple[int, int, str] | None = None
        for rank, (value, words) in enumerate(options.items()):
            for word in words:
                m = re.search(r"(?<!\w)" + re.escape(word.casefold()), folded)
                if m and (best is None or (m.start(), rank) < best[:2]):
                    best = (m.start(), rank, value)
        if best is not None:
            answers[criterion] = best[2]
    return answers
