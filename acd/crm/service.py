"""The CRM's use cases: recognise a caller, enrich a new contact for routing, run deals
through the funnel, vacations and rotation, ratings, import and export.

It awaits a repository (`acd.storage.crm.CrmStore`, handed in by the composition root) and
keeps the pure parts (routing, ratings, CSV) pure. Every method takes its time from the
clock it was given.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from acd.config import Deployment
from acd.core import events as ev
from acd.core.model import Contact, Manager, evolve
from acd.crm import csvio
from acd.crm.identity import as_new_customers, normalize_email, normalize_phone, owners, stranger
from acd.crm.model import CrmEvent, Customer, Deal, DealStatus, Vacation
from acd.crm.provider import DealRatings
from acd.crm.ratings import DAY, Estimate, Lead, Opportunity, RatingParams, RatingTable, opportunities
from acd.crm.routing import StageRule, route_repeat
from acd.ids import new_id

if TYPE_CHECKING:
    from acd.crm.external.base import Notice
    from acd.crm.rerouting import Rerouting

FORECAST_DAYS = 30
FORECAST_PACE_DAYS = 90
TREND_DAYS = (365, 180, 90, 0)  # a rating card's trend: the overall win rate that many days ago
log = logging.getLogger("acd.crm")
T = TypeVar("T")


class CrmError(Exception):
    """A request the CRM refuses, with a stable `code` (the API's error code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Repository(Protocol):  # what acd.storage.crm.CrmStore offers; see there
    async def find_customer(self, phones: Sequence[str] = (), emails: Sequence[str] = ()) -> Customer | None: ...
    async def get_customer(self, customer_id: str) -> Customer | None: ...
    async def people_by_keys(
        self, phones: Iterable[str] = (), emails: Iterable[str] = ()
    ) -> tuple[dict[tuple[str, str], Customer], dict[str, list[Deal]]]: ...
    def rows_to_write(
        self, new_customers: Sequence[Customer], changed: Sequence[Deal] = (), history: Sequence[CrmEvent] = ()
    ) -> Any: ...
    def new_people_work(self, region: str, now: float) -> Any: ...
    async def save_customer(self, customer: Customer, *, new: bool, event: CrmEvent | None = None) -> None: ...
    async def list_customers(
        self, query: str | None = None, account_manager: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Customer]: ...
    async def customers_of(self, manager_id: str) -> list[tuple[str, str | None, str | None]]: ...
    async def contacts_of(self, customer_id: str, limit: int = 50) -> list[Contact]: ...
    async def leads(self, as_of: float | None = None, age: float = 0.0) -> list[Lead]: ...
    async def save_deals(self, changed: Sequence[Deal], history: Sequence[CrmEvent] = ()) -> None: ...
    async def save_customers_and_deals(
        self, new_customers: Sequence[Customer], changed: Sequence[Deal], history: Sequence[CrmEvent]
    ) -> None: ...
    async def get_deal(self, deal_id: str) -> Deal | None: ...
    async def deals_of(self, customer_id: str) -> list[Deal]: ...
    async def closed_deals(self, since: float, until: float) -> list[Deal]: ...
    async def deals_by_ids(self, ids: Iterable[str]) -> dict[str, Deal]: ...
    async def deal_from_contact(self, contact_id: str) -> Deal | None: ...
    async def list_deals(
        self,
        status: str | None = None,
        owner: str | None = None,
        customer_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Deal]: ...
    async def all_deals(self) -> list[Deal]: ...
    def all_customers(self) -> AsyncIterator[Customer]: ...
    async def history(self, customer_id: str | None = None, deal_id: str | None = None) -> list[CrmEvent]: ...
    async def reassign(
        self, leaving: str, heirs: Sequence[tuple[str, str]], changed: Sequence[Deal], history: Sequence[CrmEvent]
    ) -> None: ...
    async def add_vacation(self, v: Vacation) -> Vacation: ...
    async def list_vacations(
        self, manager_id: str | None = None, ending_after: float | None = None
    ) -> list[Vacation]: ...
    async def delete_vacation(self, n: int) -> bool: ...


class ExternalRouting(Protocol):  # acd.crm.external.ExternalSync: the office's own CRM, if configured
    async def route(
        self,
        contact: Contact,
        phone: str | None,
        email: str | None,
        *,
        known: bool,
        stages: Mapping[str, StageRule],
        vacations: Sequence[Vacation],
        now: float,
        serving: Collection[str] | None = None,
    ) -> Contact: ...

    async def rerouted(
        self,
        live: Sequence[tuple[Contact, str | None, str | None]],
        reason: str,
        default_team: str | None,
        *,
        stages: Mapping[str, StageRule],
        vacations: Sequence[Vacation],
        now: float,
        serving: Collection[str] | None = None,
    ) -> list[ev.ContactRerouted]: ...


def rating_params(deployment: Deployment) -> RatingParams:
    crm = deployment.crm
    return RatingParams(
        segment_keys=deployment.policy.segment_keys,
        segment_order=crm.segment_order,
        half_life_days=crm.half_life_days,
        prior_strength=crm.prior_strength,
        min_level_deals=crm.min_level_deals,
        untouched_lead_days=crm.untouched_lead_days,
    )


@dataclass
class ImportReport:
    imported: int = 0
    customers_created: int = 0
    rejected: list[csvio.Rejected] = field(default_factory=list)
    warnings: list[csvio.Rejected] = field(default_factory=list)  # imported rows worth a second look
    change: RoutingChange | None = None  # what the import changed that repeat customers are routed by

    def json(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "customers_created": self.customers_created,
            "rejected": [{"line": r.line, "reason": r.reason, "row": dict(r.row)} for r in self.rejected],
            "warnings": [{"line": r.line, "reason": r.reason} for r in self.warnings],
        }


@dataclass(frozen=True)
class RoutingChange:
    """A change to what the CRM routes repeat customers by, as routing their waiting contacts
    again needs it (`CrmService.routed_again`): why, for the decision log; whose contacts it
    concerns (`customers`, None for anyone's: a vacation; and the contacts about `deals`,
    deal id -> customer id); and the facts as they were before it, for the CRM's old answer:
    customers' routing fields (`customers_then`: account_manager, pinned_to), deals
    (`deals_then`; `deals_added` since), vacations added since (ids) or removed since, the
    managers who took contacts (`serving_then`, when that changed).

    Example: boris's vacation with substitute vera recorded: RoutingChange("vacation of
    boris, substitute vera, recorded", None, vacations_added=frozenset({7}))."""

    reason: str
    customers: frozenset[str] | None = frozenset()
    deals: Mapping[str, str] = field(default_factory=dict)
    customers_then: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    deals_then: Mapping[str, Deal] = field(default_factory=dict)
    vacations_added: frozenset[int] = frozenset()
    vacations_removed: tuple[Vacation, ...] = ()
    deals_added: frozenset[str] = frozenset()  # opened (or imported) since: not in the old answer
    serving_then: frozenset[str] | None = None  # the managers who took contacts before, if that changed
    notice: Notice | None = None  # the office's own CRM changed it (its notification): by its facts

    @classmethod
    def outside(cls, notice: Notice) -> RoutingChange:
        """The office's own CRM (`crm.external`) says who serves some customers may have
        changed: the contacts it routed are looked up again (`CrmService.routed_again`)."""
        return cls(notice.reason, frozenset(), notice=notice)

    @classmethod
    def deal(cls, before: Deal, after: Deal) -> RoutingChange:
        """A deal moved to another stage, got another person serving it, or closed."""
        return cls(
            _what_changed(before, after),
            frozenset({after.customer_id}),
            {after.id: after.customer_id},
            deals_then={before.id: before},
        )

    @classmethod
    def customer(cls, before: Customer, after: Customer) -> RoutingChange | None:
        """A customer's account manager or pin changed; None if neither did."""
        then = {
            k: getattr(before, k) for k in ("pinned_to", "account_manager") if getattr(before, k) != getattr(after, k)
        }
        if not then:
            return None
        what = []
        if "pinned_to" in then:
            what.append(f"pinned to {after.pinned_to}" if after.pinned_to else f"unpinned from {before.pinned_to}")
        if "account_manager" in then:
            what.append(f"account manager {before.account_manager or 'nobody'} → {after.account_manager or 'nobody'}")
        return cls(f"customer {after.id}: {', '.join(what)}", frozenset({after.id}), customers_then={after.id: then})

    @classmethod
    def vacation(cls, v: Vacation, *, added: bool) -> RoutingChange:
        """A vacation recorded (`added`) or cancelled: anyone's contacts may be concerned."""
        who = _vacation_named(v)
        if added:
            return cls(f"{who}, recorded", None, vacations_added=frozenset({v.id}))
        return cls(f"{who}, cancelled", None, vacations_removed=(v,))

    @classmethod
    def opened(cls, deal: Deal) -> RoutingChange:
        """A deal opened for a customer (from the panel, the API, a contact being worked)."""
        return cls(
            f"deal {deal.id} opened in stage {deal.stage!r}",
            frozenset({deal.customer_id}),
            {deal.id: deal.customer_id},
            deals_added=frozenset({deal.id}),
        )

    @classmethod
    def boundary(cls, v: Vacation, *, began: bool) -> RoutingChange:
        """Vacation `v` began or ended (its midnight came, no request at that moment): the old
        answer is the one without it, or with it still running."""
        who = _vacation_named(v)
        if began:
            return cls(f"{who}, begun", None, vacations_added=frozenset({v.id}))
        return cls(f"{who}, over", None, vacations_removed=(replace(v, ends_at=math.inf),))

    @classmethod
    def roster(cls, then: Collection[str], now: Collection[str]) -> RoutingChange | None:
        """Managers deactivated (or removed), or active again: `then` and `now` are the managers
        taking contacts before and after. None if nobody's changed."""
        gone, back = sorted(set(then) - set(now)), sorted(set(now) - set(then))
        if not (gone or back):
            return None
        what = [f"{m} deactivated" for m in gone] + [f"{m} active" for m in back]
        return cls(", ".join(what), None, serving_then=frozenset(then))

    def concerns(self, contact: Contact) -> str | None:
        """The customer by whose facts `contact` is routed, if this change concerns it. Only
        contacts our CRM routed as a repeat customer's are: a new customer's first contact
        went where the ratings sent it (a lead, rated as such), one the office's own CRM
        routed (`crm.external`) went by that CRM's facts: only its notice concerns those."""
        if self.notice is not None:
            return self.notice.concerns(contact)
        if contact.payload.get("routed_by") != "repeat":
            return None
        cid = contact.customer_id
        if cid and (self.customers is None or cid in self.customers):
            return cid
        return self.deals.get(str(contact.payload.get("deal_id") or ""))

    def vacations_then(self, vacations: Sequence[Vacation], now: float) -> list[Vacation]:
        """`vacations` (those not over at `now`) as they were before this change."""
        ids = {v.id for v in vacations}
        removed = [v for v in self.vacations_removed if v.ends_at > now and v.id not in ids]
        return [v for v in vacations if v.id not in self.vacations_added] + removed


def midnight(tz: str, day: date) -> float:
    """When `day` begins in time zone `tz`: where vacations begin and end (`CrmService.day_start`).
    In a zone whose clocks skip 00:00 that day, the moment they skip it."""
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)).timestamp()


