"""Adapter (no I/O): raw RFC 5322 bytes ⇄ what an enquiry needs, and keyword inference.

`read_mail(raw, max_size)` parses with the standard library (`email.policy.default`) and
returns `Mail` or `Refused` with a reason an administrator can act on. It never raises on
bad input: a listener that gets a malformed message must log and go on.

Refused: no From (nobody to answer), a From that is not an address, a message larger than
`max_size`, MIME the parser could not make sense of (missing boundaries, undecodable
headers), or no subject, no readable text and no attachment at all. Mail without a Message-ID
gets one derived from its bytes without the relays' trace headers, so a redelivery of the same
letter, by the same route or another, still dedupes.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import html
import quopri
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from email import errors as email_errors
from email import policy
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from email.utils import getaddresses
from html.parser import HTMLParser
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
    automatic: str = ""  # why it is taken for a machine's letter (a header, the subject...)
    report: bool = False  # a bounce or a read receipt: a mail system's, never a person's
    # Reply-To when it names someone else than From (a website's form mailer, a mailing list
    # writing for a person): such a sender's subjects say nothing of one customer's thread
    reply_to: str = ""
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
        subject = (_header(msg, "Subject") or "").strip()
        from_header = _header(msg, "From")
        defects = [d for part in msg.walk() for d in part.defects if isinstance(d, _FATAL_DEFECTS)]
    except Exception as err:  # the parser is lenient, but header folding and charsets can still blow up
        return Refused(f"unreadable message: {type(err).__name__}: {err}", size=size)
    if from_header is None or not from_header.strip():
        return Refused("no From header: nobody to answer", message_id, "", subject, size)
    addresses = [(n, a) for n, a in getaddresses([from_header]) if "@" in a]
    if not addresses:
        return Refused(f"From is not an address: {from_header[:200]!r}", message_id, "", subject, size)
    name, address = addresses[0]
    if defects:
        what = ", ".join(sorted({type(d).__name__ for d in defects}))
        return Refused(f"broken MIME structure ({what})", message_id, address, subject, size)
    try:
        text, attachments = _text_of(msg)
    except Exception as err:
        return Refused(f"undecodable body: {type(err).__name__}: {err}", message_id, address, subject, size)
    if not text.strip() and not subject and not attachments:
        # A letter that is only an attachment («Заявка на продление лицензии.pdf») is an
        # enquiry: its file names say what it is about
        return Refused("no subject, no readable text and no attachment", message_id, address, subject, size)
    auto = _automatic(msg, address, subject)
    refs = message_ids(str(msg.get("In-Reply-To", "")))
    if auto:
        refs += _returned_ids(msg)  # a bounce names the letter it returns only inside itself
    refs += list(reversed(message_ids(str(msg.get("References", "")))))
    language = str(msg.get("Content-Language", "") or "").split(",")[0].strip()[:2].lower() or None
    return Mail(
        message_id=message_id or synthetic_message_id(raw),
        sender=address.lower(),
        sender_name=name,
        subject=subject,
        text=text[:MAX_TEXT],
        in_reply_to=tuple(dict.fromkeys(r for r in refs if r != message_id))[:MAX_REFERENCES],
        size=size,
        attachments=tuple(attachments),
        language=language,
        auto_reply=auto is not None,
        automatic=auto or "",
        report=msg.get_content_type() == "multipart/report" or address.lower().startswith(_MAIL_SYSTEMS),
        reply_to=_other_reply_to(msg, address.lower()),
    )


def _other_reply_to(msg: MIMEPart, sender: str) -> str:
    """The first Reply-To address (lower-cased) that is not the sender's, or ""."""
    try:
        value = _header(msg, "Reply-To") or ""
        found = [a.lower() for _, a in getaddresses([value]) if "@" in a]
    except Exception:  # a broken Reply-To is no reason to refuse the letter
        return ""
    return next((a for a in found if a != sender), "")


