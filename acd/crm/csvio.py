"""Pure: CSV in and out. Every row is accepted or rejected with its line and reason;
nothing is half-imported from a bad row.

Customers: id, name, kind, phone, email, account_manager, note
    (several phones or e-mails in one cell are separated by ";")
Deals:     id, customer_id, customer_phone, customer_email, customer_name, title, amount,
           status (won | lost | open), owner, stage, stage_owner, opened, closed, and one
           column per segment criterion (purpose, price_tier, temperature...)
    A row whose id is a stored deal updates it; what the file does not carry (the deal's
    contact, a supervisor's override mark, the stage owner of a file without that column)
    is kept, so an export imported again changes nothing.
Dates, in the site's time zone unless they say otherwise: YYYY-MM-DD or ISO 8601 date-times
(2024-03-31, 2024-03-31T14:05), or as Russian Excel writes them, day first: DD.MM.YYYY with an
optional time (31.03.2024, 31.03.2024 14:05). A date with slashes (03/04/2024: day or month
first?) or a two-digit year (31.03.24) is refused, as is a day no calendar has (31.02.2024).

Amounts: digits, optionally followed by the currency (₽, руб., р., RUB, $, USD, €, EUR, which is
not read: an amount is a number in the office's currency). Spaces (also non-breaking and thin
ones) separate thousands; so do dots before a decimal comma ("1.500.000,50"). The comma is the
decimal sign, as in Russian files: "1 250 000,50" is a million and a quarter, and "1,500" is one
and a half (the import report warns about such a figure). A dot alone is a decimal point too
("1500000.50", as the export writes it). "1,5 млн" and the like are refused: write the whole number.

Exports come plain (",", a decimal point, ISO 8601 times: for machines) or for Excel with
Russian regional settings (";", a decimal comma, DD.MM.YYYY HH:MM:SS, a BOM); both are read
back. The Excel variant writes text Excel would turn into a number or a date, or run as a formula
(+79001234567, 0012, 03.04, =Ромашка), as a formula giving that text (="+79001234567"); the import
reads such a cell as its text, and drops the apostrophe older exports put before a formula's start.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from acd.crm.identity import normalize_email, normalize_phone
from acd.crm.model import Customer, Deal, DealStatus

CUSTOMER_COLUMNS = ("id", "name", "kind", "phone", "email", "account_manager", "note")
DEAL_COLUMNS = (
    "id",
    "customer_id",
    "customer_phone",
    "customer_email",
    "customer_name",
    "title",
    "amount",
    "status",
    "owner",
    "stage",
    "stage_owner",
    "opened",
    "closed",
)
_SPACES = re.compile(r"[\s\u00a0\u202f]")
ID_MAX = 200  # characters: an id is a key, and PostgreSQL's index entries hold about 2.7 KB


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    reason: str
    row: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class CustomerRow:
    line: int
    id: str | None
    name: str
    kind: str
    phones: tuple[str, ...]
    emails: tuple[str, ...]
    account_manager: str | None
    note: str


@dataclass(frozen=True, slots=True)
class DealRow:
    line: int
    id: str | None
    customer_id: str | None
    phone: str | None
    email: str | None
    customer_name: str
    title: str
    amount: float | None
    status: DealStatus
    owner: str | None
    stage: str
    opened_at: float
    closed_at: float | None
    segment: Mapping[str, str]
    stage_owner: str | None = None
    has_stage_owner: bool = False  # the file has the column (else a stored deal keeps its own)


@dataclass
class Parsed:
    customers: list[CustomerRow] = field(default_factory=list)
    deals: list[DealRow] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    warnings: list[Rejected] = field(default_factory=list)  # rows taken, but read in a way worth a look


class RowError(ValueError):
    pass


class NotText(ValueError):
    """The file is not a text table (a spreadsheet's own format, say)."""


def decoded(body: bytes) -> str:
    """The text of an uploaded CSV file. Excel in a Russian locale saves "CSV" in
    Windows-1251 and "Unicode text" in UTF-16 with a byte-order mark; everything else
    is expected to be UTF-8 (a BOM, as Excel's "CSV UTF-8" writes it, is dropped)."""
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = body.decode("utf-16", errors="replace")
    else:
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text = body.decode("cp1251")
            except UnicodeDecodeError:
                raise NotText("the file is neither UTF-8 nor Windows-1251 text: save it as CSV UTF-8") from None
    if "\0" in text:
        # a spreadsheet's binary format, or UTF-16 without its byte-order mark
        raise NotText("the file holds NUL characters, so it is not a CSV text: save it as CSV UTF-8")
    return text


def _reader(text: str) -> csv.DictReader[str]:
    text = text.lstrip("\ufeff")  # Excel writes a BOM
    sample = text[:4096]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    return csv.DictReader(io.StringIO(text), dialect=dialect)


def _clean(row: Mapping[str | None, object]) -> dict[str, str]:
    return {str(k).strip().lower(): _active(str(v or "").strip()) for k, v in row.items() if k is not None}


def _active(cell: str) -> str:
    """The text of a cell as the export had it: the text a formula of string constants gives
    (="0012", ="a""b"&"c", as excel_text writes it and as Excel would show it), or the cell
    without the apostrophe an export put before a formula's start (`inert`), so an exported
    file imported again reads "=Ромашка" as it was, not as ="=Ромашка" or "'=Ромашка"."""
    if _TEXT_FORMULA.fullmatch(cell):
        return "".join(part.replace('""', '"') for part in _STRING.findall(cell)).strip()
    return cell[1:] if cell[:1] == "'" and cell[1:2] in FORMULA_START else cell


def _id(row: Mapping[str, str], column: str) -> str | None:
    value = row.get(column) or None
    if value is not None and len(value) > ID_MAX:
        raise RowError(f"{column}: at most {ID_MAX} characters")
    return value


def _split(cell: str) -> list[str]:
    return [p.strip() for p in re.split(r"[;\n]", cell) if p.strip()]


AMOUNT_RULE = (
    "digits with a decimal comma (1 500 000,50 or 1.500.000,50; the comma is always the decimal sign, "
    "so 1,500 is one and a half) or a decimal point (1500000.50), optionally followed by "
    "₽, руб., р., RUB, $, USD, € or EUR"
)
# the currency after an amount: not read (an amount is in the office's currency)
_CURRENCY = re.compile(r"(?:₽|руб(?:лей|ля|ль)?\.?|р\.?|rub\.?|rur\.?|\$|usd|€|eur)$", re.IGNORECASE)
# words people shorten big figures with: refused rather than guessed at
_MULTIPLIER = re.compile(r"(млрд|млн|мил+и?о?н\w*|тыс\w*|т|k|к|mln|mio|m|bn|thousand|million)\.?$", re.IGNORECASE)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?", re.IGNORECASE)
_THOUSANDS_GROUPS = re.compile(r"\d{1,3}(?:\.\d{3})+")
_LOOKS_LIKE_THOUSANDS = re.compile(r"\d{1,3}[,.]\d{3}")


def parse_amount(cell: str) -> float | None:
    """An amount as Russian offices write it (see the module's note); None for an empty cell."""
    if not cell:
        return None
    text = _SPACES.sub("", cell)
    text = _CURRENCY.sub("", text)
    if (word := _MULTIPLIER.search(text)) is not None and any(ch.isdigit() for ch in text):
        raise RowError(f"amount: {cell!r}: write the whole number (1 500 000), not {word.group(0)!r}")
    if text.count(",") > 1:
        raise RowError(f"amount: {cell!r} has more than one comma; write {AMOUNT_RULE}")
    if "," in text:
        whole, fraction = text.split(",")
        if "." in fraction:
            raise RowError(f"amount: {cell!r} has a dot after the decimal comma; write {AMOUNT_RULE}")
        if "." in whole:
            if not _THOUSANDS_GROUPS.fullmatch(whole.lstrip("+-")):
                raise RowError(
                    f"amount: {cell!r}: dots before a decimal comma part thousands, in threes; write {AMOUNT_RULE}"
                )
            whole = whole.replace(".", "")
        text = f"{whole}.{fraction}"
    elif text.count(".") > 1:
        if not _THOUSANDS_GROUPS.fullmatch(text.lstrip("+-")):
            raise RowError(f"amount: {cell!r} is not a number; write {AMOUNT_RULE}")
        text = text.replace(".", "")
    if not _NUMBER.fullmatch(text):
        raise RowError(f"amount: {cell!r} is not a number; write {AMOUNT_RULE}")
    value = float(text)
    if value < 0 or value != value or value in (float("inf"),):
        raise RowError(f"amount: {cell!r} must be zero or more")
    return value


def amount_note(cell: str) -> str | None:
    """A warning for an amount that is read as the rule says but may have been meant
    otherwise: "1,500" is one and a half here, and a thousand and a half in an English file;
    "1.500" is one and a half here, and a thousand and a half where dots part thousands."""
    text = _CURRENCY.sub("", _SPACES.sub("", cell))
    if _LOOKS_LIKE_THOUSANDS.fullmatch(text):
        sign = "the comma is the decimal sign" if "," in text else "a dot alone is the decimal point"
        value = float(text.replace(",", "."))
        return f"amount: {cell!r} is read as {value:g} ({sign}); check it was not meant as thousands"
    return None


_DAY_FIRST = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d+)(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?")
_SLASHED = re.compile(r"\d{1,4}/\d{1,2}/\d{1,4}(?:[ T].*)?")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
DATE_RULE = "YYYY-MM-DD or DD.MM.YYYY, optionally with a time HH:MM"


def parse_when(cell: str, tz: str, name: str) -> float | None:
    """A moment: ISO 8601 (a date alone is its midnight) or DD.MM.YYYY [HH:MM[:SS]], in the
    site's time zone `tz` unless the text names its offset; None for an empty cell."""
    if not cell:
        return None
    text = " ".join(cell.split())
    if (m := _DAY_FIRST.fullmatch(text)) is not None:
        day, month, year, hour, minute, second = m.groups()
        if len(year) != 4:
            raise RowError(f"{name}: {cell!r}: write the year in full (DD.MM.YYYY)")
        try:
            moment = datetime(
                int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), tzinfo=ZoneInfo(tz)
            )
        except ValueError:
            raise RowError(f"{name}: {cell!r} is no such date or time (day.month.year)") from None
        return moment.timestamp()
    if _SLASHED.fullmatch(text):
        raise RowError(f"{name}: {cell!r} is ambiguous (day or month first?): write {DATE_RULE}")
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(tz)).timestamp()
        moment = datetime.fromisoformat(text)
    except ValueError:
        if _ISO_DAY.match(text):
            raise RowError(f"{name}: {cell!r} is no such date or time (year-month-day)") from None
        raise RowError(f"{name}: {cell!r} is not a date ({DATE_RULE})") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(tz))
    return moment.timestamp()


