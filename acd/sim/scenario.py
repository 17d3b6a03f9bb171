"""Adapter: a what-if scenario file (YAML) → a validated `Scenario`.

The scenario says what the simulator may know and the router may not: each manager's true
conversion and deal size. The router sees only the deal history the scenario generates.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from acd.core.model import Channel
from acd.core.policy import Strategy


class SpecError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


def hours(value: str) -> tuple[float, float]:
    start, _, end = value.partition("-")
    h1, m1 = start.strip().split(":")
    h2, m2 = end.strip().split(":")
    a, b = int(h1) + int(m1) / 60, int(h2) + int(m2) / 60
    if not 0 <= a < b <= 24:
        raise ValueError(f"{value!r}: write HH:MM-HH:MM with the start before the end")
    return a, b


class ChannelLoad(_Spec):
    """Arrivals per hour of the day: a list of 24 rates, or {"09-18": 30} ranges."""

    per_hour: list[float] | dict[str, float]
    handle_minutes: float = Field(gt=0)
    patience_seconds: float | None = Field(None, gt=0)  # None: never gives up (web, e-mail)
    response_seconds: float = Field(5, ge=0)  # how long a present manager takes to accept

    @field_validator("per_hour")
    @classmethod
    def _check_rates(cls, v: list[float] | dict[str, float]) -> list[float] | dict[str, float]:
        if isinstance(v, list) and len(v) != 24:
            raise ValueError("a list needs 24 rates, one per hour from 00 to 23")
        if isinstance(v, dict):
            for span in v:
                lo, _, hi = span.partition("-")
                if not (lo.isdigit() and hi.isdigit() and 0 <= int(lo) < int(hi) <= 24):
                    raise ValueError(f"{span!r}: write hour ranges like '09-18'")
        return v

    def rates(self) -> list[float]:
        if isinstance(self.per_hour, list):
            return list(self.per_hour)
        out = [0.0] * 24
        for span, rate in self.per_hour.items():
            lo, _, hi = span.partition("-")
            for h in range(int(lo), int(hi)):
                out[h] = rate
        return out


class ManagerSpec(_Spec):
    id: str
    name: str = ""
    team: str = "sales"
    skills: dict[str, int] = Field(default_factory=dict)
    languages: list[str] = Field(default_factory=list)
    shift: str = "09:00-18:00"
    breaks: list[str] = Field(default_factory=list)
    miss_rate: float = Field(0.0, ge=0, le=1)  # share of offers they let time out
    rejoin_minutes: float = Field(3, ge=0)  # how long an auto-paused manager takes to come back
    # hidden from the router: multipliers of the base conversion and deal size, per purpose
    conversion: dict[str, float] = Field(default_factory=dict)
    deal_size: dict[str, float] = Field(default_factory=dict)

    @field_validator("shift")
    @classmethod
    def _check_shift(cls, v: str) -> str:
        hours(v)
        return v

    @field_validator("breaks")
    @classmethod
    def _check_breaks(cls, v: list[str]) -> list[str]:
        for b in v:
            hours(b)
        return v

    def factor(self, table: dict[str, float], purpose: str) -> float:
        return table.get(purpose, table.get("default", 1.0))


class Scenario(_Spec):
    name: str = "scenario"
    seed: int = 1
    days: int = Field(3, ge=1, le=60)
    service_level_seconds: float = Field(20, gt=0)
    config: str | None = None  # the deployment whose criteria and rules the router uses
    policies: list[Strategy] = Field(default_factory=lambda: list(Strategy))
    channels: dict[Channel, ChannelLoad]
    mix: dict[str, dict[str, float]]  # criterion -> value -> share
    base_conversion: dict[str, float]  # temperature -> win rate of an average manager
    deal_size: dict[str, float]  # price tier -> amount of an average won deal
    history_deals_per_manager: int = Field(40, ge=0)
    managers: list[ManagerSpec] = Field(min_length=1)
    path: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        for criterion, shares in self.mix.items():
            if not shares or any(v < 0 for v in shares.values()) or sum(shares.values()) <= 0:
                raise ValueError(f"mix.{criterion}: shares must be non-negative and not all zero")
        ids = [m.id for m in self.managers]
        if len(ids) != len(set(ids)):
            raise ValueError("managers: ids must be unique")
        return self


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario; `SpecError.problems` name the file and the key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise SpecError([f"{path}: {err}"]) from None
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as err:
        raise SpecError(
            [
                f"{path}: {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
                for e in err.errors(include_url=False)
            ]
        ) from None
    return scenario.model_copy(update={"path": path})
