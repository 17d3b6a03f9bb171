"""Adapter: Bitrix24 through an inbound webhook (REST, `https://<portal>/rest/<user>/<token>/`).

Every call is `POST <webhook><method>.json` with a JSON body; Bitrix24 answers
`{"result": ..., "time": {...}}`, or `{"error": "CODE", "error_description": "..."}` (the code
may be empty, the description then says what). Too many requests: HTTP 503 with
`QUERY_LIMIT_EXCEEDED` (a leaky bucket, about 2 requests a second on most plans), retried
here after 0.5 s, 1 s, 2 s... (apidocs.bitrix24.com, "Limits").

Look-up (each step only when the previous found nothing):
1. `crm.duplicate.findbycomm` {entity_type: CONTACT, then COMPANY; type: PHONE or EMAIL;
   values}: Bitrix24 compares phones by their digits as typed, so the number goes in the
   forms people type it (+7916..., 7916..., 8916...); the answer is `{"CONTACT": [ids]}`, or
   `[]` when nothing matched;
2. `crm.deal.list` {filter: {CONTACT_ID | COMPANY_ID, CLOSED: N}, select: ID, STAGE_ID,
   ASSIGNED_BY_ID, OPPORTUNITY}, the most recently changed first: the open deal;
3. without an open deal, `crm.contact.get` / `crm.company.get`: the customer's responsible;
4. with no contact or company (and `leads`, the default), the open lead: many offices keep an
   enquiry as a lead until it is qualified and converted, and a caller whose only record is
   one belongs to its responsible. `crm.duplicate.findbycomm` {entity_type: LEAD} for the
   phone and the e-mail (both in one `batch` when there are both), then `crm.lead.list`
   {filter: {@ID: those, STATUS_SEMANTIC_ID: P}}, the most recently changed first: a lead in
   progress, not converted (S) nor junk (F). At most two more calls, made only for callers
   the portal has no contact or company for. (Bitrix24 returns the 20 oldest duplicates of
   each kind: a caller with more leads than that may have their open one missed.)

Push: a contact whose customer Bitrix24 knows (found at routing, or now as the look-up finds
them, an open lead included) becomes an activity (`crm.activity.add`: a call or an e-mail,
incoming, completed, on the deal or else the customer or lead) or, with `write_back: comment`
and for web forms, a timeline comment (`crm.timeline.comment.add`); a stranger's contact
becomes a lead (`crm.lead.add`). Activities and leads carry our idempotency key in ORIGIN_ID:
a retry first asks (`crm.activity.list` / `crm.lead.list` filtered by ORIGIN_ID) whether the
last attempt got through after all, so a dropped answer does not make a second one. (Timeline
comments have no such field; a retry after a dropped answer may repeat one.)

Change events: an outbound webhook (Bitrix24's "event handlers") for ONCRMDEALADD,
ONCRMDEALUPDATE, ONCRMCONTACTADD, ONCRMCONTACTUPDATE, ONCRMCOMPANYADD, ONCRMCOMPANYUPDATE and,
with `leads`, ONCRMLEADADD and ONCRMLEADUPDATE posts, form-encoded,
`event=ONCRMDEALUPDATE&data[FIELDS][ID]=45&ts=...&auth[application_token]=...`, to
`/api/crm/external/events`; the application token Bitrix24 shows for that webhook goes in
the variable named by `events_token_env`, and a post without it is refused. The event says
only which deal, customer or lead changed (`notice`), and costs at most one call: a deal's
customers come from `crm.deal.get`; when a contact the portal did not know at arrival waits
(`base.unknown_to_it`), also the customer's phones and e-mails, to find it by, in the same
call (`batch`, the customer's get reading the deal's CONTACT_ID / COMPANY_ID through
`$result[deal][...]`), or for a contact, company or lead event its own get. The waiting
contacts concerned are then looked up again (`ExternalSync.rerouted`): a lead converted or
junked no longer routes its caller, the contact it was converted to may.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import phonenumbers

from acd.config.crm_external import ExternalCrmSettings
from acd.crm.external.base import ExternalCrmError, ExternalMatch, Notice, Refused, Unavailable
from acd.crm.external.http import HttpPeer
from acd.crm.identity import normalize_email, normalize_phone

log = logging.getLogger("acd.crm.external")

CALL_TIMEOUT = 10.0
RATE_LIMIT_RETRIES = 5
RATE_LIMIT_FIRST_WAIT = 0.5
ORIGINATOR = "acd"
OWNER_TYPE = {"LEAD": 1, "DEAL": 2, "CONTACT": 3, "COMPANY": 4}  # crm.enum.ownertype
ACTIVITY_CALL, ACTIVITY_EMAIL = 2, 4  # crm.enum.activitytype
INCOMING = 1  # crm.enum.activitydirection
SOURCE = {"call": "CALL", "callback": "CALLBACK", "web": "WEB", "email": "EMAIL"}  # crm.status.list SOURCE
EVENTS = {  # the events whose change may change who serves a customer -> what their ID names
    "ONCRMDEALADD": "DEAL",
    "ONCRMDEALUPDATE": "DEAL",
    "ONCRMCONTACTADD": "CONTACT",
    "ONCRMCONTACTUPDATE": "CONTACT",
    "ONCRMCOMPANYADD": "COMPANY",
    "ONCRMCOMPANYUPDATE": "COMPANY",
    "ONCRMLEADADD": "LEAD",  # a lead converted (or junked) is an update too: its caller looked up again
    "ONCRMLEADUPDATE": "LEAD",
}
KEYS_PER_CUSTOMER = 20  # phones (and e-mails) of one customer a notice carries: a person has a few


def parse_event(form: Mapping[str, str], *, leads: bool = True) -> tuple[str, int] | None:
    """(DEAL | CONTACT | COMPANY | LEAD, id) of an outbound webhook's post; None for another
    event (a lead's, without `leads`: nothing routes by leads then) or an id that is not a
    positive whole number."""
    entity = EVENTS.get(form.get("event", "").upper())
    raw = form.get("data[FIELDS][ID]", "")
    if entity is None or (entity == "LEAD" and not leads):
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or int(raw) == 0:
        return None
    return entity, int(raw)


def _deal_and_customers(n: int) -> dict[str, str]:
    """`batch` commands: deal `n` and its contact and company, their ids read from the deal
    by Bitrix24 (`$result[deal][CONTACT_ID]`; an absent one is 0, a get that fails alone)."""
    cmd = {"deal": "crm.deal.get?" + urlencode({"id": n})}
    for entity in ("CONTACT", "COMPANY"):
        cmd[entity.lower()] = f"crm.{entity.lower()}.get?" + urlencode({"id": f"$result[deal][{entity}_ID]"})
    return cmd


def _command(method: str, params: Mapping[str, str | list[str]]) -> str:
    """One `batch` command, `method?query`, its query read by PHP: a list as `key[0]=...`."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if isinstance(value, list):
            pairs.extend((f"{key}[{i}]", v) for i, v in enumerate(value))
        else:
            pairs.append((key, value))
    return f"{method}?{urlencode(pairs)}"


def _keys(rows: Iterable[Any], region: str) -> tuple[frozenset[str], frozenset[str]]:
    """The phones (E.164) and e-mails (lower case) of customers' rows (`PHONE`, `EMAIL`:
    lists of {"VALUE": ...}), at most `KEYS_PER_CUSTOMER` of each per row."""
    phones: set[str] = set()
    emails: set[str] = set()
    for row in rows:
        if isinstance(row, dict):
            phones.update(p for v in _values(row.get("PHONE")) if (p := normalize_phone(v, region)))
            emails.update(e for v in _values(row.get("EMAIL")) if (e := normalize_email(v)))
    return frozenset(phones), frozenset(emails)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _values(items: Any) -> list[str]:
    """The VALUEs of a multi-field (PHONE, EMAIL), the first `KEYS_PER_CUSTOMER`."""
    if not isinstance(items, list):
        return []
    values = (i.get("VALUE") for i in items[:KEYS_PER_CUSTOMER] if isinstance(i, dict))
    return [v for v in values if isinstance(v, str)]


def phone_forms(e164: str) -> list[str]:
    """How one number may be typed into Bitrix24: +79161234567, 79161234567, 89161234567."""
    forms = [e164, e164.lstrip("+")]
    try:
        national = phonenumbers.format_number(phonenumbers.parse(e164), phonenumbers.PhoneNumberFormat.NATIONAL)
    except phonenumbers.NumberParseException:
        return forms
    digits = "".join(ch for ch in national if ch.isdigit())
    return list(dict.fromkeys([*forms, digits]))


class Bitrix24Crm(HttpPeer):
    name = "bitrix24"

    def __init__(
        self,
        settings: ExternalCrmSettings,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not settings.url:
            raise ValueError("the Bitrix24 webhook URL is not configured")
        self.settings = settings
        self._sleep = sleep

    async def call(self, method: str, params: Mapping[str, Any]) -> Any:
        """One REST method's `result`; QUERY_LIMIT_EXCEEDED waits and tries again."""
        wait = RATE_LIMIT_FIRST_WAIT
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            status, data = await self._post(method, params)
            error = data.get("error") if isinstance(data, dict) else None
            if error == "QUERY_LIMIT_EXCEEDED":
                if attempt == RATE_LIMIT_RETRIES:
                    break
                log.info("Bitrix24 %s: QUERY_LIMIT_EXCEEDED; retrying in %.1f s", method, wait)
                await self._sleep(wait)
                wait *= 2
                continue
            if error is not None or status >= 400:
                described = data.get("error_description", "") if isinstance(data, dict) else ""
                what = f"Bitrix24 {method}: HTTP {status} {error or ''} {described}".rstrip()
                raise Unavailable(what) if status >= 500 or status == 429 else Refused(what)
            if not isinstance(data, dict) or "result" not in data:
                raise Unavailable(f"Bitrix24 {method}: an answer without result")
            return data["result"]
        raise Unavailable(f"Bitrix24 {method}: QUERY_LIMIT_EXCEEDED after {RATE_LIMIT_RETRIES} retries")

    async def _post(self, method: str, params: Mapping[str, Any]) -> tuple[int, Any]:
        try:
            async with self._http().post(
                f"{self.settings.url}{method}.json",
                json=dict(params),
                timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT),
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as err:
            raise Unavailable(f"Bitrix24 {method}: {type(err).__name__}: {err}") from err
        try:
            return status, json.loads(text)
        except ValueError:
            if status >= 500:
                return status, None
            raise Unavailable(f"Bitrix24 {method}: HTTP {status}, not JSON") from None

    # ---- look-up ------------------------------------------------------------------------

    async def find(self, phone: str | None, email: str | None) -> tuple[str, int] | None:
        """("CONTACT" | "COMPANY", id) of the oldest customer with this phone or e-mail."""
        for kind, values in (("PHONE", phone_forms(phone) if phone else []), ("EMAIL", [email] if email else [])):
            if not values:
                continue
            for entity in ("CONTACT", "COMPANY"):
                found = await self.call(
                    "crm.duplicate.findbycomm", {"entity_type": entity, "type": kind, "values": values}
                )
                ids = found.get(entity) if isinstance(found, dict) else None  # [] when nothing matched
                if ids:
                    return entity, min(int(i) for i in ids)
        return None

    async def open_lead(self, phone: str | None, email: str | None) -> dict[str, Any] | None:
        """The most recently changed lead in progress (STATUS_SEMANTIC_ID P) with this phone or
        e-mail, in at most two calls: the duplicate searches (in one `batch` when both are
        given), then one `crm.lead.list` of the leads found."""
        searches: dict[str, dict[str, str | list[str]]] = {}
        for kind, values in (("PHONE", phone_forms(phone) if phone else []), ("EMAIL", [email] if email else [])):
            if values:
                searches[kind.lower()] = {"entity_type": "LEAD", "type": kind, "values": values}
        if not searches:
            return None
        if len(searches) == 1:
            answers = [await self.call("crm.duplicate.findbycomm", next(iter(searches.values())))]
        else:
            cmd = {key: _command("crm.duplicate.findbycomm", params) for key, params in searches.items()}
            done = _dict(await self.call("batch", {"halt": 0, "cmd": cmd}))
            if failed := _dict(done.get("result_error")):
                # Not knowing is not "no lead": routed as a stranger, they might miss their manager.
                raise Unavailable(f"Bitrix24 batch crm.duplicate.findbycomm: {failed}")
            answers = list(_dict(done.get("result")).values())
        ids = sorted({int(i) for a in answers for i in _dict(a).get("LEAD") or [] if str(i).isdigit()})
        if not ids:
            return None
        leads = await self.call(
            "crm.lead.list",
            {
                "filter": {"@ID": ids, "STATUS_SEMANTIC_ID": "P"},
                "select": ["ID", "NAME", "LAST_NAME", "COMPANY_TITLE", "ASSIGNED_BY_ID", "OPPORTUNITY"],
                "order": {"DATE_MODIFY": "DESC"},
            },
        )
        return leads[0] if isinstance(leads, list) and leads and isinstance(leads[0], dict) else None

    async def lookup(self, phone: str | None, email: str | None) -> ExternalMatch | None:
        found = await self.find(phone, email)
        if found is None:
            lead = await self.open_lead(phone, email) if self.settings.leads else None
            if lead is None:
                return None
            name = " ".join(str(lead[k]) for k in ("NAME", "LAST_NAME") if lead.get(k)) or lead.get("COMPANY_TITLE")
            return ExternalMatch(
                self.name,
                f"LEAD:{lead['ID']}",
                name=str(name or ""),
                responsible=_text(lead.get("ASSIGNED_BY_ID")),
                amount=_amount(lead.get("OPPORTUNITY")),
            )
        entity, n = found
        deals = await self.call(
            "crm.deal.list",
            {
                "filter": {f"{entity}_ID": n, "CLOSED": "N"},
                "select": ["ID", "TITLE", "STAGE_ID", "ASSIGNED_BY_ID", "OPPORTUNITY"],
                "order": {"DATE_MODIFY": "DESC"},
            },
        )
        ref = f"{entity}:{n}"
        if isinstance(deals, list) and deals:
            d = deals[0]
            return ExternalMatch(
                system=self.name,
                customer=ref,
                deal=str(d["ID"]),
                stage=_text(d.get("STAGE_ID")),
                responsible=_text(d.get("ASSIGNED_BY_ID")),
                amount=_amount(d.get("OPPORTUNITY")),
            )
        row = await self.call(f"crm.{entity.lower()}.get", {"id": n})
        row = row if isinstance(row, dict) else {}
        name = row.get("TITLE") or " ".join(str(row[k]) for k in ("NAME", "LAST_NAME") if row.get(k))
        return ExternalMatch(self.name, ref, name=str(name or ""), responsible=_text(row.get("ASSIGNED_BY_ID")))

    async def notice(self, entity: str, n: int, region: str = "RU", *, keys: bool = False) -> Notice:
        """Whose contacts an event about deal, contact, company or lead `n` concerns, in at
        most one call. A deal's customers are asked for; when that fails (the deal deleted, the
        portal busy), the contacts routed by that deal still are. With `keys`, the customer's
        phones (read in `region`) and e-mails too, for the contacts the portal did not know
        at arrival; a contact, company or lead event asks for nothing without them."""
        what = f"Bitrix24 {entity.lower()} {n} changed"
        if entity != "DEAL":
            ref = frozenset({f"{entity}:{n}"})
            if not keys:
                return Notice(self.name, what, customers=ref, region=region)
            row = await self._asked(f"crm.{entity.lower()}.get", {"id": n}, f"{entity.lower()} {n}")
            phones, emails = _keys([row], region)
            return Notice(self.name, what, customers=ref, phones=phones, emails=emails, region=region)
        if keys:
            found = await self._asked("batch", {"halt": 0, "cmd": _deal_and_customers(n)}, f"deal {n}")
            done = _dict(found.get("result"))  # PHP's empty array ([]) when every command failed
            deal = _dict(done.get("deal"))
            phones, emails = _keys([done.get("contact"), done.get("company")], region)
        else:
            deal = await self._asked("crm.deal.get", {"id": n}, f"deal {n}")
            phones, emails = frozenset(), frozenset()
        owners = {f"{e}:{deal[f'{e}_ID']}" for e in ("CONTACT", "COMPANY") if str(deal.get(f"{e}_ID") or "0") != "0"}
        return Notice(
            self.name,
            what,
            customers=frozenset(owners),
            deals=frozenset({str(n)}),
            phones=phones,
            emails=emails,
            region=region,
        )

    async def _asked(self, method: str, params: Mapping[str, Any], what: str) -> dict[str, Any]:
        """A notice's one call; a failure leaves it with what the event itself says (logged)."""
        try:
            found = await self.call(method, params)
        except ExternalCrmError as err:
            log.warning("Bitrix24 %s: %s; re-routing only the contacts it names by itself", what, err)
            return {}
        return _dict(found)

    # ---- push ---------------------------------------------------------------------------

    async def push(self, key: str, body: Mapping[str, Any]) -> str | None:
        customer = body.get("customer") or {}
        ext = body.get("external") or {}
        ref, deal = ext.get("customer"), ext.get("deal")
        if not ref:
            phone, email = customer.get("phone"), customer.get("email")
            found = await self.find(phone, email)
            ref = f"{found[0]}:{found[1]}" if found else None
            if ref is None and self.settings.leads and (lead := await self.open_lead(phone, email)):
                ref = f"LEAD:{lead['ID']}"  # their enquiry is open: it gets the activity, not a second lead
        if ref is None:
            return await self._once("lead", key, lambda: self._lead(key, body))
        entity, _, n = str(ref).partition(":")
        if self.settings.write_back == "comment" or body.get("channel") == "web":
            target, target_id = ("deal", deal) if deal else (entity.lower(), n)
            fields = {"ENTITY_ID": int(target_id), "ENTITY_TYPE": target, "COMMENT": describe(body)}
            return _text(await self.call("crm.timeline.comment.add", {"fields": fields}))
        return await self._once("activity", key, lambda: self._activity(key, body, entity, int(n), deal))

    async def _once(self, what: str, key: str, add: Callable[[], Awaitable[Any]]) -> str | None:
        """Add unless an earlier attempt already did (found by ORIGIN_ID)."""
        earlier = await self.call(f"crm.{what}.list", {"filter": {"ORIGIN_ID": key}, "select": ["ID"]})
        if isinstance(earlier, list) and earlier:
            return _text(earlier[0].get("ID"))
        return _text(await add())

    async def _activity(self, key: str, body: Mapping[str, Any], entity: str, n: int, deal: Any) -> Any:
        customer = body.get("customer") or {}
        email_channel = body.get("channel") == "email"
        value = (customer.get("email") if email_channel else customer.get("phone")) or ""
        at = _iso(body.get("finished_at"))
        fields: dict[str, Any] = {
            "OWNER_TYPE_ID": OWNER_TYPE["DEAL"] if deal else OWNER_TYPE[entity],
            "OWNER_ID": int(deal) if deal else n,
            "TYPE_ID": ACTIVITY_EMAIL if email_channel else ACTIVITY_CALL,
            "SUBJECT": subject(body),
            "DESCRIPTION": describe(body),
            "DESCRIPTION_TYPE": 1,  # plain text (crm.enum.contenttype)
            "DIRECTION": INCOMING,
            "COMPLETED": "Y",
            "START_TIME": _iso(body.get("arrived_at")),
            "END_TIME": at,
            # Required by crm.activity.add: who the activity was with.
            "COMMUNICATIONS": [{"VALUE": value, "ENTITY_ID": n, "ENTITY_TYPE_ID": OWNER_TYPE[entity]}],
            "ORIGINATOR_ID": ORIGINATOR,
            "ORIGIN_ID": key,
        }
        if user := (body.get("manager") or {}).get("external_id"):
            fields["RESPONSIBLE_ID"] = int(user)
        return await self.call("crm.activity.add", {"fields": fields})

    async def _lead(self, key: str, body: Mapping[str, Any]) -> Any:
        customer = body.get("customer") or {}
        fields: dict[str, Any] = {
            "TITLE": subject(body),
            "NAME": customer.get("name") or "",
            "SOURCE_ID": SOURCE.get(str(body.get("channel")), "OTHER"),
            "COMMENTS": describe(body),
            "ORIGINATOR_ID": ORIGINATOR,
            "ORIGIN_ID": key,
        }
        if customer.get("phone"):
            fields["PHONE"] = [{"VALUE": customer["phone"], "VALUE_TYPE": "WORK"}]
        if customer.get("email"):
            fields["EMAIL"] = [{"VALUE": customer["email"], "VALUE_TYPE": "WORK"}]
        if user := (body.get("manager") or {}).get("external_id"):
            fields["ASSIGNED_BY_ID"] = int(user)
        return await self.call("crm.lead.add", {"fields": fields, "params": {"REGISTER_SONET_EVENT": "Y"}})


def subject(body: Mapping[str, Any]) -> str:
    customer = body.get("customer") or {}
    who = customer.get("name") or customer.get("phone") or customer.get("email") or "?"
    return f"ACD {body.get('channel')}: {who}"


def describe(body: Mapping[str, Any]) -> str:
    manager = (body.get("manager") or {}).get("id") or "-"
    criteria = ", ".join(f"{k}={v}" for k, v in sorted((body.get("criteria") or {}).items()))
    return f"{body.get('channel')}, outcome {body.get('outcome')}, manager {manager}" + (
        f"; {criteria}" if criteria else ""
    )


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _amount(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _iso(at: Any) -> str | None:
    return datetime.fromtimestamp(float(at), UTC).isoformat() if isinstance(at, int | float) else None


__all__ = ["EVENTS", "Bitrix24Crm", "parse_event", "phone_forms"]