def parse_customers(text: str, region: str, managers: Iterable[str]) -> Parsed:
    known = set(managers)
    out = Parsed()
    for i, raw in enumerate(_reader(text), start=2):
        row = _clean(raw)
        try:
            phones, emails = [], []
            for p in _split(row.get("phone", "")):
                n = normalize_phone(p, region)
                if n is None:
                    raise RowError(f"phone: {p!r} is not a phone number")
                phones.append(n)
            for e in _split(row.get("email", "")):
                n = normalize_email(e)
                if n is None:
                    raise RowError(f"email: {e!r} is not an e-mail address")
                emails.append(n)
            name = row.get("name", "")
            if not (name or phones or emails):
                raise RowError("a customer needs a name, a phone or an e-mail")
            kind = row.get("kind", "") or "company"
            if kind not in ("company", "person"):
                raise RowError(f"kind: {kind!r} is not company or person")
            am = row.get("account_manager") or None
            if am is not None and am not in known:
                raise RowError(f"account_manager: no manager {am!r}")
            out.customers.append(
                CustomerRow(i, _id(row, "id"), name, kind, tuple(phones), tuple(emails), am, row.get("note", ""))
            )
        except RowError as err:
            out.rejected.append(Rejected(i, str(err), row))
    return out


def parse_deals(
    text: str,
    region: str,
    tz: str,
    managers: Iterable[str],
    stages: Sequence[str],
    criteria: Mapping[str, Sequence[str]],
) -> Parsed:
    """`criteria` maps each segment criterion to its allowed values."""
    known = set(managers)
    out = Parsed()
    for i, raw in enumerate(_reader(text), start=2):
        row = _clean(raw)
        try:
            status_text = (row.get("status") or "").lower()
            try:
                status = DealStatus(status_text)
            except ValueError:
                raise RowError(f"status: {status_text!r} is not won, lost or open") from None
            amount = parse_amount(row.get("amount", ""))
            note = amount_note(row.get("amount", ""))
            if status is DealStatus.WON and amount is None:
                raise RowError("amount: a won deal needs its amount")
            owner = row.get("owner") or None
            if owner is None:
                raise RowError("owner: a deal needs the manager who had it")
            if owner not in known:
                raise RowError(f"owner: no manager {owner!r}")
            stage = row.get("stage", "")
            if stage and stage not in stages:
                raise RowError(f"stage: {stage!r} is not one of {', '.join(stages)}")
            stage_owner = row.get("stage_owner") or None
            if stage_owner is not None and stage_owner not in known:
                raise RowError(f"stage_owner: no manager {stage_owner!r}")
            opened = parse_when(row.get("opened", ""), tz, "opened")
            closed = parse_when(row.get("closed", ""), tz, "closed")
            if status is not DealStatus.OPEN and closed is None:
                raise RowError("closed: a won or lost deal needs its closing date")
            if opened is None:
                opened = closed
            if opened is None:
                raise RowError("opened: an open deal needs its opening date")
            if closed is not None and closed < opened:
                raise RowError("closed: before opened")
            segment: dict[str, str] = {}
            for name, values in criteria.items():
                value = row.get(name, "")
                if value and value not in values:
                    raise RowError(f"{name}: {value!r} is not one of {', '.join(values)}")
                if value:
                    segment[name] = value
            phone = None
            if row.get("customer_phone"):
                phone = normalize_phone(row["customer_phone"], region)
                if phone is None:
                    raise RowError(f"customer_phone: {row['customer_phone']!r} is not a phone number")
            email = None
            if row.get("customer_email"):
                email = normalize_email(row["customer_email"])
                if email is None:
                    raise RowError(f"customer_email: {row['customer_email']!r} is not an e-mail address")
            cid = _id(row, "customer_id")
            if not (cid or phone or email or row.get("customer_name")):
                raise RowError("a deal needs its customer: customer_id, customer_phone, customer_email or name")
            out.deals.append(
                DealRow(
                    line=i,
                    id=_id(row, "id"),
                    customer_id=cid,
                    phone=phone,
                    email=email,
                    customer_name=row.get("customer_name", ""),
                    title=row.get("title", ""),
                    amount=amount,
                    status=status,
                    owner=owner,
                    stage=stage,
                    opened_at=opened,
                    closed_at=closed if status is not DealStatus.OPEN else None,
                    segment=segment,
                    stage_owner=stage_owner,
                    has_stage_owner="stage_owner" in row,
                )
            )
            if note is not None:
                out.warnings.append(Rejected(i, note, row))
        except RowError as err:
            out.rejected.append(Rejected(i, str(err), row))
    return out


