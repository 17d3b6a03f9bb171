"""Adapter: the deployment file's `email:`, `notifications:` and `twilio:` sections.

Their shape (pydantic specs), the checks that span the file (a keyword names an existing
criterion and option, every template has each site language) and the frozen settings the
messaging adapters read. Secrets are never in the file: it names the environment variable
(`password_env`, `auth_token_env`) and the loader reads it from the `environ` it was given.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt

from acd.config.errors import Problems, yaml_number

_ENV = r"^[A-Za-z_][A-Za-z0-9_]*$"
_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_E164 = re.compile(r"^\+[1-9]\d{5,14}$")
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")

# What a template may mention: `{customer}`, `{manager}`...
TEMPLATE_FIELDS = frozenset({"customer", "manager", "subject", "contact_id", "site", "phone", "email", "minutes"})
TEMPLATE_NAMES = (
    "received",
    "assigned",
    "callback_requested",
    "callback_failed",
    "callback_given_up",
    "offered",
    "reply",
)
SEND_CHANNELS = ("email", "sms")
SUBJECT_WINDOW = 30 * 86400.0  # email.subject_window: 30 days


# ---- scalar checks ---------------------------------------------------------------------


_NOT_A_DURATION = "must be a duration: seconds (30) or with a unit (30s, 10m, 1h)"


def _seconds(value: Any) -> Any:
    """Seconds as a number, or with units: "30s", "10m", "1h30m" (as elsewhere in the file)."""
    if isinstance(value, bool):
        raise ValueError("must be a duration: seconds (30) or with a unit (30s, 10m, 1h)")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(
                f"must be a duration: seconds (30) or with a unit (30s, 10m, 1h), not {yaml_number(value)}"
            )
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m and any(m.groups()):
            h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            seconds = h * 3600 + mi * 60 + s
            if not math.isfinite(seconds):
                raise ValueError("is too long to be a duration")
            return seconds
    raise ValueError("must be a duration: seconds (30) or with a unit (30s, 10m, 1h)")


def parse_quiet_hours(value: str) -> tuple[time, time]:
    """`"21:00-09:00"` -> (21:00, 09:00); the span may cross midnight, and must not be empty."""
    m = _CLOCK.match(value)
    if not m:
        raise ValueError('must look like "21:00-09:00"')
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError(f"{value!r} has an impossible time")
    if (h1, m1) == (h2, m2):
        raise ValueError("starts and ends at the same time")
    return time(h1, m1), time(h2, m2)


def _quiet(value: str) -> str:
    parse_quiet_hours(value)
    return value


def _e164(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"+{value}"
    if not isinstance(value, str) or not _E164.match(value):
        raise ValueError("must be a phone number in E.164 form, e.g. +74951234567 (quote it)")
    return value


def _template(value: str) -> str:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError as err:
        raise ValueError(f"is not a valid template: {err} (write a literal brace as {{{{ or }}}})") from None
    unknown = sorted(names - TEMPLATE_FIELDS)
    if unknown:
        raise ValueError(f"unknown field {{{unknown[0]}}} (known: {', '.join(sorted(TEMPLATE_FIELDS))})")
    return value


Seconds = Annotated[float, BeforeValidator(_seconds)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
EnvName = Annotated[str, Field(pattern=_ENV)]
Phone = Annotated[str, BeforeValidator(_e164)]
Template = Annotated[str, Field(min_length=1), AfterValidator(_template)]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # no setting means .nan or .inf


# ---- shapes ---------------------------------------------------------------------------------


class SmtpListenerSpec(Spec):
    enabled: StrictBool = True
    host: str = "127.0.0.1"
    port: Port = 2525


class ImapSpec(Spec):
    enabled: StrictBool = True
    host: str
    port: Port = 993
    ssl: StrictBool = True
    username: str
    password_env: EnvName = "ACD_IMAP_PASSWORD"
    mailbox: str = "INBOX"
    poll_interval: Seconds = 60.0
    idle: StrictBool = True


class OutboundSpec(Spec):
    host: str = "127.0.0.1"
    port: Port = 25
    starttls: StrictBool = False
    ssl: StrictBool = False
    username: str | None = None
    password_env: EnvName = "ACD_SMTP_PASSWORD"
    from_address: Annotated[str, Field(min_length=3)]
    timeout: Seconds = 30.0


class EmailSpec(Spec):
    enabled: StrictBool = False
    smtp_listener: SmtpListenerSpec | None = None
    imap: ImapSpec | None = None
    outbound: OutboundSpec | None = None
    max_size: Annotated[StrictInt, Field(ge=1024)] = 10 * 1024 * 1024
    # criterion -> option value -> words or phrases; the first criterion's first match wins
    keywords: dict[str, dict[str, Annotated[list[Annotated[str, Field(min_length=2)]], Field(min_length=1)]]] = {}
    notify_seller: StrictBool = True  # e-mail the seller an offered enquiry (besides the panel)
    # A letter without In-Reply-To/References joins the sender's thread with the same subject
    # (without "Re:") whose last message is this recent; 0 turns it off
    subject_window: Seconds = SUBJECT_WINDOW


class RetrySpec(Spec):
    attempts: Annotated[StrictInt, Field(ge=1, le=50)] = 5
    backoff: Seconds = 30.0  # before the 2nd attempt; doubles after each failure
    max_backoff: Seconds = 3600.0


class TemplateSpec(Spec):
    subject: dict[str, Template] = {}
    body: dict[str, Template]


class NotificationsSpec(Spec):
    enabled: StrictBool = False
    quiet_hours: Annotated[str, AfterValidator(_quiet)] | None = "21:00-09:00"
    retry: RetrySpec = RetrySpec()
    # what customers are told, and how: template name -> channels in order of preference
    customer: dict[
        Literal["received", "assigned", "callback_requested", "callback_failed", "callback_given_up"],
        list[Literal["email", "sms"]],
    ] = {
        "received": ["email"],
        "assigned": ["email"],
        "callback_requested": ["sms", "email"],
        "callback_failed": ["sms", "email"],
        "callback_given_up": ["sms", "email"],
    }
    templates: dict[
        Literal[
            "received", "assigned", "callback_requested", "callback_failed", "callback_given_up", "offered", "reply"
        ],
        TemplateSpec,
    ] = {}


class TwilioSpec(Spec):
    enabled: StrictBool = False
    account_sid: Annotated[str, Field(pattern=r"^AC[0-9a-fA-F]{32}$")]
    auth_token_env: EnvName = "ACD_TWILIO_AUTH_TOKEN"
    # Webhooks signed with a shared key (X-Twilio-Webhooks-Signature-Settings: key=<id>,...):
    # key id -> the environment variable holding that key's secret. A webhook naming any other
    # key is refused; one without the header is checked against the auth token.
    webhook_keys: dict[Annotated[str, Field(pattern=r"^[^\s,=]+$")], EnvName] = {}
    api_base: str = "https://api.twilio.com"
    # How Twilio reaches this server: the signature covers this URL, not the one we bind.
    public_url: Annotated[str, Field(pattern=r"^https?://")]
    numbers: Annotated[dict[Phone, str], BeforeValidator(lambda v: _str_phone_keys(v))] = {}
    sms_from: Phone | None = None
    caller_id: Phone | None = None
    hold_music: str | None = None
    voice: dict[str, str] = {"ru": "Polly.Tatyana", "en": "Polly.Joanna"}
    # manager id -> "+7..." / "client:name" / "sip:..." (how <Dial> reaches them)
    managers: dict[str, Annotated[str, Field(pattern=r"^(\+[1-9]\d{5,14}|client:\S+|sip:\S+)$")]] = {}
    # Callbacks through the REST API (calls.create) when Asterisk is off: the manager first, then
    # the customer; the same attempts and spacing rules as asterisk.callback_*.
    callbacks: StrictBool = True
    ring_time: Seconds = 20.0  # the most a manager's phone rings (never past channels.callback.offer_timeout)
    customer_ring: Seconds = 30.0
    callback_attempts: Annotated[StrictInt, Field(ge=1)] = 3
    callback_backoff: Seconds = 120.0  # before the 2nd attempt; doubles
    # Twilio's answering-machine detection on the customer's leg: a machine or fax is a failed attempt
    callback_machine_detection: StrictBool = False


def _str_phone_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {f"+{k}" if isinstance(k, int) and not isinstance(k, bool) else k: v for k, v in value.items()}
    return value


# ---- settings (what the adapters read) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmtpListenerSettings:
    host: str = "127.0.0.1"
    port: int = 2525


@dataclass(frozen=True, slots=True)
class ImapSettings:
    host: str
    username: str
    port: int = 993
    ssl: bool = True
    password_env: str = "ACD_IMAP_PASSWORD"
    password: str | None = field(default=None, repr=False)
    mailbox: str = "INBOX"
    poll_interval: float = 60.0
    idle: bool = True


@dataclass(frozen=True, slots=True)
class OutboundSettings:
    from_address: str
    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class EmailSettings:
    enabled: bool = False
    smtp_listener: SmtpListenerSettings | None = None
    imap: ImapSettings | None = None
    outbound: OutboundSettings | None = None
    max_size: int = 10 * 1024 * 1024
    keywords: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    notify_seller: bool = True
    subject_window: float = SUBJECT_WINDOW


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    subject: Mapping[str, str]
    body: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class NotificationSettings:
    enabled: bool = False
    quiet_hours: tuple[time, time] | None = (time(21), time(9))
    attempts: int = 5
    backoff: float = 30.0
    max_backoff: float = 3600.0
    customer: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {
            "received": ("email",),
            "assigned": ("email",),
            "callback_requested": ("sms", "email"),
            "callback_failed": ("sms", "email"),
            "callback_given_up": ("sms", "email"),
        }
    )
    templates: Mapping[str, MessageTemplate] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES))


@dataclass(frozen=True, slots=True)
class TwilioSettings:
    account_sid: str
    public_url: str
    enabled: bool = False
    auth_token_env: str = "ACD_TWILIO_AUTH_TOKEN"
    auth_token: str | None = field(default=None, repr=False)
    api_base: str = "https://api.twilio.com"
    numbers: Mapping[str, str] = field(default_factory=dict)  # our number -> IVR flow
    webhook_keys: Mapping[str, str] = field(default_factory=dict)  # shared key id -> its secret's env variable
    webhook_secrets: Mapping[str, str] = field(default_factory=dict, repr=False)  # key id -> secret (set ones)
    sms_from: str | None = None
    caller_id: str | None = None
    hold_music: str | None = None
    voice: Mapping[str, str] = field(default_factory=dict)
    managers: Mapping[str, str] = field(default_factory=dict)
    callbacks: bool = True  # ring callbacks through the REST API when Asterisk is off
    ring_time: float = 20.0
    customer_ring: float = 30.0
    callback_attempts: int = 3
    callback_backoff: float = 120.0
    callback_machine_detection: bool = False


# Built-in texts, so a deployment that turns notifications on has something sensible to send.
DEFAULT_TEMPLATES: Mapping[str, MessageTemplate] = {
    "received": MessageTemplate(
        {"ru": "Мы получили ваше обращение: {subject}", "en": "We have received your request: {subject}"},
        {
            "ru": "Здравствуйте, {customer}!\n\nМы получили ваше обращение и скоро ответим.\n\n{site}",
            "en": "Hello {customer},\n\nWe have received your request and will answer soon.\n\n{site}",
        },
    ),
    "assigned": MessageTemplate(
        {"ru": "Ваш менеджер: {manager}", "en": "Your manager: {manager}"},
        {
            "ru": "Здравствуйте, {customer}!\n\nВашим обращением занимается {manager}, он свяжется с вами.\n\n{site}",
            "en": "Hello {customer},\n\n{manager} is taking care of your request and will contact you.\n\n{site}",
        },
    ),
    "callback_requested": MessageTemplate(
        {"ru": "Мы перезвоним вам", "en": "We will call you back"},
        {
            "ru": "{site}: мы получили вашу просьбу перезвонить и позвоним на номер {phone}.",
            "en": "{site}: we have your callback request and will call you on {phone}.",
        },
    ),
    "callback_failed": MessageTemplate(
        {"ru": "Мы не смогли до вас дозвониться", "en": "We tried to call you back"},
        {
            "ru": "{site}: мы пытались вам перезвонить, но не дозвонились. Мы попробуем ещё раз.",
            "en": "{site}: we tried to call you back but could not reach you. We will try again.",
        },
    ),
    "callback_given_up": MessageTemplate(
        {"ru": "Мы не смогли до вас дозвониться", "en": "We could not reach you"},
        {
            "ru": "{site}: мы несколько раз пытались вам перезвонить, но не дозвонились. "
            "Оставьте новую заявку или позвоните нам, когда вам будет удобно.",
            "en": "{site}: we tried to call you back several times but could not reach you. "
            "Please ask again or call us when it suits you.",
        },
    ),
    "offered": MessageTemplate(
        {"ru": "Новое обращение: {subject}", "en": "New enquiry: {subject}"},
        {
            "ru": "Вам предложено обращение от {customer} ({email}): {subject}.\n"
            "Примите его в панели в течение {minutes} мин.",
            "en": "An enquiry from {customer} ({email}) is offered to you: {subject}.\n"
            "Accept it in the panel within {minutes} min.",
        },
    ),
    "reply": MessageTemplate(
        {"ru": "Новое письмо в переписке: {subject}", "en": "New message in your thread: {subject}"},
        {
            "ru": "{customer} ({email}) написал(а) в переписке, которую вы ведёте: {subject}.",
            "en": "{customer} ({email}) wrote in a thread you handle: {subject}.",
        },
    ),
}


# ---- checks across the file and building -----------------------------------------------------


def cross_check(
    email: EmailSpec,
    notifications: NotificationsSpec,
    twilio: TwilioSpec | None,
    criteria: Mapping[str, Sequence[str]],
    languages: Sequence[str],
    problems: Problems,
) -> None:
    """`criteria` maps each criterion to its option values."""
    for name, by_value in email.keywords.items():
        if name not in criteria:
            problems.add(("email", "keywords", name), f"no criterion named {name!r} ({', '.join(criteria)})")
            continue
        for value in by_value:
            if value not in criteria[name]:
                values = ", ".join(criteria[name])
                problems.add(("email", "keywords", name, value), f"{value!r} is not one of {name}'s values ({values})")
    if email.enabled and email.smtp_listener is None and email.imap is None:
        problems.add(("email",), "enabled, but neither smtp_listener nor imap says where enquiries come from")
    for name, spec in notifications.templates.items():
        for part in ("subject", "body"):
            texts: dict[str, str] = getattr(spec, part)
            for lang in texts:
                if lang not in languages:
                    problems.add(("notifications", "templates", name, part, lang), f"{lang!r} is not a site language")
            if texts or part == "body":
                for lang in languages:
                    if lang not in texts:
                        problems.add(("notifications", "templates", name, part), f"has no {lang} text")
    uses_email = any("email" in chans for chans in notifications.customer.values())
    if notifications.enabled and uses_email and email.outbound is None:
        problems.add(("notifications", "customer"), "sends e-mail, but email.outbound (the SMTP relay) is not set")
    uses_sms = any("sms" in chans for chans in notifications.customer.values())
    if notifications.enabled and uses_sms and (twilio is None or twilio.sms_from is None):
        problems.add(("notifications", "customer"), "sends SMS, but twilio.sms_from is not set")


def build_email(spec: EmailSpec, environ: Mapping[str, str]) -> EmailSettings:
    listener = spec.smtp_listener
    imap = spec.imap
    out = spec.outbound
    return EmailSettings(
        enabled=spec.enabled,
        smtp_listener=SmtpListenerSettings(listener.host, listener.port) if listener and listener.enabled else None,
        imap=ImapSettings(
            imap.host,
            imap.username,
            imap.port,
            imap.ssl,
            imap.password_env,
            environ.get(imap.password_env),
            imap.mailbox,
            imap.poll_interval,
            imap.idle,
        )
        if imap and imap.enabled
        else None,
        outbound=OutboundSettings(
            out.from_address,
            out.host,
            out.port,
            out.starttls,
            out.ssl,
            out.username,
            environ.get(out.password_env) if out.username else None,
            out.timeout,
        )
        if out
        else None,
        max_size=spec.max_size,
        keywords={
            c: {v: tuple(w.casefold() for w in words) for v, words in vs.items()} for c, vs in spec.keywords.items()
        },
        notify_seller=spec.notify_seller,
        subject_window=spec.subject_window,
    )


def build_notifications(spec: NotificationsSpec) -> NotificationSettings:
    templates = dict(DEFAULT_TEMPLATES)
    for name, t in spec.templates.items():
        base = DEFAULT_TEMPLATES[name]
        templates[name] = MessageTemplate({**base.subject, **t.subject}, {**base.body, **t.body})
    return NotificationSettings(
        enabled=spec.enabled,
        quiet_hours=parse_quiet_hours(spec.quiet_hours) if spec.quiet_hours else None,
        attempts=spec.retry.attempts,
        backoff=spec.retry.backoff,
        max_backoff=spec.retry.max_backoff,
        customer={name: tuple(chans) for name, chans in spec.customer.items()},
        templates=templates,
    )


def build_twilio(spec: TwilioSpec | None, environ: Mapping[str, str]) -> TwilioSettings | None:
    if spec is None:
        return None
    return TwilioSettings(
        account_sid=spec.account_sid,
        public_url=spec.public_url.rstrip("/"),
        enabled=spec.enabled,
        auth_token_env=spec.auth_token_env,
        auth_token=environ.get(spec.auth_token_env),
        api_base=spec.api_base.rstrip("/"),
        numbers=dict(spec.numbers),
        webhook_keys=dict(spec.webhook_keys),
        webhook_secrets={key: environ[env] for key, env in spec.webhook_keys.items() if environ.get(env)},
        sms_from=spec.sms_from,
        caller_id=spec.caller_id,
        hold_music=spec.hold_music,
        voice=dict(spec.voice),
        managers=dict(spec.managers),
        callbacks=spec.callbacks,
        ring_time=spec.ring_time,
        customer_ring=spec.customer_ring,
        callback_attempts=spec.callback_attempts,
        callback_backoff=spec.callback_backoff,
        callback_machine_detection=spec.callback_machine_detection,
    )
