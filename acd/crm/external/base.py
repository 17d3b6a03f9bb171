"""Pure: what every external-CRM adapter offers, what it answers, and how an answer routes.

    lookup(phone, email) -> ExternalMatch | None     who the customer is there, their open deal
    push(key, body)      -> the CRM's id for it      one finished contact, sent again on a retry

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
from acd.core.model import Contact
from acd.crm.identity import normalize_phone
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