def _iso(ts: float | None, tz: str) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, ZoneInfo(tz)).isoformat(timespec="seconds")


# ---- export ---------------------------------------------------------------------------
# Two variants of every export. The plain one is for machines (and our own import): comma
# separated, numbers with a dot, ISO 8601 times. The Excel one is what a double-click opens
# right in Excel with Russian regional settings, where ";" is the list separator and "," the
# decimal sign: UTF-8 with a BOM, ";" between cells, numbers with a decimal comma
# ("12,0"), times day first in the site's time zone ("07.12.2026 14:05:00"). The import
# reads both.


class ExcelRu(csv.excel):
    """The CSV dialect of Excel in a Russian locale: ";" separates the cells."""

    delimiter = ";"


# A cell starting with one of these is a formula (or may become one) in spreadsheets.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def inert(text: str) -> str:
    """`text` that a spreadsheet shows as text: an apostrophe before a formula's start."""
    return "'" + text if text[:1] in FORMULA_START else text


class ExcelValue(str):
    """Text written for Excel to convert, as it is (a date excel_when wrote): not excel_text."""

    __slots__ = ()


# One string constant of an Excel formula, its quotes doubled; and a formula made of them only.
_STRING = re.compile(r'"((?:[^"]|"")*)"')
_TEXT_FORMULA = re.compile(r'=(?:"(?:[^"]|"")*"&)*"(?:[^"]|"")*"')
_PIECE = 120  # characters of text a string constant holds: Excel takes at most 255 (quotes doubled)
_FORMULA_TEXT_MAX = 3000  # so the formula stays under Excel's 8192 characters
# What Excel, opening a CSV, turns from text into a number, a date or a time: digits with signs,
# separators, brackets, a percent or a currency, with at most month names, AM/PM, an exponent
# or a currency's letters (+79001234567, 0012, 1-2, 03.04, 12:30, 1E5, 3 мая, (5) руб).
# Erring to "converted" costs nothing: the cell then shows its text through a formula.
_CONVERTED_CHARS = re.compile(r"[\d\s+\-.,:/()%$€₽]*\d[\d\s+\-.,:/()%$€₽]*")
_CONVERTED_WORD = re.compile(
    r"e|a|p|am|pm|г|р|руб|rub|usd|eur"
    r"|jan(uary)?|feb(ruary)?|mar(ch)?|apr(il)?|may|june?|july?|aug(ust)?|sept?(ember)?|oct(ober)?"
    r"|nov(ember)?|dec(ember)?|янв(ар[ья])?|фев(рал[ья])?|мар(та?)?|апр(ел[ья])?|ма[йя]|июн[ья]?|июл[ья]?"
    r"|авг(уста?)?|сен(т(ябр[ья])?)?|окт(ябр[ья])?|ноя(бр[ья])?|дек(абр[ья])?",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\W\d_]+")
