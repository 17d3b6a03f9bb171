"""Adapter: the `crm.external` section (an office's own CRM: a generic HTTP service or Bitrix24).

    crm:
      external:
        kind: bitrix24                     # http | bitrix24
        url_env: ACD_BITRIX24_WEBHOOK      # https://<portal>/rest/<user>/<token>/ (the token is a secret)
        lookup: unknown                    # unknown: when our CRM has nobody for the customer | always | off
        timeout: 1.5s                      # the most a look-up may hold a contact back
        users: {"17": anna}                # the CRM's user id -> our manager id
        stages: {"C1:NEW": qualification}  # the CRM's deal stage -> our funnel stage
        leads: true                        # bitrix24: a caller with only an open lead goes to its responsible

The `http` kind reads `lookup_url` and `push_url` from the file and the signing secret from
the variable named by `secret_env`. Secrets never go in the file; a variable that is not set
is a problem of the file (it names the key), like any other.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt

from acd.config.errors import Problems

_ENV = r"^[A-Za-z_][A-Za-z0-9_]*$"
_URL = r"^https?://\S+$"


def _seconds(value: Any) -> Any:
    from acd.config.schema import parse_duration  # schema imports this module

    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be more than 0 seconds")
    return seconds


def _str_keys(value: Any) -> Any:
    # CRM user ids are numbers; YAML reads an unquoted 17 as an int.
    from acd.config.schema import _str_keys

    return _str_keys(value)


Seconds = Annotated[float, BeforeValidator(_seconds)]
EnvName = Annotated[str, Field(pattern=_ENV)]
Url = Annotated[str, Field(pattern=_URL)]
ManagerId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # no setting means .nan or .inf


class PushRetrySpec(_Spec):
    attempts: Annotated[StrictInt, Field(ge=1)] = 12
    backoff: Seconds = 10.0
    max_backoff: Seconds = 3600.0


class ExternalCrmSpec(_Spec):
    kind: Literal["http", "bitrix24"]
    lookup: Literal["unknown", "always", "off"] = "unknown"
    timeout: Seconds = 1.5
    cache: Seconds = 300.0
    push: StrictBool = True
    retry: PushRetrySpec = PushRetrySpec()
    users: Annotated[dict[str, ManagerId], BeforeValidator(_str_keys)] = {}
    stages: dict[str, str] = {}
    # kind: http
    lookup_url: Url | None = None
    push_url: Url | None = None
    secret_env: EnvName | None = None
    # kind: bitrix24
    url_env: EnvName | None = None
    write_back: Literal["activity", "comment"] = "activity"
    events_token_env: EnvName | None = None  # the outbound webhook's application_token (change events)
    leads: StrictBool | None = None  # look open leads up too (unset: yes); None tells "not given" for http


@dataclass(frozen=True, slots=True)
class ExternalCrmSettings:
    """What the adapters need; secrets read from the environment at load time, kept out of repr."""

    kind: str
    lookup: str = "unknown"
    timeout: float = 1.5
    cache: float = 300.0
    push: bool = True
    attempts: int = 12
    backoff: float = 10.0
    max_backoff: float = 3600.0
    users: Mapping[str, str] = field(default_factory=dict)  # external user id -> manager id
    stages: Mapping[str, str] = field(default_factory=dict)  # external stage -> funnel stage
    lookup_url: str | None = None
    push_url: str | None = None
    secret: str | None = field(default=None, repr=False)
    url: str | None = field(default=None, repr=False)  # Bitrix24's inbound webhook, with its token
    write_back: str = "activity"
    events_token: str | None = field(default=None, repr=False)  # Bitrix24's outbound webhook's token
    leads: bool = True  # Bitrix24: a caller with no contact or company is looked for among open leads

    def user_of(self, manager_id: str | None) -> str | None:
        """The CRM's user id for one of our managers (the mapping read backwards)."""
        return next((u for u, m in self.users.items() if m == manager_id), None) if manager_id else None


def cross_check(
    spec: ExternalCrmSpec | None,
    managers: Collection[str],
    stages: Collection[str],
    environ: Mapping[str, str],
    problems: Problems,
) -> None:
    """Keys each kind needs, secrets present in the environment, mappings that name managers
    and funnel stages that exist (managers only when the file lists any: they may come
    from the API instead)."""
    if spec is None:
        return
    loc = ("crm", "external")

    def need(key: str, value: object, why: str) -> None:
        if value is None:
            problems.add((*loc, key), f"required for kind {spec.kind}: {why}")

    def env(key: str, name: str | None) -> None:
        if name is not None and not environ.get(name):
            problems.add((*loc, key), f"the environment variable {name} is not set")

    if spec.kind == "http":
        if spec.lookup != "off":
            need("lookup_url", spec.lookup_url, "where to look customers up (or set lookup: off)")
        if spec.push:
            need("push_url", spec.push_url, "where finished contacts are sent (or set push: false)")
            need("secret_env", spec.secret_env, "the variable holding the webhook's signing secret")
        for key in ("url_env", "events_token_env", "leads"):
            if getattr(spec, key) is not None:
                problems.add((*loc, key), "only for kind bitrix24")
        env("secret_env", spec.secret_env)
    else:
        need(
            "url_env",
            spec.url_env,
            "the variable holding the inbound webhook URL https://<portal>/rest/<user>/<token>/",
        )
        for key in ("lookup_url", "push_url", "secret_env"):
            if getattr(spec, key) is not None:
                problems.add((*loc, key), "only for kind http")
        env("url_env", spec.url_env)
        env("events_token_env", spec.events_token_env)
        if spec.url_env and (url := environ.get(spec.url_env)) and not url.startswith(("https://", "http://")):
            problems.add((*loc, "url_env"), f"{spec.url_env} must hold an https:// URL")
    if managers:
        for user, manager in spec.users.items():
            if manager not in managers:
                problems.add((*loc, "users", user), f"no manager {manager!r} in managers")
    for external, stage in spec.stages.items():
        if stage not in stages:
            problems.add((*loc, "stages", external), f"no funnel stage {stage!r} ({', '.join(stages) or 'none'})")


def build(spec: ExternalCrmSpec | None, environ: Mapping[str, str]) -> ExternalCrmSettings | None:
    if spec is None:
        return None
    url = environ.get(spec.url_env) if spec.url_env else None
    return ExternalCrmSettings(
        kind=spec.kind,
        lookup=spec.lookup,
        timeout=spec.timeout,
        cache=spec.cache,
        push=spec.push,
        attempts=spec.retry.attempts,
        backoff=spec.retry.backoff,
        max_backoff=spec.retry.max_backoff,
        users=dict(spec.users),
        stages=dict(spec.stages),
        lookup_url=spec.lookup_url,
        push_url=spec.push_url,
        secret=environ.get(spec.secret_env) if spec.secret_env else None,
        url=url.rstrip("/") + "/" if url else None,
        write_back=spec.write_back,
        events_token=environ.get(spec.events_token_env) if spec.events_token_env else None,
        leads=spec.leads is not False,
    )
