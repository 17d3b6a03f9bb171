"""Adapter: a generic external CRM over HTTP (the office writes the two endpoints).

Look-up: `GET <lookup_url>?phone=%2B79161234567&email=ivan%40example.com` (E.164, lower case;
only what is known). Answers `404` or `{"customer": null}` for a stranger, else

    {"customer": {"id": "C-17", "name": "ООО Ромашка", "responsible": "u7"},
     "deal": {"id": "D-5", "stage": "approval", "responsible": "u7", "amount": 120000}}

(`deal` may be null; its `responsible` wins over the customer's).

Push: `POST <push_url>` with the JSON of `acd.crm.external.base.finished_body` and

    Idempotency-Key: <one uuid per finished contact, the same on every retry>
    X-ACD-Timestamp: <POSIX seconds when this attempt was signed>
    X-ACD-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>

The receiver recomputes the HMAC over the raw body with the shared secret, refuses a stale
timestamp (replays), and answers 2xx once it has the contact — also for a key it has seen
before. 5xx, 408, 409 (still processing that key), 425, 429 and network failures are retried
with back-off; any other 4xx is final.

Change notification (the CRM to us): when who serves a customer may have changed there (a
deal's responsible or stage, the customer's responsible, a deal opened or closed), the CRM
posts to `POST <our server>/api/crm/external/events`

    {"event": "customer.changed",
     "customer": {"id": "C-17", "phone": "+79161234567", "email": "ivan@example.com"}}

(any of id, phone, email; `"deal": {"id": "D-5"}` may be added), signed as our pushes are:
`X-ACD-Timestamp` and `X-ACD-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." +
body)>` over the raw body, with the same shared secret, within `SIGNATURE_TOLERANCE` of our
clock. We answer 202 at once (401 unsigned, 403 a wrong or stale signature, 400 a body we
cannot read), then look the customer's waiting contacts up again and route them by the new
answer: those the look-up knew when they arrived, and those it did not know then (a new
caller) whose phone or e-mail the notification names. Sending one notification twice is
harmless.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from acd.config.crm_external import ExternalCrmSettings
from acd.crm.external.base import ExternalMatch, Notice, Refused, Unavailable
from acd.crm.identity import normalize_email, normalize_phone

PUSH_TIMEOUT = 15.0
SIGNATURE_TOLERANCE = 300.0  # seconds a receiver should accept a timestamp either side of its clock
RETRIED = frozenset({408, 409, 425, 429})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-ACD-Signature` value for one attempt."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, now: float) -> bool:
    """For receivers (and tests): the signature is ours and the timestamp recent."""
    try:
        fresh = abs(now - float(timestamp)) <= SIGNATURE_TOLERANCE
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


def encode(body: Mapping[str, Any]) -> bytes:
    """The body's bytes: one spelling for one body, so every retry signs the same bytes."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


class HttpPeer:
    """One aiohttp session per adapter, opened on first use (inside the running loop)."""

    _session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpCrm(HttpPeer):
    name = "http"

    def __init__(self, settings: ExternalCrmSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock

    async def lookup(self, phone: str | None, email: str | None) -> ExternalMatch | None:
        url = self.settings.lookup_url
        if url is None:
            return None
        params = {k: v for k, v in (("phone", phone), ("email", email)) if v}
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        try:
            async with self._http().get(url, params=params, timeout=timeout) as resp:
                if resp.status == 404:
                    return None
                _check(resp.status, "look-up")
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            raise Unavailable(f"look-up: {type(err).__name__}: {err}") from err
        return _match(data)

    async def push(self, key: str, body: Mapping[str, Any]) -> str | None:
        url, secret = self.settings.push_url, self.settings.secret
        if url is None or not secret:
            raise Refused("push_url or the signing secret is not configured")
        raw = encode(body)
        stamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": key,
            "X-ACD-Timestamp": stamp,
            "X-ACD-Signature": sign(secret, stamp, raw),
        }
        try:
            async with self._http().post(
                url, data=raw, headers=headers, timeout=aiohttp.ClientTimeout(total=PUSH_TIMEOUT)
            ) as resp:
                _check(resp.status, "push")
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError) as err:
            raise Unavailable(f"push: {type(err).__name__}: {err}") from err
        try:
            answer = json.loads(text) if text else None
        except ValueError:
            return None
        found = answer.get("id") if isinstance(answer, dict) else None
        return None if found is None else str(found)


def notice_of(data: Any, region: str) -> Notice | None:
    """The customer a change notification names (see the module's doc); None when it names
    nobody we could find a contact by."""
    customer = data.get("customer") if isinstance(data, dict) else None
    if not isinstance(customer, dict):
        return None
    deal = data.get("deal")
    deal_id = deal.get("id") if isinstance(deal, dict) else None

    def text(value: Any) -> str | None:
        ok = isinstance(value, str | int) and not isinstance(value, bool) and 0 < len(str(value)) <= 320
        return str(value) if ok else None

    ref, raw_phone, raw_email = (text(customer.get(k)) for k in ("id", "phone", "email"))
    deal_ref = text(deal_id)
    phone = normalize_phone(raw_phone, region) if raw_phone else None
    email = normalize_email(raw_email) if raw_email else None
    if not (ref or phone or email or deal_ref):
        return None
    return Notice(
        "http",
        f"the office CRM's customer {ref or phone or email or deal_ref} changed",
        customers=frozenset({ref} if ref else ()),
        deals=frozenset({deal_ref} if deal_ref else ()),
        phones=frozenset({phone} if phone else ()),
        emails=frozenset({email} if email else ()),
        region=region,
    )


def _check(status: int, what: str) -> None:
    if 200 <= status < 300:
        return
    if status >= 500 or status in RETRIED:
        raise Unavailable(f"{what}: HTTP {status}")
    raise Refused(f"{what}: HTTP {status}")


def _match(data: Any) -> ExternalMatch | None:
    if not isinstance(data, dict) or not isinstance(data.get("customer"), dict):
        return None
    customer, deal = data["customer"], data.get("deal")
    if "id" not in customer:
        raise Unavailable("look-up: the answer's customer has no id")
    deal = deal if isinstance(deal, dict) and "id" in deal else None
    responsible = (deal or {}).get("responsible") or customer.get("responsible")
    amount = (deal or {}).get("amount")
    return ExternalMatch(
        system="http",
        customer=str(customer["id"]),
        name=str(customer.get("name") or ""),
        deal=None if deal is None else str(deal["id"]),
        stage=None if deal is None or deal.get("stage") is None else str(deal["stage"]),
        responsible=None if responsible is None else str(responsible),
        amount=float(amount) if isinstance(amount, int | float) else None,
    )


__all__ = ["HttpCrm", "HttpPeer", "encode", "notice_of", "sign", "verify"]
