"""Adapter: a loaded deployment, as frozen values the rest of the server reads.

`acd.config.loader` builds a `Deployment` from the YAML file and the IVR flows; nothing here
parses or validates. The routing core sees only `Deployment.policy` and `Deployment.managers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from acd.config.crm_external import ExternalCrmSettings
from acd.config.flows import IvrFlow
from acd.config.messaging import EmailSettings, NotificationSettings, TwilioSettings
from acd.core.hours import Schedule
from acd.core.model import Channel, Manager
from acd.core.policy import RoutingPolicy

Texts = Mapping[str, str]  # language code -> text


@dataclass(frozen=True, slots=True)
class Option:
    """One answer to a criterion: the DTMF key that picks it and what it does to routing."""

    key: str
    value: str
    label: Texts
    weight: float = 1.0  # multiplier of the contact's expected value
    skills: tuple[str, ...] = ()  # skills a manager needs to take a contact with this answer
    priority: int = 0  # added to the contact's queue priority


@dataclass(frozen=True, slots=True)
class Criterion:
    name: str
    label: Texts
    prompt: Texts
    options: tuple[Option, ...]
    default: str | None = None  # the value used when nobody answered
    segment: bool = False  # part of the rating segment (purpose x price tier x temperature)

    def option(self, value: str) -> Option | None:
        return next((o for o in self.options if o.value == value), None)

    def by_key(self, key: str) -> Option | None:
        return next((o for o in self.options if o.key == key), None)


@dataclass(frozen=True, slots=True)
class Team:
    label: Texts
    schedule: Schedule


@dataclass(frozen=True, slots=True)
class ManagerDefaults:
    capacity: Mapping[Channel, int]
    languages: tuple[str, ...]
    daily_cap: int | None = None


@dataclass(frozen=True, slots=True)
class Stage:
    """A funnel stage and who serves a repeat customer whose open deal sits in it.

    `route_to="owner"`: the deal's owner first, then after `wait` seconds the owning team;
    `"team"`: the team at once.
    """

    name: str
    label: Texts
    team: str
    route_to: Literal["owner", "team"] = "owner"
    wait: float = 60.0


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    db_url: str | None = None  # None: the server's default SQLite file
    cluster: bool = False  # one of several nodes on one PostgreSQL (docs/deployment.md)
    node_grace: float = 10.0  # cluster: seconds a node holding calls may be gone before its calls end
    trusted_proxies: tuple[str, ...] = ()  # networks whose X-Forwarded-For names the client


@dataclass(frozen=True, slots=True)
class AmiSettings:
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "acd"
    secret_env: str = "ACD_AMI_SECRET"
    # Read from the environment at load time; kept out of repr so it never reaches a log.
    secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class FastAgiSettings:
    host: str = "127.0.0.1"
    port: int = 4573


@dataclass(frozen=True, slots=True)
class AsteriskServer:
    """One of several Asterisk servers (`asterisk.servers`): its own AMI connection."""

    name: str
    ami: AmiSettings = AmiSettings()


@dataclass(frozen=True, slots=True)
class AsteriskSettings:
    ami: AmiSettings = AmiSettings()
    fastagi: FastAgiSettings = FastAgiSettings()
    handler_deadline: float = 2.0  # seconds an AGI handler may take before the dialplan falls back
    enabled: bool = False  # start the FastAGI server and the AMI client
    ring_time: float = 20.0  # the most a manager's phone rings for one offer
    max_wait: float = 600.0  # a caller waiting longer overflows to the dialplan's fallback queue
    announce_every: float = 30.0  # position announcements while waiting (0: never)
    callback_key: str | None = "*"  # pressed while waiting: a callback that keeps the place
    queue_log: str | None = None  # path of the Asterisk-compatible queue_log file
    # Asterisk's sounds directory as this server sees it (the same host, a mount): a
    # customer's erasure deletes their voicemail recordings there (acd/voicemail/...)
    sounds_dir: str | None = None
    outbound_dial: str = "Local/{number}@acd-outbound"  # how callbacks reach a customer
    callback_attempts: int = 3
    callback_backoff: float = 120.0  # before the 2nd attempt; doubles
    callback_machine_detection: bool = False  # AMD() on the customer's leg: a machine is a failed attempt
    reconcile_interval: float = 60.0  # AMI resynchronisation period (0: only after reconnects)
    overflow: str = "fallback"  # after max_wait: fallback (app_queue) | voicemail | callback (offered by a key)
    announce_wait: bool = True  # "your expected wait is about N minutes" on entering and with each announcement
    average_handle: float = 180.0  # handle time assumed until calls have been measured
    voicemail_max: float = 120.0  # the longest voicemail message
    servers: tuple[AsteriskServer, ...] = ()  # several PBXes, each with its own AMI (else just `ami`)


@dataclass(frozen=True, slots=True)
class RateLimits:
    leads_per_minute: int = 10  # web forms and callback requests per client address
    api_per_minute: int = 600


@dataclass(frozen=True, slots=True)
class WebSettings:
    """`name_the_manager`: a callback's confirmation names the manager a known customer is
    pinned to. Off by default: whoever types a number would learn whether it belongs to a
    customer and who looks after them; the team the answers call for is named either way."""

    allowed_origins: tuple[str, ...] = ()
    rate_limits: RateLimits = RateLimits()
    name_the_manager: bool = False


@dataclass(frozen=True, slots=True)
class CrmSettings:
    """The CRM part: phone numbers without a country code are read in `default_region`;
    ratings count a lead untouched for `untouched_lead_days` as lost, halve a deal's weight
    every `half_life_days` (0 = no decay), shrink toward the team with `prior_strength`
    pseudo-deals and fall back to coarser segments (dropping keys from the end of
    `segment_order`) below `min_level_deals`."""

    default_region: str = "RU"
    untouched_lead_days: float = 30.0
    half_life_days: float = 180.0
    prior_strength: float = 10.0
    min_level_deals: float = 8.0
    segment_order: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceLevel:
    """Answered within `within` seconds counts towards a channel's service level; `target`
    (a fraction, 0.8) is the share the office aims for, None for none."""

    within: float
    target: float | None = None


# Until the file says otherwise: the classic 80/20 for voice; a web lead or an e-mail is
# "answered" when a manager takes it.
DEFAULT_SERVICE_LEVEL: Mapping[Channel, ServiceLevel] = {
    Channel.CALL: ServiceLevel(20.0),
    Channel.CALLBACK: ServiceLevel(60.0),
    Channel.WEB: ServiceLevel(300.0),
    Channel.EMAIL: ServiceLevel(3600.0),
}


@dataclass(frozen=True, slots=True)
class ReportSettings:
    """The supervisor's reports: each channel's service level (`reports.service_level`)."""

    service_level: Mapping[Channel, ServiceLevel] = field(default_factory=lambda: dict(DEFAULT_SERVICE_LEVEL))


@dataclass(frozen=True, slots=True)
class Deployment:
    """Everything one deployment file (and its IVR flows) declares.

    `managers` are the initial/demo managers: `Manager` is mutable, so copy one
    (`dataclasses.replace`) before handing it to code that changes it.
    """

    path: Path
    site_name: str
    tz: str
    languages: tuple[str, ...]  # the first is the default
    criteria: tuple[Criterion, ...]
    skills: Mapping[str, Texts]
    teams: Mapping[str, Team]
    manager_defaults: ManagerDefaults
    managers: tuple[Manager, ...]
    funnel_stages: tuple[Stage, ...]
    policy: RoutingPolicy
    flows: Mapping[str, IvrFlow]
    server: ServerSettings = ServerSettings()
    asterisk: AsteriskSettings = AsteriskSettings()
    web: WebSettings = WebSettings()
    crm: CrmSettings = CrmSettings()
    email: EmailSettings = field(default_factory=EmailSettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    twilio: TwilioSettings | None = None
    crm_external: ExternalCrmSettings | None = None
    reports: ReportSettings = field(default_factory=ReportSettings)

    @property
    def default_language(self) -> str:
        return self.languages[0]

    def criterion(self, name: str) -> Criterion | None:
        return next((c for c in self.criteria if c.name == name), None)

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.funnel_stages if s.name == name), None)