_BOOLEANS = frozenset(("истина", "ложь"))  # Russian Excel's TRUE and FALSE


def _converted(text: str) -> bool:
    """Whether Excel opening a CSV would show `text` as something else than this text."""
    if text.strip().lower() in _BOOLEANS:
        return True
    words = _WORD.findall(text)
    if not all(_CONVERTED_WORD.fullmatch(w) for w in words):
        return False
    return _CONVERTED_CHARS.fullmatch(_WORD.sub("", text)) is not None


def excel_text(text: str) -> str:
    """`text` as Excel opening the CSV shows it, the same text. What it would turn into a number
    or a date (a phone, a code with leading zeros, 20 digits, 03.04) or run as a formula (=, +,
    -, @) is written as a formula of string constants, ="+79001234567", its quotes doubled so
    nothing inside can end the constant: Excel shows the text, and computes none of it. A text
    no such formula can hold (a line break, thousands of characters) keeps inert's apostrophe.
    A text the import would read otherwise ('=1, taken for an inert =1) is such a formula too."""
    if not (text[:1] in FORMULA_START or _converted(text) or _active(text) != text):
        return text
    if len(text) > _FORMULA_TEXT_MAX or "\n" in text or "\r" in text:
        return inert(text)
    pieces = [text[i : i + _PIECE] for i in range(0, len(text), _PIECE)]
    return "=" + "&".join('"' + p.replace('"', '""') + '"' for p in pieces)


