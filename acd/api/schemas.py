"""Adapter: the JSON bodies the HTTP API accepts, as pydantic models (they also give the
OpenAPI document its schemas)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from acd.api.routing import IDEMPOTENCY_KEY_MAX
from acd.core.model import Channel, Outcome


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# Bounded so that every value fits the database's integer columns (a fuzzer's 10^25 did not)
Proficiency = Annotated[int, Field(ge=0, le=100)]
Capacity = Annotated[int, Field(ge=0, le=10_000)]
Order = Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
DailyCap = Annotated[int, Field(ge=0, le=1_000_000)]


class LeadIn(Body):
    """A web-form lead. `idempotency_key` (or the `Idempotency-Key` header) makes a double
    submit create one lead."""

    name: str = Field("", max_length=200)
    phone: str = Field("", max_length=40)
    email: EmailStr | None = None
    criteria: dict[str, str] = Field(default_factory=dict)
    language: str | None = Field(None, max_length=8)
    note: str = Field("", max_length=4000)
    priority: int = Field(0, ge=-100, le=100)
    channel: Literal["web", "email", "callback"] = "web"
    idempotency_key: str | None = Field(None, max_length=IDEMPOTENCY_KEY_MAX)


class ManagerIn(Body):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = Field("", max_length=200)
    team: str | None = None
    skills: dict[str, Proficiency] = Field(default_factory=dict)
    languages: list[str] = Field(default_factory=list)
    capacity: dict[Channel, Capacity] = Field(default_factory=dict)
    device: str = Field("", max_length=200)
    email: str = Field("", max_length=200)
    order: Order = 0
    daily_cap: DailyCap | None = None
    active: bool = True


class ManagerPatch(Body):
    name: str | None = Field(None, max_length=200)
    team: str | None = None
    skills: dict[str, Proficiency] | None = None
    languages: list[str] | None = None
    capacity: dict[Channel, Capacity] | None = None
    device: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=200)
    order: Order | None = None
    daily_cap: DailyCap | None = None
    active: bool | None = None


class PresenceIn(Body):
    state: Literal["available", "paused", "offline"]
    reason: str | None = Field(None, max_length=200)


class DeclineIn(Body):
    reason: str = Field("declined", max_length=200)


class FinishIn(Body):
    outcome: Outcome = Outcome.DONE


class ReassignIn(Body):
    manager_id: str
    pin_minutes: float | None = Field(None, gt=0, le=60 * 24 * 30)


class TokenIn(Body):
    role: Literal["admin", "supervisor", "manager"]
    manager_id: str | None = None
    label: str = Field("", max_length=200)
