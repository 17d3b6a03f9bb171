"""Pure: what every external-CRM adapter offers, what it answers, and how an answer routes.

    lookup(phone, email) -> ExternalMatch | None     who the customer is there, their open deal
    push(key, body)      -> the CRM's id for it      one finished contact, sent again on a retry

A `Notice` is the CRM telling us (its change notification, `acd.api.crm_sync`) that who
serves some of its customers may have changed; `rerouted` is what that makes of one waiting
contact the CRM routed.

Errors (raised by adapters, read by `acd.crm.external.sync`):

    ExternalCrmError
     ├── Unavailable   the CRM could not answer now (5xx, timeout, dropped connection,
     │                 Bitrix24's QUERY_LIMIT_EXCEEDED): try again later
     └── Refused       the CRM said no to this request for good (4xx, an error it names):
                       retrying would get the same answer
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from acd.config.crm_external import ExternalCrmSettings
from acd.core.events import ContactRerouted
from acd.core.model import Contact
from acd.crm.identity import normalize_email, normalize_phone
from acd.crm.model import Customer, Deal, Vacation
from acd.crm.routing import StageRule, route_repeat


class ExternalCrmError(Exception):
    """A request to the external CRM failed."""


class Unavailable(ExternalCrmError):
    """Not now: the request may succeed later."""


class Refused(ExternalCrmError):
    """Never: the CRM refused this request."""


@dataclass(frozen=True, slots=True)
class ExternalMatch:
    """A customer the external CRM knows. `customer` is its reference there ("CONTACT:12"),
    `deal`/`stage` its open deal's id and stage, `responsible` the CRM user who answers
    for the deal (else for the customer). Ids are the CRM's own, as text."""

    system: str
    customer: str
    name: str = ""
    deal: str | None = None
    stage: str | None = None
    responsible: str | None = None
    amount: float | None = None

    def json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "customer": self.customer,
            "name": self.name,
            "deal": self.deal,
            "stage": self.stage,
            "responsible": self.responsible,
            "amount": self.amount,
        }