def excel_number(x: float) -> str:
    """A number as Russian Excel reads it: 12.5 is "12,5" (an int stays as it is)."""
    return repr(x).replace(".", ",") if isinstance(x, float) else str(x)


def excel_when(ts: float | None, tz: str) -> str:
    """A moment as Russian Excel reads a date and time, in the site's time zone `tz`."""
    return "" if ts is None else ExcelValue(datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%d.%m.%Y %H:%M:%S"))


def excel_table(rows: Iterable[Sequence[object]]) -> str:
    """`rows` as the Excel variant: a BOM, then ";"-separated rows. Numbers (int, float) are
    written with excel_number, an ExcelValue as it is; every other cell is text, written with
    excel_text so that Excel shows it as it is; None is empty."""
    buf = io.StringIO()
    buf.write("\ufeff")  # Excel reads UTF-8 only by its byte-order mark
    writer = csv.writer(buf, dialect=ExcelRu)
    for row in rows:
        writer.writerow(
            [
                ""
                if v is None
                else excel_number(v)
                if isinstance(v, (int, float)) and not isinstance(v, bool)
                else v
                if isinstance(v, ExcelValue)
                else excel_text(str(v))
                for v in row
            ]
        )
    return buf.getvalue()


def customers_csv(customers: Iterable[Customer], *, excel: bool = False) -> str:
    rows: list[list[object]] = [list(CUSTOMER_COLUMNS)]
    for c in customers:
        rows.append([c.id, c.name, c.kind, ";".join(c.phones), ";".join(c.emails), c.account_manager or "", c.note])
    return excel_table(rows) if excel else _plain(rows)


def deals_csv(deals: Iterable[Deal], tz: str, segment_keys: Sequence[str], *, excel: bool = False) -> str:
    def when(ts: float | None) -> str:
        return excel_when(ts, tz) if excel else _iso(ts, tz)

    rows: list[list[object]] = [[*DEAL_COLUMNS, *segment_keys]]
    for d in deals:
        rows.append(
            [
                d.id,
                d.customer_id,
                "",
                "",
                "",
                d.title,
                "" if d.amount is None else d.amount if excel else repr(d.amount),
                d.status.value,
                d.owner or "",
                d.stage,
                d.stage_owner or "",
                when(d.opened_at),
                when(d.closed_at),
                *(d.segment.get(k, "") for k in segment_keys),
            ]
        )
    return excel_table(rows) if excel else _plain(rows)


def _plain(rows: Iterable[Sequence[object]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()
