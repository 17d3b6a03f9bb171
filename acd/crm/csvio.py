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
Dates are YYYY-MM-DD (midnight, site time) or ISO 8601 date-times; amounts may use a
decimal comma and spaces as thousands separators ("1 250 000,50").
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
    return {str(k).strip().lower(): str(v or "").strip() for k, v in row.items() if k is not None}


def _id(row: Mapping[str, str], column: str) -> str | None:
    value = row.get(column) or None
    if value is not None and len(value) > ID_MAX:
        raise RowError(f"{column}: at most {ID_MAX} characters")
    return value


def _split(cell: str) -> list[str]:
    return [p.strip() for p in re.split(r"[;\n]", cell) if p.strip()]


def parse_amount(cell: str) -> float | None:
    if not cell:
        return None
    text = _SPACES.sub("", cell).replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        raise RowError(f"amount: {cell!r} is not a number") from None
    if value < 0 or value != value or value in (float("inf"),):
        raise RowError(f"amount: {cell!r} must be zero or more")
    return value


def parse_when(cell: str, tz: str, name: str) -> float | None:
    if not cell:
        return None
    try:
        if len(cell) == 10:
            d = date.fromisoformat(cell)
            return datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(tz)).timestamp()
        moment = datetime.fromisoformat(cell)
    except ValueError:
        raise RowError(f"{name}: {cell!r} is not a date (YYYY-MM-DD)") from None
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
        except RowError as err:
            out.rejected.append(Rejected(i, str(err), row))
    return out


def _iso(ts: float | None, tz: str) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, ZoneInfo(tz)).isoformat(timespec="seconds")


def customers_csv(customers: Iterable[Customer]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CUSTOMER_COLUMNS)
    for c in customers:
        w.writerow([c.id, c.name, c.kind, ";".join(c.phones), ";".join(c.emails), c.account_manager or "", c.note])
    return buf.getvalue()


def deals_csv(deals: Iterable[Deal], tz: str, segment_keys: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*DEAL_COLUMNS, *segment_keys])
    for d in deals:
        w.writerow(
            [
                d.id,
                d.customer_id,
                "",
                "",
                "",
                d.title,
                "" if d.amount is None else repr(d.amount),
                d.status.value,
                d.owner or "",
                d.stage,
                d.stage_owner or "",
                _iso(d.opened_at, tz),
                _iso(d.closed_at, tz),
                *(d.segment.get(k, "") for k in segment_keys),
            ]
        )
    return buf.getvalue()