class ExternalCrm(Protocol):
    name: str
    settings: ExternalCrmSettings  # replaced when a configuration reload changes the section

    async def lookup(self, phone: str | None, email: str | None) -> ExternalMatch | None:
        """The customer behind an E.164 phone or a lower-case e-mail, or None. Raises
        `Unavailable` or `Refused`."""
        ...

    async def push(self, key: str, body: Mapping[str, Any]) -> str | None:
        """Deliver one finished contact (`finished_body`); `key` is the same on every
        attempt. Returns the CRM's id for what it made, if it says. Raises `Unavailable`
        (retried) or `Refused` (given up)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Notice:
    """The external CRM says who serves some customers may have changed: its references to
    them (`customers`, as in `ExternalMatch.customer`), their deals, or their phones (E.164)
    and e-mails (lower case). `reason` is for the decision log.

    Concerned are the contacts the CRM was asked about at arrival (or looked up again since):
    those it knew (their payload's `external` is its match) by that match, and those it did
    not know then (`external` is None: a new caller, routed by our CRM's ratings) by their
    phone or e-mail, for the CRM may know them now (a manager made them a contact or a deal
    there). Contacts it was not asked about were routed by our CRM, whose facts win. Example:
    Bitrix24's ONCRMDEALUPDATE of deal 45 of contact 12 (phone +79161234567) gives
    Notice("bitrix24", "Bitrix24 deal 45 updated", customers={"CONTACT:12"}, deals={"45"},
    phones={"+79161234567"})."""

    system: str
    reason: str
    customers: frozenset[str] = frozenset()
    deals: frozenset[str] = frozenset()
    phones: frozenset[str] = frozenset()
    emails: frozenset[str] = frozenset()
    region: str = "RU"  # to read the contacts' phones as the look-up did

    def concerns(self, contact: Contact) -> str | None:
        """What this notice concerns `contact` by: the CRM's reference of its customer, or,
        for a contact the CRM did not know, the phone or e-mail the notice names; None when
        it does not concern it."""
        ext = known_by(contact, self.system)
        if ext is None:
            return self._named(contact) if unknown_to_it(contact) else None
        ref = str(ext.get("customer") or "")
        if ref in self.customers or str(ext.get("deal") or "") in self.deals:
            return ref
        return ref if self._named(contact) else None

    def _named(self, contact: Contact) -> str | None:
        """`contact`'s phone (E.164) or e-mail, if this notice names it."""
        phone = normalize_phone(contact.phone, self.region) if self.phones and contact.phone else None
        if phone and phone in self.phones:
            return phone
        email = normalize_email(contact.email) if self.emails and contact.email else None
        return email if email and email in self.emails else None

    def matches(self, match: ExternalMatch | None, phone: str | None, email: str | None) -> bool:
        """Whether a cached look-up answer (for `phone`, `email`) may be stale after this."""
        if match is not None and (match.customer in self.customers or (match.deal or "") in self.deals):
            return True
        return bool((phone and phone in self.phones) or (email and email in self.emails))


def known_by(contact: Contact, system: str) -> Mapping[str, Any] | None:
    """The match `system` gave when `contact` arrived, if it was asked and knew the customer."""
    ext = contact.payload.get("external")
    return ext if isinstance(ext, Mapping) and ext.get("system") == system else None


def unknown_to_it(contact: Contact) -> bool:
    """Whether the external CRM was asked about `contact` (at arrival, or again since) and
    did not know its customer (`ExternalSync.route` leaves `external: None` for that)."""
    return "external" in contact.payload and contact.payload["external"] is None


def may_concern(contact: Contact, system: str) -> bool:
    """Whether any notice of `system` could concern `contact` (see `Notice`): without this,
    none can, whatever the CRM answers about the entity it is about."""
    return known_by(contact, system) is not None or unknown_to_it(contact)


def rerouted(
    contact: Contact,
    match: ExternalMatch | None,
    settings: ExternalCrmSettings,
    stages: Mapping[str, StageRule],
    vacations: Sequence[Vacation],
    now: float,
    serving: Collection[str] | None,
    default_team: str | None,
    reason: str,
) -> ContactRerouted | None:
    """How a waiting contact the CRM knew at arrival is routed by its present answer `match`
    (None: it no longer knows the customer), the way `acd.crm.service.CrmService.
    routed_again` re-routes by our CRM: the old answer (the match in the contact's payload)
    and the new one, each by `route_external` on the contact stripped of its routing; the
    people the old one named give way to the new one's, anyone else stays after them;
    without a team in the new answer, a team the old one gave falls back to `default_team`.
    Only the payload changes when the routing does not; None when neither does.

    A contact the CRM did not know then (`unknown_to_it`: a new caller, routed by our CRM)
    and knows now is routed as it would have been had the CRM known it at arrival:
    `route_external` on the contact as it stands, its people after the CRM's.

    Example: waiting for anna (deal 45's owner "7"); the deal's owner is now "9" (boris):
    preferred ("boris",), payload external.responsible "9"."""
    then = known_by(contact, settings.kind)
    if then is None:
        if match is None or not unknown_to_it(contact):
            return None
        return _found(contact, route_external(contact, match, settings, stages, vacations, now, serving), reason)
    bare = replace(contact, preferred=(), team=None, first_wait=None)
    old = route_external(bare, _match_of(then), settings, stages, vacations, now, serving)
    new = route_external(bare, match, settings, stages, vacations, now, serving) if match else bare
    payload: dict[str, object] = {"external": match.json() if match else None, "routed_by": "external"}
    payload["crm"] = new.payload.get("crm") or f"{settings.kind}: nobody to route to"
    if _routing(new) == _routing(old):
        if dict(then) == payload["external"]:
            return None
        return ContactRerouted(contact.id, contact.preferred, contact.team, contact.first_wait, reason, payload)
    others = [p for p in contact.preferred if p not in old.preferred]
    team = new.team
    if team is None:
        team = default_team if old.team is not None and contact.team == old.team else contact.team
    wait = new.first_wait if new.first_wait is not None or old.first_wait is not None else contact.first_wait
    preferred = tuple(dict.fromkeys((*new.preferred, *others)))
    return ContactRerouted(contact.id, preferred, team, wait, f"{reason} ({payload['crm']})", payload)


def _found(contact: Contact, new: Contact, reason: str) -> ContactRerouted:
    """`contact`, which the CRM did not know, routed as `new` now that it does."""
    payload = {k: new.payload[k] for k in ("external", "routed_by", "crm") if k in new.payload}
    if _routing(new) == _routing(contact):  # known now, but nobody to route to: remembered
        return ContactRerouted(contact.id, contact.preferred, contact.team, contact.first_wait, reason, payload)
    return ContactRerouted(
        contact.id, new.preferred, new.team, new.first_wait, f"{reason} ({new.payload['crm']})", payload
    )


def _routing(c: Contact) -> tuple[object, ...]:
    return (c.preferred, c.team, c.first_wait)


def _match_of(data: Mapping[str, Any]) -> ExternalMatch:
    amount = data.get("amount")
    return ExternalMatch(
        system=str(data.get("system") or ""),
        customer=str(data.get("customer") or ""),
        name=str(data.get("name") or ""),
        deal=None if data.get("deal") is None else str(data["deal"]),
        stage=None if data.get("stage") is None else str(data["stage"]),
        responsible=None if data.get("responsible") is None else str(data["responsible"]),
        amount=float(amount) if isinstance(amount, int | float) else None,
    )


def idempotency_key(contact_id: str) -> str:
    """One key per finished contact, the same however often (and by whom) it is computed."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"acd:contact:{contact_id}:finished"))


def route_external(
    contact: Contact,
    match: ExternalMatch,
    settings: ExternalCrmSettings,
    stages: Mapping[str, StageRule],
    vacations: Sequence[Vacation],
    now: float,
    serving: Collection[str] | None = None,
) -> Contact:
    """Route a contact by what the external CRM knows, with the repeat-customer rule of
    `acd.crm.routing.route_repeat`: the CRM's user becomes our manager through
    `settings.users` and its deal stage our funnel stage through `settings.stages`; an
    open deal routes by its stage (owner or team), no deal to the customer's responsible
    user. An unmapped user or stage routes by what is left (the stage's team, or nothing).

    Example: deal 45 in stage "C1:EXECUTING" (mapped to delivery, team logistics) with
    responsible "17" (mapped to egor) gives preferred=("egor",), team="logistics".
    """
    manager = settings.users.get(match.responsible or "")
    stage = settings.stages.get(match.stage or "", "")
    ref = f"{match.system}:{match.customer}"
    if match.deal is not None:
        customer = Customer(ref)
        deals = [Deal(f"{match.system}:{match.deal}", ref, stage=stage, owner=manager)]
    else:
        customer, deals = Customer(ref, account_manager=manager), []
    routed = route_repeat(customer, deals, stages, vacations, now, serving)
    if not routed.preferred and not routed.team:
        return replace(contact, payload={**contact.payload, "external": match.json()})
    payload: dict[str, object] = {
        **contact.payload,
        "crm": f"{match.system}: {routed.reason}",
        "routed_by": "external",
        "external": match.json(),
    }
    return replace(
        contact,
        customer_name=contact.customer_name or match.name,
        preferred=tuple(dict.fromkeys((*routed.preferred, *contact.preferred))),
        team=routed.team or contact.team,
        first_wait=routed.wait if routed.wait is not None else contact.first_wait,
        payload=payload,
    )


def finished_body(contact: Contact, settings: ExternalCrmSettings, region: str) -> dict[str, Any]:
    """What the external CRM is told about a finished contact (the webhook's JSON body)."""
    ext = contact.payload.get("external")
    match = ext if isinstance(ext, Mapping) else {}
    phone = normalize_phone(contact.phone, region) if contact.phone else None
    return {
        "event": "contact.finished",
        "contact_id": contact.id,
        "channel": contact.channel.value,
        "outcome": contact.outcome.value if contact.outcome else None,
        "arrived_at": contact.arrived_at,
        "finished_at": contact.finished_at,
        "criteria": dict(contact.criteria),
        "customer": {
            "id": contact.customer_id,
            "name": contact.customer_name,
            "phone": phone or contact.phone or None,
            "email": contact.email or None,
        },
        "manager": {"id": contact.assigned_to, "external_id": settings.user_of(contact.assigned_to)},
        "deal_id": contact.payload.get("deal_id"),
        "external": {"customer": match.get("customer"), "deal": match.get("deal")} if match else None,
    }