def next_midnight(tz: str, after: float) -> float:
    """The first `midnight` in `tz` later than `after`: a day need not last 24 hours (DST)."""
    day = datetime.fromtimestamp(after, ZoneInfo(tz)).date()
    while (at := midnight(tz, day)) <= after:
        day += timedelta(days=1)
    return at


def _vacation_named(v: Vacation) -> str:
    return f"vacation {v.id} of {v.manager_id}, " + (f"substitute {v.substitute}" if v.substitute else "no substitute")


VACATION_CACHE_SECONDS = 30.0  # another server process's change shows within this


class CrmService:
    def __init__(
        self,
        repo: Repository,
        deployment: Callable[[], Deployment],
        managers: Callable[[], Mapping[str, Manager]],
        ratings: DealRatings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.repo = repo
        self._deployment = deployment
        self._managers = managers
        self.ratings = ratings
        self.clock = clock
        self._vacations: tuple[float, list[Vacation]] | None = None
        self._vacations_changed = 0  # counts this process's vacation writes (see current_vacations)
        self.external: ExternalRouting | None = None
        self.rerouting: Rerouting | None = None  # the server's (acd.crm.rerouting), when one runs
        self._recomputing = asyncio.Lock()
        self._closed_meanwhile: list[tuple[list[Opportunity], float]] | None = None

    @property
    def deployment(self) -> Deployment:
        return self._deployment()

    @property
    def region(self) -> str:
        return self.deployment.crm.default_region

    def _stages(self) -> dict[str, StageRule]:
        return {s.name: StageRule(s.name, s.team, s.route_to, s.wait) for s in self.deployment.funnel_stages}

    def _check_manager(self, manager_id: str | None, field_name: str) -> None:
        if manager_id is not None and manager_id not in self._managers():
            raise CrmError("invalid", f"{field_name}: no manager {manager_id}")

    # ---- recognition and intake ------------------------------------------------------

    async def recognise(self, phone: str = "", email: str = "") -> Customer | None:
        """The known customer behind a caller ID or an e-mail address, in any usual format."""
        p = normalize_phone(phone, self.region) if phone else None
        e = normalize_email(email) if email else None
        if not (p or e):
            return None
        return await self.repo.find_customer([p] if p else [], [e] if e else [])

    async def enrich(self, contact: Contact) -> Contact:
        """Attach a new contact to its customer (creating one for a stranger with a phone or
        e-mail) and fill `preferred` and `team` for a repeat customer. The telephony side
        calls this with the caller ID in `contact.phone` before storing the contact.

        The CRM must never cost a lead: on any storage failure the contact goes on as it
        came, unattached (and the failure is logged)."""
        try:
            return await self._enrich(contact)
        except Exception:
            log.exception("CRM enrichment failed for contact %s; routing it as a new customer", contact.id)
            return contact

    async def _enrich(self, contact: Contact) -> Contact:
        now = self.clock()
        phone = normalize_phone(contact.phone, self.region) if contact.phone else None
        email = normalize_email(contact.email) if contact.email else None
        if not (phone or email):
            return contact
        customer = await self.repo.find_customer([phone] if phone else [], [email] if email else [])
        if customer is None:
            customer = stranger(contact.customer_name, contact.criteria, phone, email, now)
            try:
                await self.repo.save_customer(
                    customer, new=True, event=CrmEvent(now, customer.id, "created", by=f"contact:{contact.id}")
                )
            except Exception:
                # Two first contacts of one stranger at once: the other created them.
                found = await self.repo.find_customer([phone] if phone else [], [email] if email else [])
                if found is None:
                    raise
                customer = found
            else:
                return await self._external(self._as_new(contact, customer), phone, email, known=False, now=now)
        await self._learn(customer, contact, phone, email)
        deals = await self.repo.deals_of(customer.id)
        repeat = self._as_repeat(contact, customer, deals, await self.current_vacations(now), now)
        return await self._external(repeat, phone, email, known=_routed_by_us(contact, repeat), now=now)

    async def _external(
        self, contact: Contact, phone: str | None, email: str | None, *, known: bool, now: float
    ) -> Contact:
        """What the office's own CRM adds (`crm.external`), for a customer our CRM has nothing
        to route by (`known` False: a stranger, or no open deal, account manager or pin) or,
        with `lookup: always`, for everyone. Bounded by its timeout; on any failure the
        contact goes on as our CRM routed it."""
        if self.external is None:
            return contact
        try:
            vacations = await self.current_vacations(now)
            return await self.external.route(
                contact,
                phone,
                email,
                known=known,
                stages=self._stages(),
                vacations=vacations,
                now=now,
                serving=self._serving(),
            )
        except Exception:
            log.exception("external CRM routing failed for contact %s; routing without it", contact.id)
            return contact

    async def enrich_many(self, contacts: Sequence[Contact]) -> list[Contact]:
        """`enrich` for a whole intake batch: one look-up for every phone and e-mail in it, one
        transaction for the strangers, one query for the repeat customers' deals, so a burst
        of web leads costs a few round trips, not a few per lead. Strangers sharing a phone
        or e-mail inside the batch become one customer. Like `enrich`, it never costs a
        lead: on a failure the batch is enriched one contact at a time."""
        try:
            enriched, fresh = await self.prepare_many(contacts)
            if fresh:
                history = [CrmEvent(cu.created_at, cu.id, "created", by="intake") for cu in fresh]
                await self.repo.save_customers_and_deals(fresh, [], history)
            return enriched
        except Exception:
            log.exception("CRM batch enrichment failed; enriching %d contact(s) one by one", len(contacts))
            return [await self.enrich(c) for c in contacts]

    async def prepare_many(self, contacts: Sequence[Contact]) -> tuple[list[Contact], list[Customer]]:
        """What `enrich_many` does short of writing the new customers: the enriched contacts
        and the customers to create (see `new_customer_rows`), for a caller that commits
        them in one transaction with the contacts."""
        now = self.clock()
        ids = [self._keys_of(c) for c in contacts]
        found, deals = await self.repo.people_by_keys([p for p, _ in ids if p], [e for _, e in ids if e])
        customers, fresh = self._owners(contacts, ids, found, now)
        fresh_ids = {cu.id for cu in fresh}
        repeat = {cu.id for cu in customers if cu is not None and cu.id not in fresh_ids}
        vacations = await self.current_vacations(now) if repeat else []
        out: list[Contact] = []
        for c, (phone, email), customer in zip(contacts, ids, customers, strict=True):
            if customer is None:
                out.append(c)
            elif customer.id in fresh_ids:
                out.append(self._as_new(c, customer))
            else:
                await self._learn(customer, c, phone, email)
                out.append(self._as_repeat(c, customer, deals.get(customer.id, []), vacations, now))
        if self.external is not None:  # the look-ups of a batch run side by side
            known = [_routed_by_us(c, o) for c, o in zip(contacts, out, strict=True)]
            routed = [self._external(c, p, e, known=k, now=now) for c, (p, e), k in zip(out, ids, known, strict=True)]
            out = list(await asyncio.gather(*routed))
        return out, fresh

    def looks_up_first(self) -> bool:
        """Whether recognition must look before a batch is written: an external CRM takes
        part in it, and must be asked first (otherwise `assume_new` answers)."""
        return self.external is not None

    def assume_new(self, contacts: Sequence[Contact]) -> tuple[list[Contact], Any] | None:
        """What `prepare_many` answers when nobody in `contacts` is known yet, without looking:
        the contacts, and the work that, in the intake's transaction, makes their customers
        (people sharing a phone or e-mail inside the batch becoming one), checks there and
        then that nobody holds their phones and e-mails, and writes those nobody holds,
        filling in their contacts' customer; the contacts of the others are left out, for
        `prepare_many` to recognise (acd.storage.crm.CrmStore.new_people_work). Most web
        leads come from new people, so most batches cost one transaction and no look-up
        before it. None when an external CRM takes part in recognition: it must be asked
        first."""
        if self.looks_up_first():
            return None
        return list(contacts), self.repo.new_people_work(self.region, self.clock())

    def _keys_of(self, contact: Contact) -> tuple[str | None, str | None]:
        phone = normalize_phone(contact.phone, self.region) if contact.phone else None
        email = normalize_email(contact.email) if contact.email else None
        return phone, email

    def _owners(
        self,
        contacts: Sequence[Contact],
        ids: Sequence[tuple[str | None, str | None]],
        found: Mapping[tuple[str, str], Customer],
        now: float,
    ) -> tuple[list[Customer | None], list[Customer]]:
        """Each contact's customer (identity.owners), and the new ones among them."""
        fresh: list[Customer] = []

        def new(i: int) -> Customer:
            (phone, email), contact = ids[i], contacts[i]
            fresh.append(stranger(contact.customer_name, contact.criteria, phone, email, now))
            return fresh[-1]

        keys = [[(kind, value) for kind, value in (("phone", p), ("email", e)) if value] for p, e in ids]
        return owners(keys, found, new), fresh

    def new_customers_work(self, fresh: Sequence[Customer]) -> Any:
        """The customers from `prepare_many` as work for the intake's transaction
        (acd.storage.store.Store.create_contacts' `also`)."""
        history = [CrmEvent(cu.created_at, cu.id, "created", by="intake") for cu in fresh]
        return self.repo.rows_to_write(fresh, (), history)

    def _as_new(self, contact: Contact, customer: Customer) -> Contact:
        return evolve(contact, customer_id=customer.id, payload=as_new_customers(contact.payload))

    def _serving(self) -> set[str]:
        """The managers who take contacts at all: a deactivated one serves no customer."""
        return {m.id for m in self._managers().values() if m.active}

    async def route_again(self, change: RoutingChange | None) -> None:
        """Route again the waiting or offered contacts `change` concerns (see `routed_again`),
        when this service runs in a server; returns once the dispatcher has committed."""
        if self.rerouting is not None:
            await self.rerouting.apply(change)

    async def routed_again(
        self, live: Sequence[Contact], change: RoutingChange, default_team: str | None
    ) -> list[ev.ContactRerouted]:
        """How the waiting or offered contacts `live` are to be routed now that `change` changed
        what the CRM routes them by (a deal opened or moved on, an account manager, a pin, a
        rotation, an import, a vacation recorded, begun or over, a manager deactivated): the
        CRM's answer for each, by the present facts and by the facts as they were before the
        change, both by the intake's own path (`_as_repeat` on the contact
        stripped of its routing). Only contacts whose answer changed are routed again (a
        vacation reaches only the contacts its manager served, or their substitute). The people
        the old answer named give way to the new answer's; anyone else the contact was for (the
        owner of an e-mail thread it answers) stays after them. Without a team in the new
        answer, a team the old one gave falls back to the policy's default, and a wait the old
        one gave goes. Its `override` mark follows the customer's pin: set while it waits, the
        pin's placement is left out of the ratings; removed, the contact counts again.

        Example: a contact for boris, account manager of its customer; boris leaves in a
        rotation to vera: preferred ("vera",), and the reason says "rotation: ..."."""
        if change.notice is not None:
            return await self._routed_by_external(live, change, default_team)
        now = self.clock()
        vacations = await self.current_vacations(now)
        then_vacations = change.vacations_then(vacations, now)
        facts_changed = change.customers_then or change.deals_then or change.deals_added
        if not (facts_changed or change.serving_then is not None) and _covering(vacations, now) == _covering(
            then_vacations, now
        ):
            return []  # a vacation that does not cover now: nobody's answer changed
        serving = self._serving()
        then_serving = serving if change.serving_then is None else set(change.serving_then)
        facts: dict[str, tuple[Customer, list[Deal]] | None] = {}
        out = []
        for c in live:
            cid = change.concerns(c)
            if cid is None:
                continue
            if cid not in facts:
                customer = await self.repo.get_customer(cid)
                facts[cid] = None if customer is None else (customer, await self.repo.deals_of(cid))
            known = facts[cid]
            if known is None:
                continue
            customer, deals = known
            then = change.customers_then.get(cid, {})
            then_customer = replace(
                customer,
                account_manager=then.get("account_manager", customer.account_manager),
                pinned_to=then.get("pinned_to", customer.pinned_to),
            )
            then_deals = [change.deals_then.get(d.id, d) for d in deals if d.id not in change.deals_added]
            bare = evolve(c, preferred=(), team=None, first_wait=None, override=False)
            new = self._as_repeat(bare, customer, deals, vacations, now, serving)
            old = self._as_repeat(bare, then_customer, then_deals, then_vacations, now, then_serving)
            if _answer(new) == _answer(old):
                continue
            others = [p for p in c.preferred if p not in old.preferred]
            team = new.team
            if team is None:
                team = default_team if old.team is not None and c.team == old.team else c.team
            wait = new.first_wait if new.first_wait is not None or old.first_wait is not None else c.first_wait
            changes = {k: new.payload[k] for k in ("crm", "routed_by", "deal_id") if k in new.payload}
            out.append(
                ev.ContactRerouted(
                    c.id,
                    tuple(dict.fromkeys((*new.preferred, *others))),
                    team,
                    wait,
                    f"{change.reason} (CRM: {new.payload.get('crm', '')})",
                    changes,
                    new.override,
                )
            )
        return out

    async def _routed_by_external(
        self, live: Sequence[Contact], change: RoutingChange, default_team: str | None
    ) -> list[ev.ContactRerouted]:
        """`routed_again` for a notice of the office's own CRM: its present answer, looked up."""
        concerned = [(c, *self._keys_of(c)) for c in live if change.concerns(c) is not None]
        if self.external is None or not concerned:
            return []
        now = self.clock()
        return await self.external.rerouted(
            concerned,
            change.reason,
            default_team,
            stages=self._stages(),
            vacations=await self.current_vacations(now),
            now=now,
            serving=self._serving(),
        )

    def _as_repeat(
        self,
        contact: Contact,
        customer: Customer,
        deals: list[Deal],
        vacations: list[Vacation],
        now: float,
        serving: Collection[str] | None = None,
    ) -> Contact:
        serving = self._serving() if serving is None else serving
        routed = route_repeat(customer, deals, self._stages(), vacations, now, serving)
        payload: dict[str, object] = {**contact.payload, "crm": routed.reason, "routed_by": "repeat"}
        if routed.deal_id:
            payload["deal_id"] = routed.deal_id
        preferred = tuple(dict.fromkeys((*routed.preferred, *contact.preferred)))
        return replace(
            contact,
            customer_id=customer.id,
            customer_name=contact.customer_name or customer.name,
            preferred=preferred,
            team=routed.team or contact.team,
            first_wait=routed.wait if routed.wait is not None else contact.first_wait,
            override=contact.override or routed.override,
            payload=payload,
        )

    async def _learn(self, customer: Customer, contact: Contact, phone: str | None, email: str | None) -> None:
        """A known customer writing from a new address (or calling from a new number) gets it
        added; fresh answers replace the stored ones."""
        phones = customer.phones if not phone or phone in customer.phones else (*customer.phones, phone)
        emails = customer.emails if not email or email in customer.emails else (*customer.emails, email)
        criteria = {**customer.criteria, **contact.criteria}
        if phones == customer.phones and emails == customer.emails and criteria == dict(customer.criteria):
            return
        try:
            await self.repo.save_customer(replace(customer, phones=phones, emails=emails, criteria=criteria), new=False)
        except Exception:
            log.warning("customer %s: could not record a new phone or e-mail (held by another customer)", customer.id)

    # ---- customers ---------------------------------------------------------------------

    async def create_customer(
        self,
        name: str,
        phones: Sequence[str] = (),
        emails: Sequence[str] = (),
        kind: str = "company",
        account_manager: str | None = None,
        note: str = "",
        by: str = "",
    ) -> Customer:
        self._check_manager(account_manager, "account_manager")
        c = Customer(
            id=new_id(),
            name=name,
            kind=kind,
            phones=tuple(dict.fromkeys(self._phone(p) for p in phones)),
            emails=tuple(dict.fromkeys(self._email(e) for e in emails)),
            account_manager=account_manager,
            note=note,
            created_at=self.clock(),
        )
        await self._save_customer(c, True, CrmEvent(c.created_at, c.id, "created", manager_id=account_manager, by=by))
        return c

    async def update_customer(self, customer_id: str, changes: Mapping[str, Any], by: str = "") -> Customer:
        c = await self.customer(customer_id)
        fields: dict[str, Any] = {}
        for key in ("name", "kind", "note"):
            if key in changes:
                fields[key] = changes[key]
        if "phones" in changes:
            fields["phones"] = tuple(dict.fromkeys(self._phone(p) for p in changes["phones"]))
        if "emails" in changes:
            fields["emails"] = tuple(dict.fromkeys(self._email(e) for e in changes["emails"]))
        event = None
        if "account_manager" in changes and changes["account_manager"] != c.account_manager:
            self._check_manager(changes["account_manager"], "account_manager")
            fields["account_manager"] = changes["account_manager"]
            event = CrmEvent(
                self.clock(),
                c.id,
                "account_manager",
                manager_id=changes["account_manager"],
                by=by,
                detail={"from": c.account_manager},
            )
        updated = replace(c, **fields)
        await self._save_customer(updated, False, event)
        return updated

    async def pin(self, customer_id: str, manager_id: str | None, by: str) -> Customer:
        """A supervisor pins a client to a manager (None unpins): the manager comes first
        whenever the client calls, and what the pin brings is left out of ratings."""
        c = await self.customer(customer_id)
        self._check_manager(manager_id, "manager_id")
        updated = replace(c, pinned_to=manager_id)
        await self._save_customer(
            updated,
            False,
            CrmEvent(self.clock(), c.id, "pin", manager_id=manager_id, by=by, detail={"from": c.pinned_to}),
        )
        return updated

    async def customer(self, customer_id: str) -> Customer:
        c = await self.repo.get_customer(customer_id)
        if c is None:
            raise CrmError("no_such_customer", f"no customer {customer_id}")
        return c

    async def card(self, customer_id: str) -> dict[str, Any]:
        """Everything a manager needs when the customer rings: who, previous contacts,
        deals with their stages, and the history."""
        c = await self.customer(customer_id)
        return {
            "customer": c,
            "contacts": await self.repo.contacts_of(c.id),
            "deals": await self.repo.deals_of(c.id),
            "history": await self.repo.history(customer_id=c.id),
        }

    async def _save_customer(self, c: Customer, new: bool, event: CrmEvent | None) -> None:
        try:
            await self.repo.save_customer(c, new=new, event=event)
        except Exception as err:
            if type(err).__name__ == "Conflict":
                raise CrmError("exists", "a phone or e-mail of this customer belongs to another customer") from None
            raise

    def _phone(self, raw: str) -> str:
        n = normalize_phone(raw, self.region)
        if n is None:
            raise CrmError("invalid", f"phones: {raw!r} is not a phone number")
        return n

    def _email(self, raw: str) -> str:
        n = normalize_email(raw)
        if n is None:
            raise CrmError("invalid", f"emails: {raw!r} is not an e-mail address")
        return n

    # ---- deals ----------------------------------------------------------------------

    def _stage_name(self, stage: str | None) -> str:
        stages = self.deployment.funnel_stages
        if not stage:
            return stages[0].name if stages else ""
        if stages and self.deployment.stage(stage) is None:
            raise CrmError("invalid", f"stage: {stage!r} is not one of {', '.join(s.name for s in stages)}")
        return stage

    async def deal(self, deal_id: str) -> Deal:
        d = await self.repo.get_deal(deal_id)
        if d is None:
            raise CrmError("no_such_deal", f"no deal {deal_id}")
        return d

    async def open_deal(
        self,
        *,
        customer_id: str | None = None,
        contact: Contact | None = None,
        title: str = "",
        amount: float | None = None,
        stage: str | None = None,
        owner: str | None = None,
        stage_owner: str | None = None,
        by: str = "",
    ) -> Deal:
        """A deal opened from a contact takes the contact's customer, answers (its segment),
        handler (its owner) and override mark; one contact opens at most one deal."""
        if contact is not None:
            existing = await self.repo.deal_from_contact(contact.id)
            if existing is not None:
                raise CrmError("exists", f"contact {contact.id} already opened deal {existing.id}")
            customer_id = customer_id or contact.customer_id
            owner = owner or contact.assigned_to
        if not customer_id:
            raise CrmError("invalid", "customer_id: the contact has no customer; give customer_id")
        await self.customer(customer_id)
        self._check_manager(owner, "owner")
        self._check_manager(stage_owner, "stage_owner")
        now = self.clock()
        keys = self.deployment.policy.segment_keys
        d = Deal(
            id=new_id(),
            customer_id=customer_id,
            title=title,
            amount=amount,
            segment={k: v for k, v in (contact.criteria if contact else {}).items() if k in keys},
            owner=owner,
            stage=self._stage_name(stage),
            stage_owner=stage_owner,
            opened_at=now,
            stage_since=now,
            last_activity=now,
            contact_id=contact.id if contact else None,
            override=bool(contact and contact.override),
        )
        await self.repo.save_deals([d], [CrmEvent(now, customer_id, "opened", d.id, d.stage, owner, by)])
        return d

    async def move(self, deal_id: str, stage: str, stage_owner: str | None = None, by: str = "") -> Deal:
        """Into another stage; the person serving the new stage is named or cleared."""
        d = await self.deal(deal_id)
        if d.status is not DealStatus.OPEN:
            raise CrmError("closed", f"deal {deal_id} is {d.status.value}")
        self._check_manager(stage_owner, "stage_owner")
        now = self.clock()
        moved = replace(d, stage=self._stage_name(stage), stage_owner=stage_owner, stage_since=now, last_activity=now)
        event = CrmEvent(now, d.customer_id, "stage", d.id, moved.stage, stage_owner, by, {"from": d.stage})
        await self.repo.save_deals([moved], [event])
        return moved

    async def close(self, deal_id: str, won: bool, amount: float | None = None, reason: str = "", by: str = "") -> Deal:
        """Won (with the amount) or lost; the owner's ratings update at once."""
        d = await self.deal(deal_id)
        if d.status is not DealStatus.OPEN:
            raise CrmError("closed", f"deal {deal_id} is already {d.status.value}")
        amount = amount if amount is not None else d.amount
        if won and amount is None:
            raise CrmError("invalid", "amount: a won deal needs its amount")
        now = self.clock()
        closed = replace(
            d,
            status=DealStatus.WON if won else DealStatus.LOST,
            amount=amount,
            closed_at=now,
            last_activity=now,
            lost_reason="" if won else reason,
        )
        kind = closed.status.value
        event = CrmEvent(now, d.customer_id, kind, d.id, d.stage, d.owner, by, {"amount": amount, "reason": reason})
        await self.repo.save_deals([closed], [event])
        opps = self._opportunities([closed], [], now)
        self.ratings.update(opps, now)
        if self._closed_meanwhile is not None:  # a recompute read the deals before this, maybe
            self._closed_meanwhile.append((opps, now))
        return closed

    # ---- vacations and rotation -------------------------------------------------------

    def day_start(self, day: date) -> float:
        return midnight(self.deployment.tz, day)

    async def current_vacations(self, now: float) -> list[Vacation]:
        """Vacations not over yet. Read on every repeat contact, changed a few times a month:
        kept for a short while (and dropped when this process changes them), so intake does
        not pay a database round trip for them.

        A list read while this process changed a vacation is used once, never kept: it may
        have been read before the change committed, and would hide it for the whole while."""
        cached = self._vacations
        if cached is None or now - cached[0] > VACATION_CACHE_SECONDS or now < cached[0]:
            changes = self._vacations_changed
            read = await self.repo.list_vacations(ending_after=now)
            if changes == self._vacations_changed:
                self._vacations = (now, read)
            cached = (now, read)
        return [v for v in cached[1] if v.ends_at > now]

    def forget_vacations(self) -> None:
        """Drop the list `current_vacations` keeps (and any being read): someone else may have
        changed the vacations (another node, a tool on the database), and the next reader must see it."""
        self._vacations_changed += 1
        self._vacations = None

    async def _vacation_write(self, write: Awaitable[T]) -> T:
        """Run a vacation write, dropping the cached list once it has committed (and any list
        read meanwhile): the next contact reads the new one."""
        self._vacations_changed += 1
        try:
            return await write
        finally:
            self._vacations_changed += 1
            self._vacations = None

    async def delete_vacation(self, n: int) -> bool:
        return await self._vacation_write(self.repo.delete_vacation(n))

    async def cancel_vacation(self, n: int) -> RoutingChange | None:
        """Delete vacation `n`; None if there is none. The change says what it did to routing:
        a vacation not over yet no longer sends its manager's customers to the substitute."""
        was = next((v for v in await self.repo.list_vacations(ending_after=self.clock()) if v.id == n), None)
        if not await self.delete_vacation(n):
            return None
        return RoutingChange.vacation(was or Vacation(n, "", 0.0, 0.0), added=False)

    async def add_vacation(
        self, manager_id: str, first: date, last: date, substitute: str | None, note: str = ""
    ) -> Vacation:
        """Away from the start of `first` to the end of `last` (site time), both included."""
        self._check_manager(manager_id, "manager_id")
        self._check_manager(substitute, "substitute")
        if substitute == manager_id:
            raise CrmError("invalid", "substitute: someone else must stand in")
        if last < first:
            raise CrmError("invalid", "last: before first")
        v = Vacation(0, manager_id, self.day_start(first), self.day_start(last + timedelta(days=1)), substitute, note)
        return await self._vacation_write(self.repo.add_vacation(v))  # its midnights: acd.crm.rerouting

    async def rotate(self, leaving: str, to: Sequence[str], by: str, open_deals: bool = True) -> dict[str, Any]:
        """Hand a leaving manager's customers (those they are the account manager of, and
        those a supervisor pinned to them: the pin goes to the same heir) and the open deals
        they own or serve to the managers in `to`, in turn; closed deals stay theirs, and
        every change is a history line, so nothing of what happened is lost."""
        return (await self.hand_over(leaving, to, by, open_deals))[0]

    async def hand_over(
        self, leaving: str, to: Sequence[str], by: str, open_deals: bool = True
    ) -> tuple[dict[str, Any], RoutingChange]:
        """`rotate`, with the change it made to routing: the customers and deals handed
        over, as they were (for `routed_again`)."""
        self._check_manager(leaving, "from")
        if not to:
            raise CrmError("invalid", "to: name at least one manager")
        for m in to:
            self._check_manager(m, "to")
        if leaving in to:
            raise CrmError("invalid", "to: the leaving manager cannot receive their own customers")
        now = self.clock()
        held = sorted(await self.repo.customers_of(leaving))
        heir = {cid: to[i % len(to)] for i, (cid, _, _) in enumerate(held)}
        history: list[CrmEvent] = []
        for cid, account_manager, pinned_to in held:
            for kind, was in (("account_manager", account_manager), ("pin", pinned_to)):
                if was == leaving:
                    detail = {"from": leaving, "rotation": True}
                    history.append(CrmEvent(now, cid, kind, manager_id=heir[cid], by=by, detail=detail))
        changed: list[Deal] = []
        owned: list[Deal] = []
        if open_deals:
            owned = await self.repo.list_deals(status="open", owner=leaving, limit=1_000_000)
            for i, d in enumerate(owned):
                new_owner = heir.get(d.customer_id, to[i % len(to)])
                moved = replace(
                    d,
                    owner=new_owner if d.owner == leaving else d.owner,
                    stage_owner=new_owner if d.stage_owner == leaving else d.stage_owner,
                )
                changed.append(moved)
                history.append(CrmEvent(now, d.customer_id, "owner", d.id, d.stage, new_owner, by, {"from": leaving}))
        await self.repo.reassign(leaving, sorted(heir.items()), changed, history)
        pins = sum(1 for _, _, pinned_to in held if pinned_to == leaving)
        summary = {"customers": len(heir), "pins": pins, "open_deals": len(changed)}
        then = {
            cid: {k: leaving for k, was in (("account_manager", am), ("pinned_to", pin)) if was == leaving}
            for cid, am, pin in held
        }
        change = RoutingChange(
            f"rotation: {leaving}'s customers and open deals handed to {', '.join(to)}",
            frozenset(then) | {d.customer_id for d in changed},
            {d.id: d.customer_id for d in changed},
            customers_then=then,
            deals_then={d.id: d for d in owned},
        )
        return summary, change

    # ---- ratings ----------------------------------------------------------------------

    def _opportunities(self, deals: Sequence[Deal], leads: Sequence[Lead], now: float) -> list[Opportunity]:
        teams = {m.id: m.team for m in self._managers().values()}
        return opportunities(deals, leads, teams, self.ratings.params, now)

    async def recompute(self) -> dict[str, Any]:
        """Every rating from scratch (also counts leads that have gone untouched meanwhile).

        A year of deals and leads is seconds of work, which must not hold the event loop
        (offers, intake) that long: the table is built in a worker thread and swapped in at
        once, with the deals closed while it was built added again. One at a time."""
        async with self._recomputing:
            started = time.perf_counter()
            now = self.clock()
            params = self.ratings.params = rating_params(self.deployment)
            self._closed_meanwhile = []
            try:
                deals = await self.repo.all_deals()
                age = params.untouched_lead_days * DAY  # only leads this old count (`opportunities`)
                leads = await self.repo.leads(now, age) if age > 0 else []
                teams = {m.id: m.team for m in self._managers().values()}
                table = await asyncio.to_thread(_rating_table, deals, leads, teams, params, now)
                self.ratings.swap(table, now)
                for opps, at in self._closed_meanwhile:
                    self.ratings.update(opps, at)
            finally:
                self._closed_meanwhile = None
        return {
            "opportunities": len(table),
            "managers": len(table.managers()),
            "seconds": round(time.perf_counter() - started, 3),
        }

    def estimate(self, manager: Manager, segment: Mapping[str, str]) -> Estimate:
        keys = self.ratings.params.segment_keys
        return self.ratings.estimate(manager.id, manager.team, tuple(segment.get(k, "*") for k in keys))

    def rating_card(self, manager: Manager, segments: Sequence[Mapping[str, str]] = ()) -> dict[str, Any]:
        """A manager's ratings with the formula, the figures behind them, the interval and
        the trend (overall win rate now and 90, 180 and 365 days ago)."""
        prm = self.ratings.params
        keys = prm.segment_keys
        now = self.ratings.as_of
        overall = self.estimate(manager, {})
        by_segment = []
        for seg in segments or self._segments_seen(manager.id):
            e = self.estimate(manager, seg)
            by_segment.append(_estimate_json(e, keys, prm.prior_strength))
        opps = self.ratings.table.opportunities_of(manager.id)
        trend = []
        for days in TREND_DAYS:
            e = self.ratings.table.overall_then(manager.id, manager.team, now - days * DAY)
            trend.append({"days_ago": days, "win_rate": round(e.win_rate, 4), "deals": e.deals})
        return {
            "manager_id": manager.id,
            "team": manager.team,
            "as_of": now,
            "method": {
                "formula": "p(m, s) = (k·p_team(L) + W) / (k + N) × p_all(s) / p_all(L); value = p × avg won amount",
                "k": prm.prior_strength,
                "half_life_days": prm.half_life_days,
                "untouched_lead_days": prm.untouched_lead_days,
                "min_level_deals": prm.min_level_deals,
                "interval": prm.interval,
                "counts": "closed deals, open deals untouched past untouched_lead_days (lost), new customers' "
                "leads taken without a deal past that age (lost); supervisor overrides left out",
            },
            "overall": _estimate_json(overall, keys, prm.prior_strength),
            "segments": by_segment,
            "trend": trend,
            "deals": [
                {
                    "id": o.id,
                    "won": o.won,
                    "amount": o.amount,
                    "at": o.at,
                    "segment": dict(zip(keys, o.segment, strict=True)),
                    "why": o.why,
                }
                for o in opps[:50]
            ],
        }

    def _segments_seen(self, manager_id: str) -> list[dict[str, str]]:
        keys = self.ratings.params.segment_keys
        seen = {o.segment for o in self.ratings.table.opportunities_of(manager_id)}
        return [dict(zip(keys, s, strict=True)) for s in sorted(seen)]

    def leaderboard(self, segment: Mapping[str, str]) -> list[dict[str, Any]]:
        """Sales leaders now (by expected value in `segment`), each with a forecast."""
        keys = self.ratings.params.segment_keys
        rows = []
        for m in self._managers().values():
            if m.active:
                row = _estimate_json(self.estimate(m, segment), keys, self.ratings.params.prior_strength)
                row["forecast"] = self.forecast(m)
                rows.append(row)
        return sorted(rows, key=lambda r: -r["expected_value"])

    def forecast(self, manager: Manager, days: int = FORECAST_DAYS) -> dict[str, Any]:
        """What the next `days` should bring the manager at their present pace: the
        opportunities they were given per day over the last `FORECAST_PACE_DAYS`, times
        their overall win rate and expected value per opportunity now. A pace, not a
        promise: a manager new to the office or back from a vacation forecasts low."""
        since = self.ratings.as_of - FORECAST_PACE_DAYS * DAY
        recent = sum(1 for o in self.ratings.table.opportunities_of(manager.id) if o.at >= since)
        expected = self.estimate(manager, {})
        opportunities = recent / FORECAST_PACE_DAYS * days
        return {
            "days": days,
            "opportunities": round(opportunities, 1),
            "wins": round(opportunities * expected.win_rate, 1),
            "revenue": round(opportunities * expected.expected_value, 2),
            "method": f"opportunities per day over the last {FORECAST_PACE_DAYS} days x {days} days "
            "x the overall win rate and expected value per opportunity now",
        }

    # ---- import and export --------------------------------------------------------------

    async def import_customers(self, text: str, by: str = "import") -> ImportReport:
        parsed = csvio.parse_customers(text, self.region, self._managers())
        report = ImportReport(rejected=list(parsed.rejected))
        now = self.clock()
        then: dict[str, Mapping[str, str | None]] = {}
        for row in parsed.customers:
            c = Customer(
                id=row.id or new_id(),
                name=row.name,
                kind=row.kind,
                phones=row.phones,
                emails=row.emails,
                account_manager=row.account_manager,
                note=row.note,
                created_at=now,
            )
            existing = await self.repo.get_customer(c.id) if row.id else None
            if existing is not None:  # what the file does not carry stays: the pin, the answers
                c = replace(c, created_at=existing.created_at, pinned_to=existing.pinned_to, criteria=existing.criteria)
            try:
                await self.repo.save_customer(
                    c,
                    new=existing is None,
                    event=CrmEvent(now, c.id, "imported", by=by, manager_id=c.account_manager),
                )
            except Exception as err:
                if type(err).__name__ != "Conflict":
                    raise
                report.rejected.append(
                    csvio.Rejected(row.line, "a phone or e-mail belongs to another customer", {"id": c.id})
                )
                continue
            report.imported += 1
            report.customers_created += existing is None
            if existing is not None and (was := RoutingChange.customer(existing, c)) is not None:
                then[c.id] = {**was.customers_then[c.id], **then.get(c.id, {})}  # a row seen twice: the first
        report.rejected.sort(key=lambda r: r.line)
        if then:
            report.change = RoutingChange(
                f"customers imported: {len(then)} with another account manager", frozenset(then), customers_then=then
            )
        return report

    async def import_deals(self, text: str, by: str = "import") -> ImportReport:
        """Historical (or open) deals; a row's customer is found by id, phone or e-mail,
        or created from its name and contacts. Ratings are recomputed afterwards."""
        d = self.deployment
        criteria = {c.name: [o.value for o in c.options] for c in d.criteria if c.segment}
        parsed = csvio.parse_deals(
            text, self.region, d.tz, self._managers(), [s.name for s in d.funnel_stages], criteria
        )
        report = ImportReport(rejected=list(parsed.rejected), warnings=list(parsed.warnings))
        now = self.clock()
        new_customers: dict[str, Customer] = {}
        by_key: dict[str, str] = {}
        deals: list[Deal] = []
        history: list[CrmEvent] = []
        stored = await self.repo.deals_by_ids([row.id for row in parsed.deals if row.id])
        for row in parsed.deals:
            cid = await self._customer_for(row, new_customers, by_key, now)
            if cid is None:
                report.rejected.append(csvio.Rejected(row.line, f"customer_id: no customer {row.customer_id}", {}))
                continue
            closed_at = row.closed_at
            deal = Deal(
                id=row.id or new_id(),
                customer_id=cid,
                title=row.title,
                amount=row.amount,
                segment=dict(row.segment),
                owner=row.owner,
                stage=row.stage or self._stage_name(None),
                stage_owner=row.stage_owner,
                status=row.status,
                opened_at=row.opened_at,
                stage_since=row.opened_at,
                last_activity=closed_at if closed_at is not None else max(row.opened_at, now),
                closed_at=closed_at,
                source="import",
            )
            if row.id and (old := stored.get(row.id)) is not None:
                deal = _updated_by_import(old, deal, row, now)
            deals.append(deal)
            history.append(CrmEvent(now, cid, "imported", deal.id, deal.stage, deal.owner, by))
        for i in range(0, len(deals), 1000):
            first = i == 0
            await self.repo.save_customers_and_deals(
                list(new_customers.values()) if first else [], deals[i : i + 1000], history[i : i + 1000]
            )
        if not deals and new_customers:
            await self.repo.save_customers_and_deals(list(new_customers.values()), [], [])
        report.imported = len(deals)
        report.customers_created = len(new_customers)
        report.rejected.sort(key=lambda r: r.line)
        report.change = _imported_deals(deals, stored, set(new_customers))
        await self.recompute()
        return report

    async def _customer_for(
        self, row: csvio.DealRow, fresh: dict[str, Customer], by_key: dict[str, str], now: float
    ) -> str | None:
        if row.customer_id:
            if row.customer_id in fresh or await self.repo.get_customer(row.customer_id):
                return row.customer_id
            return None
        for key in (row.phone, row.email):
            if key and key in by_key:
                return by_key[key]
        found = await self.repo.find_customer([row.phone] if row.phone else [], [row.email] if row.email else [])
        if found is None and not (row.phone or row.email):
            name_key = f"name:{row.customer_name.casefold()}"
            if name_key in by_key:
                return by_key[name_key]
            by_key[name_key] = cid = new_id()
            fresh[cid] = Customer(cid, row.customer_name, "company", created_at=now)
            return cid
        if found is None:
            cid = new_id()
            fresh[cid] = Customer(
                cid,
                row.customer_name,
                "company",
                phones=(row.phone,) if row.phone else (),
                emails=(row.email,) if row.email else (),
                account_manager=row.owner,
                created_at=now,
            )
        else:
            cid = found.id
        for key in (row.phone, row.email):
            if key:
                by_key[key] = cid
        return cid

    async def export_customers(self, *, excel: bool = False) -> str:
        """Every customer as CSV: plain, or `excel` for Excel with Russian regional settings."""
        return csvio.customers_csv([c async for c in self.repo.all_customers()], excel=excel)

    async def export_deals(self, *, excel: bool = False) -> str:
        """Every deal as CSV: plain, or `excel` for Excel with Russian regional settings."""
        d = self.deployment
        return csvio.deals_csv(await self.repo.all_deals(), d.tz, d.policy.segment_keys, excel=excel)


def _imported_deals(deals: Sequence[Deal], stored: Mapping[str, Deal], fresh: Collection[str]) -> RoutingChange | None:
    """What a deals import changed that repeat customers are routed by: deals opened for a
    customer we knew, and stored deals whose stage, status or people it changed (their first
    state, for a deal the file names twice). None if nothing."""
    customers: dict[str, str] = {}
    then: dict[str, Deal] = {}
    added: set[str] = set()
    for d in deals:
        old = stored.get(d.id)
        if old is None:
            if d.status is DealStatus.OPEN and d.customer_id not in fresh and d.id not in customers:
                added.add(d.id)
                customers[d.id] = d.customer_id
        elif _routing_of(old) != _routing_of(d) and d.id not in then:
            then[d.id] = old
            customers[d.id] = d.customer_id
    if not customers:
        return None
    return RoutingChange(
        f"deals imported: {len(added)} opened, {len(then)} changed",
        frozenset(customers.values()),
        customers,
        deals_then=then,
        deals_added=frozenset(added),
    )


def _routing_of(d: Deal) -> tuple[object, ...]:
    """What routing reads of a deal (acd.crm.routing.route_repeat)."""
    return (d.status, d.stage, d.stage_owner, d.owner, d.last_activity, d.stage_since)


def _what_changed(before: Deal, after: Deal) -> str:
    if after.status is not before.status:
        return f"deal {after.id} closed as {after.status.value}"
    if after.stage != before.stage:
        return f"deal {after.id} moved from stage {before.stage!r} to {after.stage!r}"
    return f"deal {after.id} in stage {after.stage!r}: served by {after.stage_owner or 'nobody named'} now"


def _answer(c: Contact) -> tuple[object, ...]:
    """What routing reads of the CRM's answer for a contact, and the explanation."""
    return (c.preferred, c.team, c.first_wait, c.payload.get("crm"), c.payload.get("deal_id"))


def _covering(vacations: Iterable[Vacation], now: float) -> set[tuple[int, str, str | None]]:
    return {(v.id, v.manager_id, v.substitute) for v in vacations if v.covers(now)}


def _updated_by_import(old: Deal, new: Deal, row: csvio.DealRow, now: float) -> Deal:
    """A stored deal as an import row leaves it. What no file carries stays: the contact the
    deal came from, a supervisor's override mark (ratings leave those deals out), where it
    came from, why it was lost; and so do the stage owner when the file has no such column,
    the time it entered its stage when the stage is the same, and its last activity when
    the row changes nothing routing or ratings read. So an export imported again (say,
    after amounts were corrected in a spreadsheet) does not send the deal's customer past
    the person serving its stage, count a supervisor's placement in a rating, or make an
    untouched deal look fresh."""
    stage = row.stage or old.stage
    stage_owner = new.stage_owner if row.has_stage_owner else (old.stage_owner if stage == old.stage else None)
    same = (new.status, stage, stage_owner, new.owner) == (old.status, old.stage, old.stage_owner, old.owner)
    return replace(
        new,
        stage=stage,
        stage_owner=stage_owner,
        stage_since=old.stage_since if stage == old.stage else now,
        last_activity=old.last_activity if same else new.last_activity,
        contact_id=old.contact_id,
        override=old.override,
        source=old.source,
        lost_reason=old.lost_reason if new.status is DealStatus.LOST else "",
    )


def _rating_table(
    deals: Sequence[Deal], leads: Sequence[Lead], teams: Mapping[str, str | None], params: RatingParams, now: float
) -> RatingTable:
    """Pure, for a worker thread: the table of every opportunity as of `now`."""
    return RatingTable.build(opportunities(deals, leads, teams, params, now), params, now)


def _routed_by_us(before: Contact, after: Contact) -> bool:
    """Our CRM found someone (or a team) for the contact: an open deal, an account manager, a pin."""
    return after.preferred != before.preferred or after.team != before.team


def _estimate_json(e: Estimate, keys: Sequence[str], k: float) -> dict[str, Any]:
    return {
        "manager_id": e.manager_id,
        "segment": dict(zip(keys, e.segment, strict=True)),
        "level": dict(zip(keys, e.level, strict=True)),
        "win_rate": round(e.win_rate, 4),
        "interval": [round(e.low, 4), round(e.high, 4)],
        "avg_amount": round(e.avg_amount, 2),
        "expected_value": round(e.expected_value, 2),
        "deals": e.deals,
        "wins": e.wins,
        "effective_deals": round(e.effective_deals, 3),
        "effective_wins": round(e.effective_wins, 3),
        "prior_win_rate": round(e.prior_win_rate, 4),
        "company_win_rate": round(e.company_win_rate, 4),
        "segment_factor": round(e.segment_factor, 4),
        "total_deals": e.total_deals,
        "formula": e.formula(k),
    }