# Autoresponders that do not say Auto-Submitted (RFC 3834) still say it their own way: in a
# header of their own, or in the subject (Outlook: "Автоматический ответ:", Yandex and
# mail.ru: "Автоответ:"). Bounces and read receipts are multipart/report (RFC 6522).
_AUTO_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autogenerated", "X-Autoresponder")
_AUTO_SUBJECT = re.compile(
    r"^\s*(автоответ|автоматический\s+ответ|auto[- ]?reply|automatic\s+reply|autosvar|"
    r"out\s+of\s+(the\s+)?office|недоставлено|не\s+доставлено|undeliverable|undelivered\s+mail|"
    r"delivery\s+status\s+notification|mail\s+delivery\s+failed)\b",
    re.IGNORECASE,
)


_MAIL_SYSTEMS = ("mailer-daemon@", "postmaster@")


def _automatic(msg: MIMEPart, address: str, subject: str) -> str | None:
    """Why this is an out-of-office reply, a bounce or another machine's letter (never to be
    answered, nor offered to a manager), or None for a person's letter."""
    submitted = str(msg.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(msg.get("Precedence", "")).strip().lower()
    if submitted not in ("", "no"):
        return f"Auto-Submitted: {submitted}"
    if precedence in ("bulk", "junk", "auto_reply"):
        return f"Precedence: {precedence}"
    if address.lower().startswith(_MAIL_SYSTEMS):
        return f"from {address.lower()}"
    if (header := next((name for name in _AUTO_HEADERS if msg.get(name) is not None), None)) is not None:
        return f"{header} header"
    if msg.get_content_type() == "multipart/report":
        return "a delivery or read report (multipart/report)"
    if _AUTO_SUBJECT.match(subject) is not None:
        return f"subject {subject[:60]!r}"
    return None


# Where a bounce (RFC 3464) or a read receipt keeps the letter it is about: whole, or its headers
_RETURNED = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers")


def _returned_ids(msg: MIMEPart) -> list[str]:
    """The Message-IDs of the letters a report returns (our acknowledgement, when a customer's
    address bounced): what threads a bounce that has no In-Reply-To."""
    found: list[str] = []
    for part in msg.walk():
        if part.get_content_type() not in _RETURNED:
            continue
        inner = part.get_payload()
        if isinstance(inner, list):  # message/rfc822: the parser made a message of it
            letters = [letter for letter in inner[:1] if isinstance(letter, MIMEPart)]
            found += [i for letter in letters for i in message_ids(str(letter.get("Message-ID", "")))]
        else:
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                found += [i for i in [_headers_only(payload).get("message-id", "")] if i]
    return found


# Header fields a relay or a mailbox adds on the way (RFC 5321 trace fields, delivery and
# signature fields): the same letter carries different ones by each route it came.
_TRACE = frozenset(
    {
        "received",
        "return-path",
        "delivered-to",
        "x-original-to",
        "envelope-to",
        "x-envelope-from",
        "x-envelope-to",
        "x-received",
        "received-spf",
        "authentication-results",
        "dkim-signature",
        "x-google-dkim-signature",
        "domainkey-signature",
        "arc-seal",
        "arc-message-signature",
        "arc-authentication-results",
        "x-spam-status",
        "x-spam-score",
        "x-spam-flag",
        "x-spam-level",
        "x-virus-scanned",
        "status",
        "x-status",
        "x-uid",
        "x-keywords",
    }
)


def synthetic_message_id(raw: bytes) -> str:
    r"""A Message-ID for a letter that has none: a hash of the letter as its author sent it,
    without the header fields relays and mailboxes add (`_TRACE`) and with line ends made
    alike, so the same letter arriving by two routes (two relays, SMTP and IMAP) is one.

    >>> one = b"Received: from mx1\r\nFrom: a@b.test\r\nSubject: x\r\n\r\nhi\r\n"
    >>> two = b"Return-Path: <a@b.test>\nReceived: from mx2\n by mx3\nFrom: a@b.test\nSubject: x\n\nhi\n"
    >>> synthetic_message_id(one) == synthetic_message_id(two) != synthetic_message_id(one.replace(b"hi", b"ho"))
    True
    """
    crlf = raw.find(b"\r\n\r\n")
    lf = raw.find(b"\n\n")
    cut = crlf + 4 if crlf != -1 and (lf == -1 or crlf < lf) else lf + 2 if lf != -1 else len(raw)
    head, body = raw[:cut], raw[cut:]
    digest = hashlib.sha256()
    try:
        fields = BytesParser(policy=policy.compat32).parsebytes(head, headersonly=True).raw_items()
        for name, value in fields:
            if name.strip().lower() not in _TRACE:
                text = " ".join(str(value).split())  # unfolded, whatever line ends it had
                digest.update(f"{name.strip().lower()}: {text}\n".encode("utf-8", "surrogateescape"))
    except Exception:  # the headers were readable a moment ago; this is only in case
        digest.update(head.replace(b"\r\n", b"\n"))
    digest.update(b"\n" + body.replace(b"\r\n", b"\n").rstrip(b"\n"))
    return "<sha256-" + digest.hexdigest()[:32] + "@acd.local>"


def _text_of(msg: MIMEPart, depth: int = 0) -> tuple[str, list[str]]:
    """The readable text of a message and its attachments' names. The plain part when it says
    anything, else the HTML one as text (an Outlook or web-mail letter often has only HTML, or
    an empty plain part beside it); a forwarded letter (message/rfc822) follows, as the
    manager needs to read it and its words are what qualify the enquiry."""
    attachments: list[str] = []
    forwarded: list[str] = []
    for part in msg.iter_attachments():
        inner = part.get_payload()
        if part.get_content_type() == "message/rfc822" and isinstance(inner, list) and depth < 3:
            forwarded += [_forwarded(letter, depth + 1) for letter in inner[:1] if isinstance(letter, MIMEPart)]
        attachments.append(_filename(part) or part.get_content_type())
    content = ""
    for kind in ("plain", "html"):
        body = msg.get_body(preferencelist=(kind,))
        if body is not None:
            content = _part_text(body)
            if body.get_content_type() == "text/html":
                content = html_text(content)
            if content.strip():
                break
    return "\n\n".join(t for t in (content.strip(), *forwarded) if t), attachments


def _forwarded(letter: MIMEPart, depth: int) -> str:
    text, _ = _text_of(letter, depth)
    lines = [f"{name}: {value}" for name in ("From", "Date", "Subject") if (value := _header(letter, name))]
    return "\n".join(["---------- Forwarded message ----------", *lines, "", text]).strip()


_HTML_PIECE = 65_536  # characters of HTML parsed at a time


class _HtmlText(HTMLParser):
    _HIDDEN = frozenset({"style", "script", "title", "template"})
    _BLOCK = frozenset(
        {"br", "p", "div", "li", "tr", "table", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "pre"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self.hidden += 1
        elif tag == "body":
            self.hidden = 0  # a <style> left open in <head> hides nothing of the letter
        elif tag in self._BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self._BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.out.append(re.sub(r"\s+", " ", data))  # a line break in HTML is a space


def html_text(markup: str) -> str:
    """What a reader sees of an HTML letter: no style sheets, scripts or comments (Outlook
    puts kilobytes of them first), entities resolved (&nbsp;, &laquo;, &#1083;), one line
    per block.

    >>> html_text("<style>p {color: red}</style><p>&#1055;&#1088;&#1080;&#1074;&#1077;&#1090;&nbsp;!</p>")
    'Привет !'
    """
    parser = _HtmlText()
    try:
        # In pieces, and no further than the text a contact keeps: a price list pasted as a
        # table of megabytes would hold the event loop for seconds
        for start in range(0, len(markup), _HTML_PIECE):
            parser.feed(markup[start : start + _HTML_PIECE])
            if sum(map(len, parser.out)) > MAX_TEXT:
                break
        else:
            parser.close()
        text = "".join(parser.out)
    except Exception:  # HTMLParser is lenient; this is only in case
        text = html.unescape(re.sub(r"<[^>]+>", " ", markup))
    lines = (" ".join(line.split()) for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _part_text(part: MIMEPart) -> str:
    payload = part.get_payload(decode=True)
    return decode_text(payload, part.get_content_charset()) if isinstance(payload, bytes) else ""


# ---- Russian 8-bit text -------------------------------------------------------------------
# Russian mail still comes in Windows-1251 and KOI8-R, often unlabelled (old 1C and PHP
# mailers send 8-bit bytes with no charset, or raw 8-bit headers) or labelled with a name
# no codec has (x-cp1251, win-1251, unknown-8bit). Refusing such a message bounced a
# customer's enquiry; reading it as UTF-8 turned it into U+FFFD, keywords and all.

_LATIN_1 = frozenset({"ascii", "iso8859-1", "cp1252"})
_ENCODED_WORD = re.compile(r"=\?([^?*\s]+)(\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")


def _lower_cyrillic(text: str) -> int:
    return sum(1 for ch in text if "а" <= ch <= "я" or ch == "ё")


def _guess_codec(data: bytes) -> str:
    """UTF-8 when the bytes are valid UTF-8; else the 8-bit Russian charset that reads as more
    lower-case Cyrillic (prose is mostly lower case, and each one's lower case letters are
    the other's capitals). Not charset_normalizer: even held to these two charsets it read
    KOI8-R "лицензия", "Re: счёт" and "Ок" as Windows-1251, and names and subjects are short."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return max(("cp1251", "koi8-r"), key=lambda c: _lower_cyrillic(data.decode(c, errors="replace")))
    return "utf-8"


def decode_text(data: bytes, declared: str | None = None) -> str:
    """Text bytes as the sender meant them: by the declared charset when a codec has that
    name and the bytes fit it (and Latin-1 text is not Windows-1251 mislabelled), otherwise
    by `_guess_codec`. Never raises.

    >>> decode_text("лицензия".encode("cp1251"), "x-cp1251")
    'лицензия'
    """
    codec = None
    if declared:
        try:
            codec = codecs.lookup(declared.strip().strip('"')).name
        except LookupError:
            codec = None
    if codec is not None:
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            pass
        else:
            if codec not in _LATIN_1 or not _cyrillic_read_as_latin(text):
                return text
    return data.decode(_guess_codec(data), errors="replace")


def _cyrillic_read_as_latin(text: str) -> bool:
    """Windows-1251 read as Latin-1 ("Ïðîäëåíèå"): most letters are accented capitals and
    lower-case letters from U+00C0 up, which no Western language writes that densely."""
    letters = [ch for ch in text if ch.isalpha()]
    high = sum(1 for ch in letters if "\xc0" <= ch <= "\xff")
    return high >= 3 and high * 2 > len(letters)


def _header(msg: MIMEPart, name: str) -> str | None:
    """A header's text, also when it holds raw 8-bit bytes (Windows-1251, KOI8-R) or encoded
    words in a charset no codec has: the standard parser shows those as U+FFFD."""
    value = _header_value(msg, name)
    return None if value is None else str(value)


def _header_value(msg: MIMEPart, name: str) -> Any:
    raw = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), None)
    if raw is None or not isinstance(raw, str):
        return raw
    if any("\udc80" <= ch <= "\udcff" for ch in raw):
        raw = decode_text(raw.encode("utf-8", "surrogateescape"))
    raw = _ENCODED_WORD.sub(_known_charset, raw)
    return policy.default.header_fetch_parse(name, raw)


def _filename(part: MIMEPart) -> str | None:
    """An attachment's file name, also when a Russian mailer wrote it in raw 8-bit bytes."""
    name = part.get_filename()
    if name is None or "\ufffd" not in name:
        return name
    for header, param in (("Content-Disposition", "filename"), ("Content-Type", "name")):
        value = _header_value(part, header)
        found = getattr(value, "params", {}).get(param)
        if found:
            return str(found)
    return name


def _known_charset(m: re.Match[str]) -> str:
    """An encoded word as it stands, or relabelled with the charset its bytes are in when
    no codec has the name it gives."""
    charset, _, kind, payload = m.groups()
    try:
        codecs.lookup(charset)
        return m.group(0)
    except LookupError:
        pass
    try:
        if kind in "bB":
            data = base64.b64decode(payload + "=" * (-len(payload) % 4))
        else:
            data = quopri.decodestring(payload.encode("ascii", "replace"), header=True)
    except (binascii.Error, ValueError):
        return m.group(0)
    return f"=?{_guess_codec(data)}?{kind}?{payload}?="


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


# Reply and forward prefixes mail clients put before a subject, in the languages our
# customers write in (Outlook in German: AW/WG, Scandinavian: SV/VS; Lotus and Russian
# clients: Отв/Ответ/На/Пересл), repeated, with counters ("Re[2]:", "RE(3):")
_PREFIX = re.compile(
    r"^(?:\s*(?:re|fwd?|fw|отв|ответ|на|пересл|aw|wg|sv|vs)\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*:)+\s*",
    re.IGNORECASE,
)


def bare_subject(subject: str) -> str:
    """A subject without the reply and forward prefixes stacked before it, to be quoted in
    our own subjects.

    >>> bare_subject("RE: Fwd: Re[2]: Отв: На: Пересл: AW: Продление лицензии")
    'Продление лицензии'
    >>> bare_subject("Renewal: 10 seats")
    'Renewal: 10 seats'
    """
    return _PREFIX.sub("", subject).strip()


# Subjects that say nothing of which thread a letter is in: a customer writes "Вопрос" in each
# new letter. Compared case-folded, without punctuation, ё as е.
_GENERIC_SUBJECTS = frozenset(
    {
        "вопрос",
        "вопросы",
        "question",
        "questions",
        "заявка",
        "новая заявка",
        "заявка с сайта",
        "request",
        "запрос",
        "обращение",
        "enquiry",
        "inquiry",
        "без темы",
        "нет темы",
        "тема",
        "no subject",
        "subject",
        "untitled",
        "заказ",
        "order",
        "счет",
        "invoice",
        "информация",
        "info",
        "information",
        "сообщение",
        "message",
        "письмо",
        "letter",
        "помощь",
        "help",
        "срочно",
        "urgent",
        "важно",
        "important",
        "здравствуйте",
        "добрый день",
        "добрый вечер",
        "доброе утро",
        "привет",
        "hello",
        "good day",
        "тест",
        "test",
        "документы",
        "documents",
        "прайс",
        "цена",
        "price",
        "коммерческое предложение",
        "обратный звонок",
    }
)
_GENERIC_KEYS = frozenset(s.replace(" ", "") for s in _GENERIC_SUBJECTS)
SUBJECT_KEY_MIN = 4  # letters and digits: "Re: 1С" threads nothing
SUBJECT_KEY_MAX = 200  # characters kept as they are; a longer subject is kept by its hash


def subject_key(subject: str) -> str | None:
    """What a subject says of a letter's thread, for a reply whose mail program dropped
    In-Reply-To and References: the `bare_subject`, case-folded, without whitespace (a long
    subject comes back in encoded words, and the space at a word's edge is often lost:
    "1С на" read as "1Сна"); None when it is too short or too generic to tell one thread from
    another ("Re: Вопрос", "(без темы)"). A long one is cut and ends with its hash (an index
    entry is bounded).

    >>> subject_key("RE: Fwd:  Продление   ЛИЦЕНЗИИ")
    'продлениелицензии'
    >>> [subject_key(s) for s in ("Re: Вопрос?", "(no subject)", "Fwd: Счёт", "Re: 1С", "")]
    [None, None, None, None, None]
    """
    key = "".join(bare_subject(subject).casefold().split())
    words = "".join(_WORDS.findall(key.replace("ё", "е"))).replace("_", "")
    if sum(1 for ch in words if ch.isalnum()) < SUBJECT_KEY_MIN or words in _GENERIC_KEYS:
        return None
    if len(key) > SUBJECT_KEY_MAX:
        key = key[: SUBJECT_KEY_MAX - 40] + "#sha256-" + hashlib.sha256(key.encode()).hexdigest()[:32]
    return key


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
